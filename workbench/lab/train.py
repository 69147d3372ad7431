"""Train the organism: a small LLaVA-architecture VLM, from scratch, on the probe generator.

Why: no pretrained VLM can be downloaded where this project runs, and head discovery and ScAle
repair need a model whose spatial circuitry is *known to exist* (it answers spatial questions) and
can be damaged on purpose (:mod:`workbench.lab.deficit`). The model is a standard
``LlavaForConditionalGeneration`` (:mod:`workbench.lab.model`).

Recipe (all seeded, :class:`~workbench.lab.config.OrganismConfig`): the generator's training split
(held-out color–shape pairs excluded; spatial and control tasks together), prompts through the
checkpoint's own chat template and processor, loss = cross-entropy of the answer word at the last
position (the same place every metric and intervention reads) plus the auxiliary read-outs
(:mod:`workbench.lab.readouts`), AdamW with linear warm-up and cosine decay. Accuracy over the options
on the fixed held-out evaluation set (:func:`workbench.organism.probesets.eval_probes`, 500 items, only
test-split scenes, which all contain a held-out pair) is logged every ``eval_every`` steps into the
training curve. Spatial accuracy can sit at chance for a long stretch before it rises (the training
records in analyses/results/), so a run is judged by its whole curve.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from workbench import metrics
from workbench.errors import WorkbenchError
from workbench.lab.calibration import answer_temperature, fold_temperature
from workbench.lab.checkpoint import load_checkpoint, save_checkpoint
from workbench.lab.config import OrganismConfig
from workbench.lab.data import Encoded, color_token_table, encode, load_pool, pool_key, render_pool, save_pool
from workbench.lab.model import build, pick_device
from workbench.lab.readouts import PatchReadout, WhereReadout
from workbench.lab.stages import init_fingerprint, init_run
from workbench.models.scaffold import save_llava_folder
from workbench.organism.probesets import eval_probes, fresh_probes
from workbench.probes.generate import generate
from workbench.probes.probeset import ProbeSet


def training_data(cfg: OrganismConfig, processor, pool_dir: Path | None = None, log: Callable[[str], None] = print) -> Encoded:
    """The encoded training items: the train split of one generation (``data="set"``), or a pool of
    chunked streams (``data="pool"``, see :mod:`workbench.lab.data`), loaded from ``pool_dir``
    when one was built there for this config and saved there otherwise."""
    if cfg.data == "set":
        return encode(processor, train_probes(cfg))
    key = pool_key(cfg.seed, cfg.n_train, cfg.scene)
    if (saved := saved_pool(cfg, pool_dir, log)) is not None:
        return saved
    data = render_pool(processor, cfg.seed, cfg.n_train, cfg.scene, log=log)
    if pool_dir is not None:
        save_pool(data, pool_dir, key)
        return load_pool(pool_dir, key)
    return data


def saved_pool(cfg: OrganismConfig, pool_dir: Path | None, log: Callable[[str], None] = print) -> Encoded | None:
    """The pool saved in ``pool_dir`` for this config (``data="pool"``), or None where there is none yet;
    a pool built for another config, or a ``meta.pt`` that is not one, is refused."""
    if cfg.data != "pool" or pool_dir is None or not (pool_dir / "meta.pt").is_file():
        return None
    pool = load_pool(pool_dir, pool_key(cfg.seed, cfg.n_train, cfg.scene))
    log(f"training pool from {pool_dir}")
    return pool


def build_pool(cfg: OrganismConfig, folder: Path, workers: int = 0, log: Callable[[str], None] = print) -> None:
    """Render ``cfg``'s pool (``cfg.n_train`` items of seed ``cfg.seed``, its scene geometry) with ``workers``
    processes (0: one per CPU) and save it in ``folder``, where training runs of this recipe load it
    (``--pool``, memory-mapped, so runs side by side share one copy). The processor that encodes it is the one
    a fresh organism of ``cfg`` ships with, built in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        _, _, processor = build(cfg, Path(tmp) / "m")
        data = render_pool(processor, cfg.seed, cfg.n_train, cfg.scene, workers=workers, log=log)
    save_pool(data, Path(folder), pool_key(cfg.seed, cfg.n_train, cfg.scene))


def train_probes(cfg: OrganismConfig) -> ProbeSet:
    """Training probes: the train split only (``test_fraction=0``), same seed, same held-out pairs."""
    return generate(cfg.probe_config(cfg.n_train, cfg.seed))


@torch.no_grad()
def evaluate(model, data: Encoded, device: torch.device, batch: int = 250) -> dict[str, float]:
    """Accuracy over the options, per task and per family (spatial = relation + verify)."""
    model.eval()
    correct = []
    for s in range(0, len(data.tasks), batch):
        idx = torch.arange(s, min(s + batch, len(data.tasks)))
        logits = model(**data.batch(idx, device), logits_to_keep=1).logits[:, -1].float().cpu()
        correct.append(metrics.accuracy(logits, data.option_ids[idx], data.answer[idx]))
    acc = torch.cat(correct)
    out = {}
    for task in sorted(set(data.tasks)):
        m = torch.tensor([t == task for t in data.tasks])
        out[task] = float(acc[m].mean())
    spatial = torch.tensor([t in ("relation", "verify") for t in data.tasks])
    out["spatial"] = float(acc[spatial].mean()) if spatial.any() else float("nan")
    out["control"] = float(acc[~spatial].mean()) if (~spatial).any() else float("nan")
    return out


@torch.no_grad()
def image_spread(model, data: Encoded, device: torch.device, n: int = 64) -> float:
    """How much the projected image tokens of one image differ from each other, relative to their size:
    mean over tokens of ‖f_t − mean_t f‖ / mean ‖f_t‖, on the first ``n`` items (``[n, tokens, hidden]``).

    A diagnostic of the training plateau: when it falls towards 0 the language model receives the
    same vector at every image position (a collapsed vision tower) and cannot tell objects apart."""
    model.eval()
    pixels = data.pixel_values(torch.arange(min(n, len(data.tasks))), device)
    f = torch.stack(list(model.model.get_image_features(pixel_values=pixels).pooler_output)).float()  # LLaVA's own layer choice
    return float((f - f.mean(1, keepdim=True)).norm(dim=-1).mean() / f.norm(dim=-1).mean().clamp_min(1e-12))


def train(cfg: OrganismConfig, out: Path, device: str = "auto", log: Callable[[str], None] = print,
          progress: Callable[[int, dict], None] | None = None, checkpoint: Path | None = None,
          stop_after: int | None = None, pool_dir: Path | None = None) -> dict | None:
    """Train an organism and write it as a Hugging Face folder at ``out``; returns the summary.

    With ``checkpoint``, the full training state (weights, optimizer, schedule, random states,
    data order, curve) is written there atomically at every evaluation, and a run that finds one
    continues from it: an interrupted run resumed gives the same model as an uninterrupted one.
    ``stop_after`` ends the run (after checkpointing) at that step and returns None: training in
    installments, e.g. across sessions on a CPU. ``pool_dir``: where a ``data="pool"`` config's
    pool is loaded from (or saved to), so that runs of one recipe share it.

    On CUDA, deterministic algorithms are asked for (``warn_only``: an op without one warns instead
    of failing) so that two runs of one config follow the same trajectory as far as the kernels allow.
    """
    dev = pick_device(device)
    with _deterministic() if dev.type == "cuda" else contextlib.nullcontext():
        return _train(cfg, out, dev, log, progress, checkpoint, stop_after, pool_dir)


@contextlib.contextmanager
def _deterministic():
    """Deterministic CUDA algorithms while training; the switch is process-wide, so the caller's setting comes back."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts, i.e. at the first matmul
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@dataclass
class _Run:
    """One training run's moving parts: the model and its read-outs, the data, the optimizer and schedule,
    the batch order (``order`` a permutation of the training items, ``pos`` the next unread place in it), the
    curve so far, and the wall-clock origin ``t0`` (moved back by a resumed run's earlier seconds)."""

    cfg: OrganismConfig
    dev: torch.device
    model: torch.nn.Module
    tokenizer: object
    processor: object
    data: Encoded
    eval_data: Encoded
    readout: PatchReadout | None
    where: WhereReadout | None
    color_of_token: torch.Tensor | None  # [vocab] color id of each word, -1 elsewhere (the where loss's targets)
    hooks: list
    seen: dict  # the latest forward's image tokens [b, T, hidden] ("tokens") and last-position residual [b, hidden] ("resid")
    params: list
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    g: torch.Generator
    order: torch.Tensor  # [n_train]
    t0: float
    pos: int = 0
    start: int = 1  # the first step to take
    curve: list = field(default_factory=list)
    threads: list = field(default_factory=list)  # CPU thread counts of every installment (CPU float sums depend on them)

    def next_batch(self) -> torch.Tensor:
        """The next ``batch`` item indices ``[batch]``; a fresh permutation (from ``g``) once the order is used up."""
        if self.pos + self.cfg.batch > len(self.order):
            self.order, self.pos = torch.randperm(len(self.data.tasks), generator=self.g), 0
        idx = self.order[self.pos:self.pos + self.cfg.batch]
        self.pos += self.cfg.batch
        return idx

    def state(self, step: int, seconds: float) -> dict:
        """What a checkpoint holds after ``step`` (:data:`workbench.lab.checkpoint.CHECKPOINT_FIELDS`, and the read-outs)."""
        return {"config": asdict(self.cfg), "step": step, "model": self.model.state_dict(),
                "readout": self.readout.state_dict() if self.readout else None,
                "where": self.where.state_dict() if self.where else None,
                "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "g": self.g.get_state(),
                "torch_rng": torch.get_rng_state(), "order": self.order, "pos": self.pos, "curve": self.curve,
                "threads": self.threads, "seconds": seconds}


def _prepare(cfg: OrganismConfig, out: Path, dev: torch.device, log: Callable[[str], None], pool: Encoded | None,
             pool_dir: Path | None, t0: float) -> _Run:
    """Build the model (written to ``out``), encode the data, attach the read-outs and set up the optimizer.

    The order of the random draws is part of the recipe: the model's initialisation, then the patch
    read-out's, then the where read-out's, then the first batch order (from its own generator)."""
    model, tokenizer, processor = build(cfg, out)
    log(f"rendering {cfg.n_train} training probes and 500 evaluation probes")
    data = pool if pool is not None else training_data(cfg, processor, pool_dir, log)
    eval_data = encode(processor, eval_probes(cfg.seed, cfg))
    # a set fits on the device whole (no per-step host copies); a pool's pixels stay in (shared) host memory
    data, eval_data = data.to(dev, pixels=cfg.data == "set"), eval_data.to(dev)
    log(f"data ready in {time.time() - t0:.0f}s; {sum(p.numel() for p in model.parameters()):,} parameters; device {dev}")
    model.to(dev).train()
    side, hidden = cfg.canvas // cfg.patch, model.config.text_config.hidden_size
    readout, where, color_of_token, seen, hooks = None, None, None, {}, []
    if cfg.patch_loss:
        readout = PatchReadout(hidden, side).to(dev)
        # the image tokens the LM reads, [b, T, hidden], from the latest forward (one slot: evaluation passes overwrite it too)
        hooks.append(model.model.multi_modal_projector.register_forward_hook(lambda mod, args, out: seen.update(tokens=out)))
    if cfg.where_loss:
        where = WhereReadout(hidden, side).to(dev)
        color_of_token = color_token_table(tokenizer)
        hooks.append(WhereReadout.attach(model, cfg.where_layer, seen))
    params = (list(model.parameters()) + (list(readout.parameters()) if readout else [])
              + (list(where.parameters()) if where else []))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) *
                                              (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))))
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data.tasks), generator=g)
    # CPU float reductions depend on the thread count: recorded, so a same-seed rerun can match it bitwise
    threads = [torch.get_num_threads()] if dev.type == "cpu" else []
    return _Run(cfg, dev, model, tokenizer, processor, data, eval_data, readout, where, color_of_token, hooks, seen, params,
                opt, sched, g, order, t0, threads=threads)


def _resume(run: _Run, state: dict, checkpoint: Path, log: Callable[[str], None]) -> None:
    """Put a checkpoint's state into ``run``: weights, read-outs, optimizer, schedule, random states, batch
    order and curve; refused when it was saved by another config."""
    try:
        other = OrganismConfig(**state["config"])  # a field added since fills in with its default
    except TypeError:  # a field this version does not know
        other = None
    if other != run.cfg:
        raise WorkbenchError(f"checkpoint {checkpoint} belongs to another training config", "use the same options or delete it")
    run.model.load_state_dict(state["model"])
    if run.readout is not None:
        run.readout.load_state_dict(state["readout"])
    if run.where is not None:
        run.where.load_state_dict(state["where"])
    run.opt.load_state_dict(state["opt"])
    run.sched.load_state_dict(state["sched"])
    run.g.set_state(state["g"])
    torch.set_rng_state(state["torch_rng"])
    run.order, run.pos, run.curve, run.start = state["order"], state["pos"], state["curve"], state["step"] + 1
    run.t0 -= state["seconds"]
    run.threads = sorted(set(state.get("threads") or []) | set(run.threads))
    log(f"resumed from {checkpoint} at step {state['step']}")
    if len(run.threads) > 1:
        log(f"note: CPU threads differ between installments ({run.threads}); float sums depend on the thread count, "
            f"so this run is not bitwise the uninterrupted one (set OMP_NUM_THREADS to match)")


def _loss(run: _Run, idx: torch.Tensor) -> torch.Tensor:
    """The training loss on the items ``idx`` ``[batch]``: the answer word's cross-entropy at the last position,
    plus the weighted auxiliary read-out losses (which read what the forward pass left in ``run.seen``)."""
    cfg, dev, data = run.cfg, run.dev, run.data
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        logits = run.model(**data.batch(idx, dev), logits_to_keep=1).logits[:, -1]  # [batch, vocab]
    loss = torch.nn.functional.cross_entropy(logits.float(), data.answer_token[idx.to(dev)], label_smoothing=cfg.label_smoothing)
    if run.readout is not None:
        color, shape = data.patch_labels(idx, cfg.patch, cfg.patch_reach)
        loss = loss + cfg.patch_loss * run.readout(run.seen["tokens"], color.to(dev), shape.to(dev))
    if run.where is not None:
        loss = loss + cfg.where_loss * run.where(run.seen["resid"], data.named_cells(idx, cfg.patch, run.color_of_token).to(dev))
    return loss


def _curve_point(run: _Run, step: int, running: list[torch.Tensor], log: Callable[[str], None]) -> dict:
    """Evaluate on the held-out set, append the curve's point for ``step`` (mean loss since the last point,
    accuracies, image spread, seconds) and log it."""
    acc = evaluate(run.model, run.eval_data, run.dev)
    spread = image_spread(run.model, run.eval_data, run.dev)
    run.model.train()
    point = {"step": step, "loss": float(torch.stack(running).mean()), "seconds": round(time.time() - run.t0, 1), **acc,
             "image_spread": round(spread, 5)}
    run.curve.append(point)
    log(f"step {step:5d}  loss {point['loss']:.3f}  spatial {acc['spatial']:.3f}  control {acc['control']:.3f}  "
        f"image spread {spread:.4f}  ({point['seconds']:.0f}s)")
    return point


def _finish(run: _Run, out: Path, log: Callable[[str], None]) -> dict:
    """Detach the read-outs, fold the temperature (``confidence``), save the model at ``out`` and write its
    ``training.json``: the summary (config, the stage it started from, seconds, final held-out accuracies, curve)."""
    cfg, model = run.cfg, run.model
    for hook in run.hooks:
        hook.remove()
    model.eval().to("cpu")
    temperature = 1.0
    if cfg.confidence:
        temperature = answer_temperature(model, encode(run.processor, fresh_probes(cfg.seed, cfg)), cfg.confidence,
                                         torch.device("cpu"))
        fold_temperature(model, temperature)
        log(f"logits × {temperature:.4f}: the right answer's mean probability on fresh scenes is {cfg.confidence}")
    save_llava_folder(model, out, run.tokenizer)
    final = evaluate(model, run.eval_data, torch.device("cpu"))
    summary = {"config": asdict(cfg), "init_sha256": init_fingerprint(cfg.init), "init_run": init_run(cfg.init),
               "device": str(run.dev),
               **({"threads": run.threads} if run.threads else {}), "seconds": round(time.time() - run.t0, 1), "eval": final,
               "curve": run.curve, "temperature": temperature,
               "parameters": sum(p.numel() for p in model.parameters())}
    (out / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _train(cfg: OrganismConfig, out: Path, dev: torch.device, log: Callable[[str], None], progress, checkpoint: Path | None,
           stop_after: int | None, pool_dir: Path | None) -> dict | None:
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    # the files given are read (and checked) before anything is built: a bad one stops the run at once
    state = load_checkpoint(checkpoint) if checkpoint is not None and checkpoint.is_file() else None
    run = _prepare(cfg, out, dev, log, saved_pool(cfg, pool_dir, log), pool_dir, t0)
    if state is not None:
        _resume(run, state, checkpoint, log)
    running = []  # the losses since the last curve point, on the device: no host sync per step
    for step in range(run.start, cfg.steps + 1):
        loss = _loss(run, run.next_batch())
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.params, 1.0)
        run.opt.step()
        run.sched.step()
        running.append(loss.detach())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            point = _curve_point(run, step, running, log)
            running = []
            if progress:
                progress(step, point)
            if checkpoint is not None:
                save_checkpoint(checkpoint, run.state(step, point["seconds"]))
            if stop_after is not None and step >= stop_after and step < cfg.steps:
                log(f"stopped at step {step}; resume with the same checkpoint")
                return None
    return _finish(run, out, log)
