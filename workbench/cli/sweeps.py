"""``workbench sweep`` and ``workbench store``: per-head effect sweeps and the cache that keeps them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer
from rich.table import Table

from workbench.cli._common import console, err_console, friendly, parse_list, progress_bar
from workbench.errors import WorkbenchError
from workbench.names import ENGINES, EXECUTORS  # torch-free: a stored answer imports no engine
from workbench.organism import DEFAULT_MODEL

DEFAULT_STORE = Path(os.environ.get("WORKBENCH_STORE", "runs/store"))
store_app = typer.Typer(help="List, inspect, remove and clean cached sweeps.", no_args_is_help=True)


def _alphas(text: str) -> tuple[float, ...]:
    """"0,0.5,2" → (0.0, 0.5, 2.0); which values a sweep accepts (finite, distinct) is :class:`SweepSpec`'s rule."""
    try:
        return tuple(float(a) for a in parse_list(text, "alpha"))
    except ValueError:
        raise WorkbenchError(f"--alpha {text!r} is not a comma-separated list of numbers", "pass e.g. --alpha 0,0.5,2") from None


def _top_table(st, key: str, dense, title: str, n: int = 10) -> Table:
    """Top sites by |mean effect| for each α, from the store's dense copy (no model, no torch): the one bootstrap
    (:func:`workbench.sweeps.aggregate.top_sites`), so these intervals are the app's."""
    from workbench import axis
    from workbench.sweeps import aggregate

    spec = st.manifest(key)["spec"]
    kind, fam = axis.kind(spec["target"]), axis.family(spec.get("intervention", axis.SCALE.name))
    rels = sorted(set(dense.relations) - {""})
    t = Table(fam.alpha_name or "patched", "site", "mean effect", "95% CI", "n", *rels, title=title)
    for r in aggregate.top_sites(dense.values, dense.alphas, dense.relations,
                                 lambda layer, head: kind.label(layer, head if kind.per_head else axis.NO_HEAD), n):
        t.add_row(f"{r['alpha']:g}" if fam.has_alpha else "fully", r["site"],
                  f"{r['mean']:+.4f}", f"[{r['low']:+.3f}, {r['high']:+.3f}]",
                  str(r["n_used"]), *[f"{r['relations'][x]:+.3f}" for x in rels])
    return t


def print_clean(manifest: dict) -> None:
    """The clean model's accuracy on the sweep's probes (manifest key ``clean``) and, when its spatial accuracy is
    near chance, the one-line warning of :func:`workbench.clean.warning`. Nothing for sweeps recorded without it."""
    from workbench import clean

    rec = manifest.get(clean.MANIFEST_KEY)
    if (line := clean.summary(rec)) is not None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if (warn := clean.warning(rec)) is not None:
        console.print(warn, style="bold yellow", highlight=False, markup=False, soft_wrap=True)


def _answer_from_store(st, model: str, dtype: str, ps, spec):
    """(key, manifest) of the complete stored sweep this request maps to, found without building the model: the key
    comes from the fingerprint an earlier load of this exact model folder recorded (:func:`known_identity`).
    None when the model is no folder, was never loaded with this store, or the sweep is absent or incomplete."""
    from workbench.models.load import known_identity
    from workbench.store.effects import sweep_key

    if not Path(model).expanduser().is_dir():
        return None
    ident = known_identity(st.root, model, dtype)
    if ident is None:
        return None
    key = sweep_key(ident["fingerprint"], ps.hash, spec.to_json())
    if not (st.folder(key) / "manifest.json").is_file():
        return None
    try:
        entry = st.entry(key)
    except WorkbenchError:
        return None
    return (key, entry.manifest) if entry.complete else None


@friendly
def sweep_cmd(
    model: str = typer.Option(str(DEFAULT_MODEL), "--model", help="Model folder or hub id (default: the organism)."),
    probes: Path = typer.Option(..., "--probes", help="A probe set folder (workbench probes make)."),
    intervention: str = typer.Option("scale", "--intervention",
                                     help="scale (α = 0 is zero ablation), patch (activation patching with each probe's "
                                          "counterfactual) or temperature (image-key attention logits ÷ α; edges)."),
    alpha: str = typer.Option(None, "--alpha", help="Comma-separated factors, e.g. 0,0.5,2 (default: the intervention's; "
                                                    "none for patch)."),
    positions: str = typer.Option("last", "--positions", help="last (the answer token) or all."),
    metric: str = typer.Option("logit_diff", "--metric", help="logit_diff, accuracy, p_correct or kl."),
    target: str = typer.Option("heads", "--target", help="heads, mlp or edges (last token → image keys)."),
    direction: str = typer.Option("", "--direction", help="Patching only: noising (clean run, counterfactual's outputs "
                                                          "patched in) or denoising (the reverse)."),
    min_gap: float = typer.Option(0.0, "--min-gap", help="Patching only: drop probes whose clean and counterfactual logit "
                                                         "differences are closer than this."),
    split: str = typer.Option(None, "--split", help="Only this split of the probe set (train or test)."),
    store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder (env WORKBENCH_STORE)."),
    engine: str = typer.Option("auto", "--engine", help="auto, packed (exact fast path, last token) or naive."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, …"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    layers_per_chunk: int = typer.Option(8, "--layers-per-chunk", help="Layers per stored chunk."),
    probes_per_chunk: int = typer.Option(64, "--probes-per-chunk", help="Probes per stored chunk."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (actors; the [ray] extra)."),
    ray_workers: int = typer.Option(2, "--ray-workers", help="Ray actors, each with its own copy of the model."),
    ray_address: str = typer.Option(None, "--ray-address",
                                    help="A running Ray cluster (auto, ray://…); default: a local instance."),
    ray_gpus: float = typer.Option(0.0, "--ray-gpus-per-worker", help="GPUs per Ray actor (use with --device cuda)."),
) -> None:
    """Per-head (or per-MLP) effect matrices (alpha × layer × head), cached in the store; reruns resume.

    A sweep the store holds complete is answered from it without loading the model (the key comes from the
    model folder's recorded fingerprint). Prints the clean model's accuracy on the probes beside the result,
    with a warning when its spatial accuracy is near chance."""
    from workbench.models.devices import check_device
    from workbench.models.load import resolve_dtype
    from workbench.probes.probeset import ProbeSet
    from workbench.store.effects import CorruptChunk, EffectStore
    from workbench.sweeps.spec import SweepSpec

    t0 = time.time()
    # everything that needs no model is checked before loading one (a load takes seconds to minutes)
    spec = SweepSpec(alphas=None if alpha is None else _alphas(alpha), positions=positions, metric=metric, target=target,
                     intervention=intervention, direction=direction, min_gap=min_gap)
    _cheap_checks(engine, spec, layers_per_chunk, probes_per_chunk, executor)
    device = check_device(device)
    resolve_dtype(dtype)
    ps = ProbeSet.load(probes)
    if split:
        ps = ps.split(split)
    if spec.family.needs_pairs:
        from workbench.causal.checks import check_pairs  # torch-free, so a stored answer stays torch-free

        check_pairs(ps)
    st = EffectStore(store)
    if (hit := _answer_from_store(st, model, dtype, ps, spec)) is not None:
        key, manifest = hit
        try:
            dense = st.read_dense(key)
        except CorruptChunk:
            dense = None  # a chunk went bad since: load the model and recompute it below
        if dense is not None:
            console.print(f"sweep [cyan]{key[:12]}[/]: 0 chunks computed ({executor} executor), "
                          f"{len(manifest['chunks'])} from the store, {time.time() - t0:.1f}s "
                          "(answered from the store; the model was not loaded)")
            print_clean(manifest)
            _print_dropped(spec, dense)
            console.print(_top_table(st, key, dense, f"{manifest['model']} · {ps.name} · {_what(spec)}, {positions} token"))
            return
    result, vlm, runner = _compute(model, ps, spec, st, engine, device, dtype, layers_per_chunk, probes_per_chunk, executor,
                                   ray_workers, ray_address, ray_gpus)
    console.print(f"sweep [cyan]{result.key[:12]}[/]: {result.computed} chunks computed ({runner.name} executor), "
                  f"{result.cached} from the store, {time.time() - t0:.1f}s")
    print_clean(st.manifest(result.key))
    dense = st.read_dense(result.key)
    _print_dropped(spec, dense)
    console.print(_top_table(st, result.key, dense, f"{vlm.name} · {ps.name} · {_what(spec)}, {positions} token"))


def _what(spec) -> str:
    """What the table's numbers are, for its title."""
    return f"{spec.direction} patching effect" if spec.family.needs_pairs else f"{spec.metric} effect"


def _print_dropped(spec, dense) -> None:
    """A patching sweep's count of dropped probes (:func:`workbench.sweeps.aggregate.dropped`)."""
    if not spec.family.needs_pairs:
        return
    from workbench.sweeps import aggregate

    per_probe = aggregate.dropped(dense.values)
    n = int(per_probe.sum())
    gap = f"{spec.min_gap:g}" if spec.min_gap else "1e-06"
    console.print(f"dropped {n} of {len(per_probe)} probes (|LD source − LD base| < {gap}: too close to normalise)",
                  highlight=False, markup=False, soft_wrap=True)


def _cheap_checks(engine: str, spec, layers_per_chunk: int, probes_per_chunk: int, executor: str) -> None:
    """The engine's, chunking's and executor's refusals that need no model, in their own words (sweeps.engine's
    check_engine, check_chunk_sizes, resolve_engine), without importing the engine: _compute runs the real ones."""
    if engine not in ENGINES:
        raise WorkbenchError(f"unknown engine {engine!r}", f"choose from: {', '.join(ENGINES)}")
    if engine == "packed" and spec.positions != "last":
        raise WorkbenchError("the packed engine serves last-token interventions only", "use --engine naive for --positions all")
    if layers_per_chunk <= 0 or probes_per_chunk <= 0:
        raise WorkbenchError(f"chunk sizes must be positive, got {layers_per_chunk} layers × {probes_per_chunk} probes",
                             "pass --layers-per-chunk and --probes-per-chunk ≥ 1")
    if executor not in EXECUTORS:
        raise WorkbenchError(f"unknown executor {executor!r}", f"use one of {', '.join(EXECUTORS)}")


def _compute(model, ps, spec, st, engine, device, dtype, layers_per_chunk, probes_per_chunk, executor, ray_workers, ray_address,
             ray_gpus):
    """Load the model (recording its identity in the store for the next stored answer) and run the sweep."""
    from workbench.models.load import load_vlm, remember_identity
    from workbench.sweeps.engine import check_chunk_sizes, check_engine, resolve_engine
    from workbench.sweeps.executors import make_executor
    from workbench.sweeps.run import sweep

    check_engine(engine)
    check_chunk_sizes(layers_per_chunk, probes_per_chunk)
    runner = make_executor(executor, workers=ray_workers, address=ray_address, gpus_per_worker=ray_gpus,
                           load_kwargs={"device": device, "dtype": dtype})
    with console.status(f"loading {model}"):
        vlm = load_vlm(model, device=device, dtype=dtype)
    resolve_engine(vlm, spec, engine)
    if spec.family.needs_pairs:  # sweep() checks again; here, so that a refusal is one line before the progress bar
        from workbench.sweeps.run import check_sweep_pairs

        check_sweep_pairs(vlm, ps, spec)
    st.root.mkdir(parents=True, exist_ok=True)
    remember_identity(st.root, vlm, dtype)
    with progress_bar("chunks", 1) as advance:
        def progress(done: int, total: int) -> None:
            advance(1 if done else 0, total=max(total, 1))

        result = sweep(vlm, ps, spec, st, engine=engine, layers_per_chunk=layers_per_chunk, probes_per_chunk=probes_per_chunk,
                       progress=progress, log=lambda m: err_console.print(m), executor=runner)
    return result, vlm, runner


def _target_cell(spec: dict) -> str:
    """The target column of `store ls`: the site kind, and the intervention when it is not scaling ("heads · patch noising")."""
    family = spec.get("intervention", "scale")
    return spec["target"] if family == "scale" else f"{spec['target']} · {family} {spec.get('direction', '')}".rstrip()


@store_app.command("ls")
@friendly
def ls(store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder.")) -> None:
    """Every cached sweep: key, model, probes, spec and completeness; then one line per entry that cannot be listed."""
    from workbench.store.effects import EffectStore

    entries, problems = EffectStore.existing(store).scan()
    t = Table("key", "model", "probes", "alphas", "metric", "positions", "target", "chunks", title=str(store))
    for e in entries:
        s = e.manifest["spec"]
        state = "" if e.complete else f" ({len(e.problems)} unusable)" if e.problems else " (resumable)"
        t.add_row(e.key[:12], e.manifest["model"], f"{e.manifest['probes']} ({e.manifest['n_probes']})",
                  ",".join(map(str, s["alphas"])),
                  s["metric"], s["positions"], _target_cell(s), f"{e.done}/{e.expected}{state}")
    console.print(t)
    lines = [p.notice(store) for p in problems]
    for e in entries:  # a sweep of old-format chunks would give a line per chunk: three, then a count
        lines += [f"{line} (run `workbench store fsck`)" for line in e.problems[:3]]
        if len(e.problems) > 3:
            lines.append(f"… and {len(e.problems) - 3} more chunks of sweep {e.key[:12]} that cannot be used")
    for line in lines:
        console.print(f"problem: {line}", highlight=False, markup=False, soft_wrap=True)


@store_app.command("show")
@friendly
def show(key: str = typer.Argument(..., help="A sweep key or unique prefix."),
         store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder.")) -> None:
    """A sweep's manifest and its top sites (read from the store; no model needed)."""
    from workbench.store.effects import EffectStore

    st = EffectStore.existing(store)
    full = st.resolve(key)
    m = st.manifest(full)
    for k in ("key", "model", "model_fingerprint", "family", "probes", "probeset_hash", "n_probes"):
        console.print(f"[bold]{k}[/]: {m.get(k, '')}")
    console.print(f"[bold]spec[/]: {m['spec']}")
    print_clean(m)
    dense = st.read_dense(full)
    from workbench.sweeps.spec import SweepSpec  # torch-free

    _print_dropped(SweepSpec.from_json(m["spec"]), dense)  # a patching sweep's dropped probes (nothing for the others)
    console.print(_top_table(st, full, dense, f"top sites of {full[:12]}"))


@store_app.command("rm")
@friendly
def rm(key: str = typer.Argument(..., help="A sweep key or unique prefix."),
       store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder.")) -> None:
    """Remove one cached sweep."""
    from workbench.store.effects import EffectStore

    st = EffectStore.existing(store)
    full = st.resolve(key)
    st.rm(full)
    console.print(f"removed {full[:12]}")


@store_app.command("gc")
@friendly
def gc(store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder."),
       older_than: float = typer.Option(3600, "--older-than", help="Seconds: only leftovers older than this.")) -> None:
    """Remove what no run can use: stale temporary files, empty folders, chunks that fail their checks, chunks outside
    their manifest's plan. Never chunks a rerun can use: a sweep whose manifest is lost is kept, and gc says so."""
    from workbench.store.effects import EffectStore

    report = EffectStore.existing(store).collect(older_than)
    console.print(f"removed {len(report.removed)} leftover(s)" + "".join(f"\n  {r}" for r in report.reasons),
                  highlight=False, markup=False, soft_wrap=True)
    for line in report.kept:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


@store_app.command("fsck")
@friendly
def fsck_cmd(store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder."),
             fix: bool = typer.Option(False, "--fix", help="Do what each line says (restore, remove, quarantine)."),
             older_than: float = typer.Option(3600, "--older-than",
                                              help="Seconds: temporary files younger than this "
                                                   "belong to writers at work and are left alone.")) -> None:
    """Check every file of the store and list each problem with what fixing it does; --fix does it.

    Checks every manifest, every chunk in full (checksum, and that it is the chunk of its name and sweep),
    probe-set headers and content, scale vectors, head sets and attention caches. Fixes: restore a lost or
    broken manifest from the copy its chunks carry; remove a corrupt, unverifiable or orphan chunk (the next
    run recomputes it), stale temporary files and empty folders; move files it cannot read to quarantine/.

    Exit status: 0 when the store is clean (or --fix repaired every problem), 1 when problems were found and
    not fixed, 2 on a usage error."""
    from workbench.store.fsck import fsck, repair

    if not Path(store).is_dir():
        raise WorkbenchError(f"store {store} does not exist", "pass --store with an existing effect store folder")
    problems = fsck(store, older_than)
    if not problems:
        console.print(f"{store}: no problems", highlight=False, markup=False)
        return
    for p in problems:
        console.print(p.line(store), highlight=False, markup=False, soft_wrap=True)
    if not fix:
        console.print(f"{len(problems)} problems found; `workbench store fsck --fix` repairs them", highlight=False, markup=False)
        raise typer.Exit(1)
    for line in repair(store, problems):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    left = fsck(store, older_than)
    console.print(f"fixed {len(problems) - len(left)} problems" + (f"; {len(left)} remain" if left else ""), highlight=False,
                  markup=False)
    if left:
        raise typer.Exit(1)
