"""What a job does: plain functions from parameters to stored results, run only inside a worker.

Each task takes the parameter dict (:mod:`workbench.jobs.params`) and a :class:`Reporter`, loads the
model itself, writes its results into the store (effect chunks, probe-set copy and attention maps
for a sweep; a scale vector for training) and returns a small JSON-able summary. Progress goes
through ``report.progress``/``report.point``; ``report.should_stop`` is polled between units of
work, and a stop raises :class:`~workbench.errors.Cancelled` after the last whole write — a
cancelled sweep is a resumable one, a cancelled training run saves nothing.

Probe sets: ``"default"`` is the organism's fixed held-out set, spatial probes only (scenes whose
color–shape pairs the organism never saw); training draws its own seeded spatial probes from
another stream and tests on the default set. Any other value is a probe-set folder: training uses
its train and test splits when it has both, else the paper's seeded 20/80 split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from workbench.errors import Cancelled
from workbench.jobs.params import DEFAULT_PROBES
from workbench.probes.items import SPATIAL_TASKS
from workbench.probes.probeset import ProbeSet


class Reporter(Protocol):
    def progress(self, done: int, total: int, message: str = "") -> None: ...
    def point(self, point: dict) -> None: ...
    def should_stop(self) -> bool: ...


def default_probes() -> ProbeSet:
    """The organism's fixed held-out evaluation set, spatial half (every model gets the same seeded set)."""
    from workbench.organism.train import eval_probes

    return eval_probes().filter(lambda it: it.family == "spatial", name="heldout-spatial")


def default_train_probes(n: int, seed: int) -> ProbeSet:
    """Seeded spatial probes from a stream the default set never uses (new scenes, training color–shape pairs)."""
    from workbench.probes.generate import ProbeConfig, generate

    return generate(ProbeConfig(n=n, seed=20_000 + seed, tasks=SPATIAL_TASKS, test_fraction=0.0))


def load_probes(spec: str) -> ProbeSet:
    return default_probes() if spec == DEFAULT_PROBES else ProbeSet.load(spec)


def _load_model(params: dict, report: Reporter, eager: bool = False):
    from workbench.models.load import load_vlm

    report.progress(0, 0, f"loading {params['model']}")
    vlm = load_vlm(params["model"], device=params.get("device", "cpu"), attn_implementation="eager" if eager else None)
    if report.should_stop():
        raise Cancelled("cancelled while loading the model")
    return vlm


def sweep_task(params: dict, report: Reporter) -> dict:
    """Run (or finish) a sweep into the store, keep a copy of its probes and the heads' attention maps."""
    from workbench.discovery.attention import last_token_image_attention
    from workbench.store.effects import EffectStore
    from workbench.store.library import Library
    from workbench.sweeps.engine import SweepSpec
    from workbench.sweeps.run import sweep

    spec = SweepSpec(alphas=tuple(params["alphas"]), positions=params["positions"], metric=params["metric"], target=params["target"])
    probes = load_probes(params["probes"])
    vlm = _load_model(params, report)
    store, library = EffectStore(params["store"]), Library(params["store"])
    library.add_probes(probes)
    result = sweep(vlm, probes, spec, store, probes_per_chunk=int(params.get("probes_per_chunk", 64)), progress=lambda d, t: report.progress(d, t, f"chunk {d} of {t}"),
                   log=lambda m: report.progress(0, 0, m), should_stop=report.should_stop)
    n_att = int(params.get("attention_probes", 16))
    if n_att and library.attention(vlm.fingerprint, probes.hash) is None:
        report.progress(1, 1, "attention maps")
        library.save_attention(vlm.fingerprint, probes.hash, last_token_image_attention(vlm, probes, n=n_att))
    return {"key": result.key, "computed": result.computed, "cached": result.cached, "model": vlm.name, "probes": probes.name,
            "n_probes": len(probes)}


def _splits(params: dict) -> tuple[ProbeSet, ProbeSet]:
    from workbench.scale.train import paper_split

    if params["probes"] == DEFAULT_PROBES:
        return default_train_probes(int(params["n_train"]), int(params["seed"])), default_probes()
    ps = ProbeSet.load(params["probes"])
    splits = {it.split for it in ps}
    if {"train", "test"} <= splits:
        return ps.split("train"), ps.split("test")
    return paper_split(ps, int(params["seed"]))


def train_task(params: dict, report: Reporter) -> dict:
    """Train a ScAle vector, score the test probes before and after, save it as ``<store>/scales/NAME``."""
    from dataclasses import asdict
    from pathlib import Path

    from workbench.evaluation import score
    from workbench.scale.train import TrainConfig, train_scales

    cfg = TrainConfig(mode=params["mode"], positions=params["positions"], s_max=params["s_max"], lr=params["lr"],
                      epochs=params["epochs"], batch=params["batch"], seed=params["seed"])
    train, test = _splits(params)
    vlm = _load_model(params, report, eager=True)
    steps = {"n": 0, "total": 0}  # total: fit's steps per epoch (after its validation split) × epochs

    def progress(p: dict) -> None:
        if p["kind"] == "step":
            steps["n"] += 1
            steps["total"] = cfg.epochs * p["steps"]
            report.progress(steps["n"], steps["total"], f"epoch {p['epoch']} · loss {p['loss']:.3f} · accuracy {p['accuracy']:.1%}")
        report.point({**p, "global_step": steps["n"]})

    vector = train_scales(vlm, train, cfg, heads=params["heads"], progress=progress, should_stop=report.should_stop)
    if vector.metrics.get("stopped") == "cancelled":
        raise Cancelled(f"training cancelled at step {steps['n']} of {steps['total']}; nothing saved")
    report.progress(steps["n"], steps["n"], "scoring the test probes")
    before = score(vlm, test, backend="torch")
    after = score(vlm, test, vector.interventions(), backend="torch")
    vector.metrics["eval"] = {"probes": test.name, "probes_hash": test.hash, "n": len(test),
                              "before": before.by_task(), "after": after.by_task(),
                              "before_relation": before.by_relation(), "after_relation": after.by_relation()}
    vector.extra["train_probes"] = {"name": train.name, "n": len(train)}
    vector.extra["config"] = asdict(cfg)
    path = vector.save(Path(params["store"]) / "scales" / f"{params['name']}.safetensors")
    return {"vector": str(path), "name": params["name"], "accuracy_before": before.by_task().get("spatial"),
            "accuracy_after": after.by_task().get("spatial"), "best_epoch": vector.metrics.get("best_epoch")}


TASKS: dict[str, Callable[[dict, Reporter], dict]] = {"sweep": sweep_task, "train": train_task}
