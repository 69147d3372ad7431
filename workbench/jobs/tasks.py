"""What a job does: plain functions from parameters to stored results, run only inside a worker.

Each task takes the parameter dict (:mod:`workbench.jobs.params`) and a :class:`Reporter`, loads the
model itself, writes its results into the store (effect chunks, probe-set copy and attention maps
for a sweep; a scale vector for training) and returns a small JSON-able summary. Progress goes
through ``report.progress``/``report.point``; ``report.should_stop`` is polled between units of
work, and a stop raises :class:`~workbench.errors.Cancelled` after the last whole write — a
cancelled sweep is a resumable one, a cancelled training run saves nothing.

Probe sets: ``"default"`` is the organism's fixed held-out set, spatial probes only (scenes whose
color–shape pairs the organism never saw); training on the default draws the organism study's repair
set (seeded probes of every task, another stream) and tests on the whole held-out set, spatial and
control. Any other value is a probe-set folder: training uses its train and test splits when it has
both, else the paper's seeded 20/80 split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from workbench.errors import Cancelled
from workbench.jobs.params import DEFAULT_PROBES
from workbench.probes.probeset import ProbeSet


class Reporter(Protocol):
    def progress(self, done: int, total: int, message: str = "", **extra) -> None: ...
    def point(self, point: dict) -> None: ...
    def should_stop(self) -> bool: ...


def default_probes() -> ProbeSet:
    """The organism's fixed held-out evaluation set, spatial half (every model gets the same seeded set)."""
    from workbench.organism.probesets import eval_probes

    return eval_probes().filter(lambda it: it.family == "spatial", name="heldout-spatial")


def load_probes(spec: str) -> ProbeSet:
    return default_probes() if spec == DEFAULT_PROBES else ProbeSet.load(spec)


def _load_model(params: dict, report: Reporter, eager: bool = False):
    from workbench.models.load import load_vlm

    report.progress(0, 0, f"loading {params['model']}")
    vlm = load_vlm(params["model"], device=params.get("device", "cpu"), attn_implementation="eager" if eager else None)
    if report.should_stop():
        raise Cancelled("cancelled while loading the model")
    return vlm


def sweep_spec(params: dict):
    """The :class:`~workbench.sweeps.spec.SweepSpec` a sweep job's parameters (:func:`workbench.jobs.sweep_params`)
    describe: site kind, family, direction and min gap included. A job submitted before families existed has no
    intervention fields: a scale sweep, as it was."""
    from workbench.sweeps.spec import SweepSpec

    return SweepSpec(alphas=tuple(params["alphas"]), positions=params["positions"], metric=params["metric"],
                     target=params["target"], intervention=params.get("intervention", "scale"),
                     direction=params.get("direction", ""), min_gap=float(params.get("min_gap", 0.0)))


def sweep_task(params: dict, report: Reporter) -> dict:
    """Run (or finish) a sweep into the store, keep a copy of its probes and the heads' attention maps."""
    from workbench.discovery.attention import last_token_image_attention
    from workbench.store.effects import EffectStore
    from workbench.store.library import Library
    from workbench.sweeps.run import sweep

    spec = sweep_spec(params)
    probes = load_probes(params["probes"])
    try:
        vlm = _load_model(params, report)
    except Cancelled as e:
        raise Cancelled(f"{e}: nothing stored") from None
    store, library = EffectStore(params["store"]), Library(params["store"])
    library.add_probes(probes)
    # progress counts work units (probe × variant) so it moves inside a chunk; the message counts stored chunks
    chunks = {"done": 0, "total": 0}
    units = {"done": 0, "total": 0}

    def chunk_line() -> str:
        line = f"{chunks['done']} of {chunks['total']} chunks stored"
        return line + (f" · computing chunk {chunks['done'] + 1}" if chunks["done"] < chunks["total"] else "")

    def on_chunks(d: int, t: int) -> None:
        chunks.update(done=d, total=t)
        report.progress(units["done"], units["total"], chunk_line(), chunks_done=d, chunks_total=t)

    def on_units(d: int, t: int) -> None:
        units.update(done=d, total=t)
        report.progress(d, t, chunk_line())

    report.progress(0, 0, "the clean model on the probes")
    result = sweep(vlm, probes, spec, store, probes_per_chunk=int(params.get("probes_per_chunk", 64)), progress=on_chunks,
                   units=on_units, log=lambda m: report.progress(0, 0, m), should_stop=report.should_stop)
    n_att = int(params.get("attention_probes", 16))
    if n_att and library.attention(vlm.fingerprint, probes.hash) is None:
        report.progress(units["total"] or 1, units["total"] or 1, "attention maps")
        library.save_attention(vlm.fingerprint, probes.hash, last_token_image_attention(vlm, probes, n=n_att))
    return {"key": result.key, "computed": result.computed, "cached": result.cached, "model": vlm.name, "probes": probes.name,
            "n_probes": len(probes)}


def default_repair_probes(n: int, seed: int) -> ProbeSet:
    """The organism study's repair set: ``n`` fresh seeded probes of every task (the generator's mix, half spatial and
    half control), drawn as the organism draws its scenes, from a stream the held-out set never uses."""
    from workbench.organism.probesets import probe_config
    from workbench.probes.generate import generate
    from workbench.probes.items import TASKS

    return generate(probe_config(n, 20_000 + seed, tasks=TASKS))


def default_test_probes() -> ProbeSet:
    """The organism's fixed 500-probe held-out set, spatial and control tasks (the study's test set): a default
    training run reports what it repaired and what it cost."""
    from workbench.organism.probesets import eval_probes

    return eval_probes(0)


def _splits(params: dict) -> tuple[ProbeSet, ProbeSet]:
    from workbench.scale.split import reference_split

    if params["probes"] == DEFAULT_PROBES:
        return default_repair_probes(int(params["n_train"]), int(params["seed"])), default_test_probes()
    ps = ProbeSet.load(params["probes"])
    splits = {it.split for it in ps}
    if {"train", "test"} <= splits:
        return ps.split("train"), ps.split("test")
    return reference_split(ps, int(params["seed"]))  # the ScAle reference's per-task 20% / 80% split, pooled


def train_task(params: dict, report: Reporter) -> dict:
    """Train a ScAle vector, score the test probes before and after, save it as ``<store>/scales/NAME``."""
    from dataclasses import asdict
    from pathlib import Path

    from workbench.scale.train import TrainConfig, evaluate_vector, train_scales

    cfg = TrainConfig(mode=params["mode"], positions=params["positions"], s_max=params["s_max"], lr=params["lr"],
                      epochs=params["epochs"], batch=params["batch"], seed=params["seed"],
                      patience=int(params.get("patience", TrainConfig.patience)), l2=float(params.get("l2", TrainConfig.l2)))
    train, test = _splits(params)
    vlm = _load_model(params, report, eager=True)
    steps = {"n": 0, "total": 0}  # total: fit's steps per epoch (after its validation split) × epochs

    def progress(p: dict) -> None:
        if p["kind"] == "step":
            steps["n"] += 1
            steps["total"] = cfg.epochs * p["steps"]
            report.progress(steps["n"], steps["total"],
                            f"epoch {p['epoch']} · loss {p['loss']:.3f} · accuracy {p['accuracy']:.1%}")
        report.point({**p, "global_step": steps["n"]})

    vector = train_scales(vlm, train, cfg, heads=params["heads"], progress=progress, should_stop=report.should_stop)
    if vector.metrics.get("stopped") == "cancelled":
        raise Cancelled(f"training cancelled at step {steps['n']} of {steps['total']}; nothing saved")
    report.progress(steps["n"], steps["n"], "scoring the test probes")
    ev = vector.metrics["eval"] = evaluate_vector(vlm, vector, test)
    vector.extra["train_probes"] = {"name": train.name, "n": len(train)}
    vector.extra["config"] = asdict(cfg)
    path = vector.save(Path(params["store"]) / "scales" / f"{params['name']}.safetensors")
    return {"vector": str(path), "name": params["name"], "accuracy_before": ev["accuracy_before"],
            "accuracy_after": ev["accuracy_after"], "before": ev["before"], "after": ev["after"], "n_test": ev["n"],
            "test_probes": ev["probes"], "best_epoch": vector.metrics.get("best_epoch")}


TASKS: dict[str, Callable[[dict, Reporter], dict]] = {"sweep": sweep_task, "train": train_task}
