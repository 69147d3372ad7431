"""``workbench sweep`` and ``workbench store``: per-head effect sweeps and the cache that keeps them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer
from rich.table import Table

from workbench.cli._common import console, err_console, friendly, parse_list, progress_bar
from workbench.errors import WorkbenchError
from workbench.organism import DEFAULT_MODEL

DEFAULT_STORE = Path(os.environ.get("WORKBENCH_STORE", "runs/store"))
store_app = typer.Typer(help="List, inspect, remove and clean cached sweeps.", no_args_is_help=True)


def _alphas(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(a) for a in parse_list(text, "alpha"))
    except ValueError:
        raise WorkbenchError(f"--alpha {text!r} is not a comma-separated list of numbers", "pass e.g. --alpha 0,0.5,2") from None


def _top_table(frame, title: str, n: int = 10) -> Table:
    """Top sites by |mean effect| for each alpha, from a long-form frame (no model needed)."""
    t = Table("alpha", "site", "mean effect", "95% CI", *sorted(set(frame["relation"]) - {""}), title=title)
    import torch

    from workbench.sweeps.aggregate import bootstrap_ci

    for alpha, per_alpha in frame.groupby("alpha"):
        wide = per_alpha.pivot_table(index="probe_id", columns=["layer", "head"], values="value")
        means = wide.mean(axis=0)
        top = means.abs().sort_values(ascending=False).index[:n]
        low, high = bootstrap_ci(torch.tensor(wide[top].to_numpy()), n_boot=500)
        rel = per_alpha.groupby(["relation", "layer", "head"])["value"].mean()
        for i, (layer, head) in enumerate(top):
            site = f"L{layer}H{head}" if head >= 0 else f"L{layer} MLP"
            rels = [f"{rel.get((r, layer, head), float('nan')):+.3f}" for r in sorted(set(frame["relation"]) - {""})]
            t.add_row(f"{alpha:g}", site, f"{means[(layer, head)]:+.4f}", f"[{low[i]:+.3f}, {high[i]:+.3f}]", *rels)
    return t


@friendly
def sweep_cmd(
    model: str = typer.Option(str(DEFAULT_MODEL), "--model", help="Model folder or hub id (default: the organism)."),
    probes: Path = typer.Option(..., "--probes", help="A probe set folder (workbench probes make)."),
    intervention: str = typer.Option("scale", "--intervention", help="scale (α = 0 is zero ablation)."),
    alpha: str = typer.Option("0", "--alpha", help="Comma-separated factors, e.g. 0,0.5,2."),
    positions: str = typer.Option("last", "--positions", help="last (the answer token) or all."),
    metric: str = typer.Option("logit_diff", "--metric", help="logit_diff, accuracy, p_correct or kl."),
    target: str = typer.Option("heads", "--target", help="heads or mlp."),
    split: str = typer.Option(None, "--split", help="Only this split of the probe set (train or test)."),
    store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder (env WORKBENCH_STORE)."),
    engine: str = typer.Option("auto", "--engine", help="auto, packed (exact fast path, last token) or naive."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, …"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    layers_per_chunk: int = typer.Option(8, "--layers-per-chunk", help="Layers per stored chunk."),
    probes_per_chunk: int = typer.Option(64, "--probes-per-chunk", help="Probes per stored chunk."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (actors; the [ray] extra)."),
    ray_workers: int = typer.Option(2, "--ray-workers", help="Ray actors, each with its own copy of the model."),
    ray_address: str = typer.Option(None, "--ray-address", help="A running Ray cluster (auto, ray://…); default: a local instance."),
    ray_gpus: float = typer.Option(0.0, "--ray-gpus-per-worker", help="GPUs per Ray actor (use with --device cuda)."),
) -> None:
    """Per-head (or per-MLP) effect matrices (alpha × layer × head), cached in the store; reruns resume."""
    from workbench.models.load import load_vlm
    from workbench.probes.probeset import ProbeSet
    from workbench.store.effects import EffectStore
    from workbench.sweeps.engine import SweepSpec, resolve_engine
    from workbench.sweeps.executors import make_executor
    from workbench.sweeps.run import sweep

    if intervention != "scale":
        raise WorkbenchError(f"unknown intervention {intervention!r}", "use --intervention scale (α = 0 ablates)")
    spec = SweepSpec(alphas=_alphas(alpha), positions=positions, metric=metric, target=target)
    runner = make_executor(executor, workers=ray_workers, address=ray_address, gpus_per_worker=ray_gpus,
                           load_kwargs={"device": device, "dtype": dtype})
    ps = ProbeSet.load(probes)
    if split:
        ps = ps.split(split)
    with console.status(f"loading {model}"):
        vlm = load_vlm(model, device=device, dtype=dtype)
    resolve_engine(vlm, spec, engine)
    st = EffectStore(store)
    t0 = time.time()
    with progress_bar("chunks", 1) as advance:
        def progress(done: int, total: int) -> None:
            advance(1 if done else 0, total=max(total, 1))

        result = sweep(vlm, ps, spec, st, engine=engine, layers_per_chunk=layers_per_chunk, probes_per_chunk=probes_per_chunk,
                       progress=progress, log=lambda m: err_console.print(m), executor=runner)
    console.print(f"sweep [cyan]{result.key[:12]}[/]: {result.computed} chunks computed ({runner.name} executor), "
                  f"{result.cached} from the store, {time.time() - t0:.1f}s")
    console.print(_top_table(st.read(result.key), f"{vlm.name} · {ps.name} · {metric} effect, {positions} token"))


@store_app.command("ls")
@friendly
def ls(store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder.")) -> None:
    """Every cached sweep: key, model, probes, spec and completeness."""
    from workbench.store.effects import EffectStore

    t = Table("key", "model", "probes", "alphas", "metric", "positions", "target", "chunks", title=str(store))
    for e in EffectStore(store).ls():
        s = e.manifest["spec"]
        t.add_row(e.key[:12], e.manifest["model"], f"{e.manifest['probes']} ({e.manifest['n_probes']})", ",".join(map(str, s["alphas"])),
                  s["metric"], s["positions"], s["target"], f"{e.done}/{e.expected}" + ("" if e.complete else " (resumable)"))
    console.print(t)


@store_app.command("show")
@friendly
def show(key: str = typer.Argument(..., help="A sweep key or unique prefix."),
         store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder.")) -> None:
    """A sweep's manifest and its top sites (read from the store; no model needed)."""
    from workbench.store.effects import EffectStore

    st = EffectStore(store)
    full = st.resolve(key)
    m = st.manifest(full)
    for k in ("key", "model", "model_fingerprint", "family", "probes", "probeset_hash", "n_probes"):
        console.print(f"[bold]{k}[/]: {m[k]}")
    console.print(f"[bold]spec[/]: {m['spec']}")
    console.print(_top_table(st.read(full), f"top sites of {full[:12]}"))


@store_app.command("rm")
@friendly
def rm(key: str = typer.Argument(..., help="A sweep key or unique prefix."),
       store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder.")) -> None:
    """Remove one cached sweep."""
    from workbench.store.effects import EffectStore

    st = EffectStore(store)
    full = st.resolve(key)
    st.rm(full)
    console.print(f"removed {full[:12]}")


@store_app.command("gc")
@friendly
def gc(store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder."),
       older_than: float = typer.Option(3600, "--older-than", help="Seconds: only leftovers older than this.")) -> None:
    """Remove temporary files left by killed writers and folders without a manifest."""
    from workbench.store.effects import EffectStore

    removed = EffectStore(store).gc(older_than)
    console.print(f"removed {len(removed)} leftover(s)" + "".join(f"\n  {r}" for r in removed))
