"""Train ScAle scale vectors (and, through the same loop, the LoRA / (IA)³ baselines).

ScAle keeps the model frozen and learns one raw parameter ``u`` per (layer, query head) and one per
layer's MLP. The factor applied is ``eff = 1 + s_max·tanh(u)``: bounded in ``[1 − s_max, 1 + s_max]``,
exactly 1 at ``u = 0`` (training starts from the unchanged model), with the gradient of a plain
scale near the start. On a 32-layer × 32-head model that is 1,024 + 32 numbers.

The loss is the cross-entropy of the answer token at the last position (the same position every
metric reads), plus ``l2 · Σu²``. AdamW (no weight decay of its own), gradient accumulation,
gradient-norm clipping, and early stopping on a seeded validation split: the parameters of the
epoch with the best validation loss are kept. Everything random (split, order) is seeded.

:func:`fit` is the loop, independent of what is trained: it takes a ``forward(inputs) → logits``
and the parameters, so baselines (:mod:`workbench.scale.baselines`) are trained in the same harness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch

from workbench import metrics
from workbench.errors import WorkbenchError
from workbench.interventions.core import HeadScale, MlpScale
from workbench.interventions.torch_hooks import TorchHooksBackend
from workbench.models.load import VLM
from workbench.models.prompts import Batch, build_batch
from workbench.names import check_positions
from workbench.probes.probeset import ProbeSet
from workbench.scale.vector import MODES, ScaleVector


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "both"  # attn | mlp | both
    positions: str = "last"  # last (ScAle reference) | all
    s_max: float = 10.0
    lr: float = 1e-3
    epochs: int = 10
    batch: int = 16
    accum: int = 1  # batches per optimizer step
    clip: float = 1.0
    l2: float = 1e-4
    val_fraction: float = 0.1
    patience: int = 3  # epochs without a better validation loss before stopping
    seed: int = 0
    schedule: str = "constant"  # learning rate: constant, or cosine (decays to 0 over all epochs' steps)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise WorkbenchError(f"unknown mode {self.mode!r}", f"use one of: {', '.join(MODES)}")
        check_positions(self.positions)
        if self.s_max <= 0 or self.lr <= 0 or self.epochs < 1 or self.batch < 1 or self.accum < 1:
            raise WorkbenchError("s_max, lr, epochs, batch and accum must be positive", "e.g. --epochs 10 --batch 16")
        if self.schedule not in ("constant", "cosine"):
            raise WorkbenchError(f"unknown schedule {self.schedule!r}", "use constant or cosine")
        if not 0 <= self.val_fraction < 1:
            raise WorkbenchError(f"val fraction must be in [0, 1), got {self.val_fraction}", "e.g. 0.1")


class ScaleParams(torch.nn.Module):
    """The raw parameters ``u`` and the masks of what is trained: ``u_attn [layer, head]``, ``u_mlp [layer]``."""

    def __init__(self, shape: tuple[int, int], mode: str = "both", s_max: float = 10.0,
                 heads: Iterable[tuple[int, int]] | None = None):
        super().__init__()
        n_layers, n_heads = shape
        self.s_max = float(s_max)
        self.u_attn = torch.nn.Parameter(torch.zeros(n_layers, n_heads))
        self.u_mlp = torch.nn.Parameter(torch.zeros(n_layers))
        attn_mask = torch.zeros(n_layers, n_heads) if mode == "mlp" else torch.ones(n_layers, n_heads)
        if heads is not None and mode != "mlp":
            attn_mask = torch.zeros(n_layers, n_heads)
            for layer, head in heads:
                if not (0 <= layer < n_layers and 0 <= head < n_heads):
                    raise WorkbenchError(f"head ({layer}, {head}) is outside this model's {n_layers} layers × {n_heads} heads",
                                         "use a head set made for this model")
                attn_mask[layer, head] = 1.0
        self.register_buffer("attn_mask", attn_mask)
        self.register_buffer("mlp_mask", torch.zeros(n_layers) if mode == "attn" else torch.ones(n_layers))

    def eff_attn(self) -> torch.Tensor:
        return 1 + self.attn_mask * self.s_max * torch.tanh(self.u_attn)

    def eff_mlp(self) -> torch.Tensor:
        return 1 + self.mlp_mask * self.s_max * torch.tanh(self.u_mlp)

    def n_trainable(self) -> int:
        return int(self.attn_mask.sum() + self.mlp_mask.sum())

    def penalty(self) -> torch.Tensor:
        return (self.attn_mask * self.u_attn).pow(2).sum() + (self.mlp_mask * self.u_mlp).pow(2).sum()


def answer_tokens(batch: Batch) -> torch.Tensor:
    """Vocabulary id of each probe's correct option ``[batch]``."""
    return metrics.answer_token(batch.option_ids, batch.answer)


def split_train_val(probes: ProbeSet, fraction: float, seed: int) -> tuple[ProbeSet, ProbeSet | None]:
    if fraction == 0 or len(probes) < 10:
        return probes, None
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(probes), generator=g).tolist()
    n_val = max(1, round(fraction * len(probes)))
    val_ids = {probes.items[i].id for i in perm[:n_val]}
    return probes.filter(lambda it: it.id not in val_ids), probes.filter(lambda it: it.id in val_ids)


@torch.no_grad()
def _validate(vlm: VLM, probes: ProbeSet, forward: Callable[[dict], torch.Tensor], batch: int) -> dict[str, float]:
    loss, acc, n = 0.0, 0.0, 0
    for s in range(0, len(probes), batch):
        b = build_batch(vlm, probes, probes.items[s:s + batch])
        logits = forward(b.inputs).float()
        loss += float(torch.nn.functional.cross_entropy(logits, answer_tokens(b), reduction="sum"))
        acc += float(metrics.accuracy(logits, b.option_ids, b.answer).sum())
        n += len(b)
    return {"loss": loss / n, "accuracy": acc / n}


def fit(vlm: VLM, probes: ProbeSet, forward: Callable[[dict], torch.Tensor], params: Sequence[torch.nn.Parameter],
        cfg: TrainConfig,
        penalty: Callable[[], torch.Tensor] | None = None, progress: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> dict:
    """Train ``params`` so that ``forward(inputs)`` (last-position logits ``[batch, vocab]``) answers ``probes``.

    Returns ``{"history": [per-epoch metrics], "best_epoch": k, "stopped": reason}``; ``params`` hold the
    best epoch's values on return. ``progress`` is called after every optimizer step and epoch with a
    dict (``kind`` = "step" | "epoch``); ``should_stop`` is polled between steps (cancellation).
    """
    torch.manual_seed(cfg.seed)
    train, val = split_train_val(probes, cfg.val_fraction, cfg.seed)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    steps_per_epoch = math.ceil(math.ceil(len(train) / cfg.batch) / cfg.accum)
    total = steps_per_epoch * cfg.epochs
    cosine = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine if cfg.schedule == "cosine" else lambda s: 1.0)
    history, best, best_state, best_epoch, bad, reason = [], math.inf, None, 0, 0, "epochs"
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(train), generator=g).tolist()
        batches = [[train.items[i] for i in order[s:s + cfg.batch]] for s in range(0, len(order), cfg.batch)]
        run_loss, run_acc, seen, step = 0.0, 0.0, 0, 0
        opt.zero_grad(set_to_none=True)
        for k, items in enumerate(batches):
            if should_stop is not None and should_stop():
                reason = "cancelled"
                break
            b = build_batch(vlm, train, items)
            logits = forward(b.inputs).float()
            ce = torch.nn.functional.cross_entropy(logits, answer_tokens(b))
            loss = ce + (cfg.l2 * penalty() if penalty is not None and cfg.l2 else 0.0)
            (loss * len(b) / min(cfg.batch * cfg.accum, len(train))).backward()
            run_loss += float(ce.detach()) * len(b)
            run_acc += float(metrics.accuracy(logits.detach(), b.option_ids, b.answer).sum())
            seen += len(b)
            if (k + 1) % cfg.accum == 0 or k == len(batches) - 1:
                if cfg.clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                if progress:
                    progress({"kind": "step", "epoch": epoch, "step": step, "steps": steps_per_epoch,
                              "loss": run_loss / seen, "accuracy": run_acc / seen})
        if reason == "cancelled":
            break
        point = {"epoch": epoch, "train_loss": run_loss / max(seen, 1), "train_accuracy": run_acc / max(seen, 1)}
        if val is not None:
            v = _validate(vlm, val, forward, cfg.batch)
            point |= {"val_loss": v["loss"], "val_accuracy": v["accuracy"]}
        history.append(point)
        if progress:
            progress({"kind": "epoch", **point})
        score = point.get("val_loss", point["train_loss"])
        if score < best - 1e-6:
            best, best_epoch, bad = score, epoch, 0
            best_state = [p.detach().clone() for p in params]
        else:
            bad += 1
            if val is not None and bad >= cfg.patience:
                reason = "early stopping"
                break
    if best_state is not None:
        with torch.no_grad():
            for p, s in zip(params, best_state):
                p.copy_(s)
    return {"history": history, "best_epoch": best_epoch, "stopped": reason}


def scale_forward(vlm: VLM, scales: ScaleParams, positions: str) -> Callable[[dict], torch.Tensor]:
    """Last-position logits of the frozen model with the current scales hooked in (differentiable in ``u``)."""
    be = TorchHooksBackend(vlm)

    def forward(inputs: dict) -> torch.Tensor:
        ivs = [HeadScale(scales.eff_attn(), positions), MlpScale(scales.eff_mlp(), positions)]
        return be.last_logits(inputs, ivs, grad=torch.is_grad_enabled())

    return forward


def train_scales(vlm: VLM, probes: ProbeSet, cfg: TrainConfig = TrainConfig(), heads: Iterable[tuple[int, int]] | None = None,
                 progress: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None) -> ScaleVector:
    """Train a ScAle vector on ``probes`` (optionally only over ``heads``; others stay at 1)."""
    if len(probes) == 0:
        raise WorkbenchError("the probe set is empty", "train on a probe set with items")
    heads = None if heads is None else [tuple(map(int, h)) for h in heads]
    scales = ScaleParams(vlm.site.shape, cfg.mode, cfg.s_max, heads)
    params = [p for p, mask in ((scales.u_attn, scales.attn_mask), (scales.u_mlp, scales.mlp_mask)) if mask.any()]
    if not params:
        raise WorkbenchError("nothing to train: the head set is empty and the mode excludes MLPs",
                             "give heads or use --mode both")
    result = fit(vlm, probes, scale_forward(vlm, scales, cfg.positions), params, cfg, scales.penalty, progress, should_stop)
    with torch.no_grad():
        attn, mlp = scales.eff_attn().detach().clone(), scales.eff_mlp().detach().clone()
    return ScaleVector(attn=attn, mlp=mlp, model=vlm.name, model_fingerprint=vlm.fingerprint, positions=cfg.positions,
                       mode=cfg.mode,
                       s_max=cfg.s_max, probes_hash=probes.hash,
                       metrics={"n_params": scales.n_trainable(), **result, "config": asdict(cfg)},
                       extra={"heads": [list(h) for h in heads] if heads is not None else None})



def evaluate_vector(vlm: VLM, vector: ScaleVector, probes: ProbeSet, backend: str = "torch") -> dict:
    """Accuracy on ``probes`` without and with ``vector`` applied: the record kept as ``vector.metrics["eval"]``.

    Returns ``{"probes": name, "probes_hash": h, "n": len(probes), "before": {...}, "after": {...},
    "before_relation": {...}, "after_relation": {...}, "accuracy_before": before["spatial"],
    "accuracy_after": after["spatial"]}``. ``before`` / ``after`` map each task, each family
    (``spatial``, ``control``) and ``all`` to the fraction of probes answered correctly (the option
    with the highest last-position logit is the right one). A family with no probe in the set is
    ``None`` (not measured), never 0; the ``*_relation`` dicts hold spatial accuracy per true relation.
    """
    from workbench.evaluation import score

    if len(probes) == 0:
        raise WorkbenchError("the evaluation probe set is empty", "evaluate on a probe set with items")
    vector.check_model(vlm.fingerprint, vlm.site.shape, vlm.name)
    before = score(vlm, probes, backend=backend)
    after = score(vlm, probes, vector.interventions(), backend=backend)
    b, a = before.by_task(), after.by_task()
    for family in ("spatial", "control"):
        b.setdefault(family, None)
        a.setdefault(family, None)
    return {"probes": probes.name, "probes_hash": probes.hash, "n": len(probes), "before": b, "after": a,
            "before_relation": before.by_relation(), "after_relation": after.by_relation(),
            "accuracy_before": b["spatial"], "accuracy_after": a["spatial"]}
