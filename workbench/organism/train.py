"""Train the organism: a small LLaVA-architecture VLM, from scratch, on the probe generator.

Why: no pretrained VLM can be downloaded where this project runs, and head discovery and ScAle
repair need a model whose spatial circuitry is *known to exist* (it answers spatial questions) and
can be damaged on purpose (:mod:`workbench.organism.deficit`). The organism is a standard
``LlavaForConditionalGeneration`` — CLIP-style vision tower, Llama language model with
grouped-query attention — so every code path that serves real LLaVA checkpoints serves it too.

Recipe (all seeded): the generator's training split (held-out color–shape pairs excluded; spatial
and control tasks together), prompts through the checkpoint's own chat template and processor,
loss = cross-entropy of the answer word at the last position (the same place every metric and
intervention reads), AdamW with linear warm-up and cosine decay. Accuracy over the options on
the fixed held-out evaluation set (:func:`eval_probes`, 500 items, only test-split scenes, which
all contain a held-out pair) is logged every ``eval_every`` steps into the training curve.

A feasibility run (4 layers × 8 heads, 48 px, batch 256, lr 1e-3) stayed at chance on spatial
questions for ~1,500 steps before jumping: train long enough.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from workbench import metrics
from workbench.errors import WorkbenchError
from workbench.models.scaffold import llava_config, save_llava_folder, word_tokenizer
from workbench.organism.data import (
    Encoded,
    color_token_table,
    encode,
    load_pool,
    pool_key,
    read_torch_file,
    render_pool,
    save_pool,
)
from workbench.probes.generate import ProbeConfig, generate
from workbench.probes.probeset import ProbeSet
from workbench.probes.scenes import PALETTE, SHAPES


@dataclass(frozen=True)
class OrganismConfig:
    seed: int = 0
    # Defaults: stage 1 of the shipped recipe (see the module docstring and assets/models/organism/README.md).
    n_train: int = 500_000  # distinct training items, rendered once (40K: control memorised)
    data: str = "pool"  # "pool": chunked streams rendered in parallel; "set": one generate() call (the first organism's)
    steps: int = 6_000  # the schedule's length; stage 1 stops at step 5,250 of it (--stop-after)
    batch: int = 256
    lr: float = 1e-3  # 2e-3 collapsed the vision tower without the patch loss (organism_grid_cpu.md)
    weight_decay: float = 0.01
    warmup: int = 200
    eval_every: int = 250
    canvas: int = 64
    patch: int = 16  # one object per patch on the grid: 16 image tokens
    object_size: int = 14  # px; 0: 22% of the canvas
    grid: int = 16  # > 0: objects snap to the centers of cells of this many px (probes.scenes); 0: free placement
    layers: int = 6
    heads: int = 8
    kv_heads: int = 2
    head_dim: int = 16
    vision_hidden: int = 128
    vision_layers: int = 4
    zero_projector: bool = False  # start the projector's output layer at zero (see build)
    patch_loss: float = 1.0  # weight of the auxiliary patch loss (PatchReadout); 0: answer loss only
    patch_reach: int = 0  # the patch loss also labels tokens whose patch center is within this many px of an object's center
    where_loss: float = 0.0  # weight of the language model's auxiliary read-out (WhereReadout); 0: off
    where_layer: int = 2  # WhereReadout reads the last position's residual stream after this decoder layer (0-based)
    # of the answer loss: bounds how far a never-seen answer (a held-out pair's color) is pushed down
    label_smoothing: float = 0.0
    # > 0: after training, scale the logits so the right answer's mean probability is this (answer_temperature)
    confidence: float = 0.0
    init: str = ""  # a model folder whose weights training starts from (same architecture); "": fresh weights

    def __post_init__(self) -> None:
        if self.data not in ("set", "pool"):
            raise WorkbenchError(f"unknown training data kind {self.data!r}", "use data='set' or 'pool'")
        if not self.patch_loss >= 0:
            raise WorkbenchError(f"patch_loss must be a weight ≥ 0, got {self.patch_loss}", "use 0 (off) or e.g. 1.0")
        if not self.where_loss >= 0:
            raise WorkbenchError(f"where_loss must be a weight ≥ 0, got {self.where_loss}", "use 0 (off) or e.g. 1.0")
        if not 0 <= self.label_smoothing < 1:
            raise WorkbenchError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}", "use 0 (off) or e.g. 0.1")
        if not 0 <= self.confidence < 1:
            raise WorkbenchError(f"confidence must be in [0, 1), got {self.confidence}", "use 0 (off) or e.g. 0.999")
        if self.where_loss and not 0 <= self.where_layer < self.layers:
            raise WorkbenchError(f"where_layer {self.where_layer} is not a decoder layer of a {self.layers}-layer organism",
                                 f"use 0 … {self.layers - 1}")
        self.probe_config(1, 0).validate()

    @property
    def scene(self) -> dict:
        """The scene geometry this organism is trained and evaluated on (ProbeConfig fields)."""
        return {"canvas": self.canvas, "object_size": self.object_size, "grid": self.grid}

    def probe_config(self, n: int, seed: int, test_fraction: float = 0.0, **fields) -> ProbeConfig:
        """Probes drawn the way this organism sees its scenes; ``fields``: any other ProbeConfig field."""
        return ProbeConfig(n=n, seed=seed, test_fraction=test_fraction, **self.scene, **fields)


def eval_probes(seed: int = 0, cfg: OrganismConfig | None = None) -> ProbeSet:
    """The fixed 500-item held-out evaluation set: the test split of a seeded generation, whose scenes
    all contain a held-out color–shape pair (so none can appear in training). Scenes are drawn as
    ``cfg`` (default: the shipped recipe) draws them."""
    return generate((cfg or OrganismConfig()).probe_config(625, seed, test_fraction=0.8)).split("test")


def fresh_probes(seed: int = 0, cfg: OrganismConfig | None = None, n: int = 500) -> ProbeSet:
    """500 in-distribution probes: new scenes (another seed's stream) made only of training pairs.
    The gap between this set and :func:`eval_probes` is the cost of unseen color–shape pairs."""
    return generate((cfg or OrganismConfig()).probe_config(n, 10_000 + seed))


def training_data(cfg: OrganismConfig, processor, pool_dir: Path | None = None, log: Callable[[str], None] = print) -> Encoded:
    """The encoded training items: the train split of one generation (``data="set"``), or a pool of
    chunked streams (``data="pool"``, see :mod:`workbench.organism.data`), loaded from ``pool_dir``
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


class PatchReadout(torch.nn.Module):
    """Auxiliary supervision of the image tokens: linear read-outs of each projected image token
    ``[b, tokens, hidden]`` — *what* it shows (the color and the shape of the object whose center lies in its
    patch, class 0: none; :meth:`Encoded.patch_labels`) and *where* it is (its row and column in the
    patch grid).

    Why: trained on answers alone, the vision tower learns shape slowly and as color–shape
    conjunctions, which fail on the held-out pairs of the evaluation set; separate linear read-outs
    ask every token to carry color, shape and position as separate directions, which is what the
    language model must retrieve and compare to answer a spatial question. The read-outs are used
    only while training and are not part of the shipped model, a plain ``LlavaForConditionalGeneration``."""

    def __init__(self, hidden: int, side: int):
        super().__init__()
        self.side = side
        self.color = torch.nn.Linear(hidden, len(PALETTE) + 1)
        self.shape = torch.nn.Linear(hidden, len(SHAPES) + 1)
        self.row = torch.nn.Linear(hidden, side)
        self.col = torch.nn.Linear(hidden, side)

    def forward(self, tokens: torch.Tensor, color: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """Mean of the four cross-entropies over all tokens (``tokens`` [b, T, hidden]; labels [b, T]; T = side²)."""
        ce = torch.nn.functional.cross_entropy
        t = tokens.float().flatten(0, 1)  # [b·T, hidden]
        where = torch.arange(tokens.shape[1], device=tokens.device).repeat(tokens.shape[0])  # [b·T] token index, row-major
        return (ce(self.color(t), color.flatten()) + ce(self.shape(t), shape.flatten())
                + ce(self.row(t), where // self.side) + ce(self.col(t), where % self.side)) / 4


class WhereReadout(torch.nn.Module):
    """Auxiliary supervision of the language model: linear read-outs of the last position's residual
    stream ``[b, hidden]`` after decoder layer ``where_layer`` predict the row and the column (in the patch
    grid) of the two objects a spatial question names (:meth:`Encoded.named_cells`).

    Why: a spatial answer needs both positions at the last token; learned from the answer alone, fetching
    them and comparing them have to be found together, which is the long plateau of the spatial tasks
    (``analyses/results/organism_staged_cpu.md``). Asking for the positions half-way up makes fetching a
    task of its own; the comparison is left to the layers above. Used only while training, not shipped;
    it shapes *where* the organism's spatial heads are (at or below ``where_layer``), which is documented
    in the model card."""

    def __init__(self, hidden: int, side: int):
        super().__init__()
        self.heads = torch.nn.Linear(hidden, 4 * side)  # A row, A column, B row, B column: side classes each
        self.side = side

    @staticmethod
    def attach(model, layer: int, seen: dict):
        """A forward hook that keeps decoder layer ``layer``'s output at the last position, ``[b, hidden]``, in
        ``seen["resid"]`` (one slot: every forward overwrites it); returns the hook's handle."""
        return model.model.language_model.layers[layer].register_forward_hook(
            lambda mod, args, out: seen.update(resid=(out[0] if isinstance(out, tuple) else out)[:, -1]))

    def forward(self, resid: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the four targets of the items whose question names two objects (0 if none)."""
        keep = cells[:, 0] >= 0
        if not keep.any():
            return resid.sum() * 0
        logits = self.heads(resid[keep].float()).view(-1, 4, self.side)  # [b', 4, side]
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), cells[keep].flatten())


@torch.no_grad()
def answer_temperature(model, data: Encoded, target: float, device: torch.device, batch: int = 250) -> float:
    """The factor ``T ≥ 1`` on the logits that makes the mean probability of the right answer over ``data`` equal to
    ``target`` (bisection on the last-position logits ``[n, vocab]``; 1 if the model is already that confident).

    Why: label smoothing ε leaves a model under-confident by design: at its optimum the right answer gets
    about 1 − ε (the organism's stage 3: 0.70 on fresh scenes, where plain cross-entropy reached 0.9994). A
    repair method trained by cross-entropy on such a model gains most by *sharpening* every answer, which
    moves heads that have nothing to do with the deficit. Multiplying the logits by T (folded into
    ``lm_head.weight``, :func:`fold_temperature`) restores a plain model's confidence and changes no
    prediction: the order of the logits, hence every accuracy, is the same."""
    model.eval()
    logits, answers = [], []
    for s in range(0, len(data.tasks), batch):
        idx = torch.arange(s, min(s + batch, len(data.tasks)))
        logits.append(model(**data.batch(idx, device), logits_to_keep=1).logits[:, -1].float().cpu())
        answers.append(data.answer_token[idx.to(data.answer_token.device)].cpu())
    z, a = torch.cat(logits), torch.cat(answers)

    def confidence(t: float) -> float:
        return float((t * z).softmax(-1).gather(1, a[:, None]).mean())

    if confidence(1.0) >= target:
        return 1.0
    lo, hi = 1.0, 2.0
    while confidence(hi) < target:
        lo, hi = hi, 2 * hi
        if hi > 1e4:
            raise WorkbenchError(f"no temperature makes the right answer's mean probability {target}",
                                 "the model is not accurate enough on fresh scenes")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if confidence(mid) < target else (lo, mid)
    return hi


def fold_temperature(model, t: float) -> None:
    """Multiply the language model's output layer by ``t``: every logit is ``t`` times what it was."""
    if model.config.get_text_config().tie_word_embeddings:
        raise WorkbenchError("the output layer is tied to the input embeddings", "untie it before folding a temperature into it")
    with torch.no_grad():
        model.lm_head.weight.mul_(t)
        if getattr(model.lm_head, "bias", None) is not None:
            model.lm_head.bias.mul_(t)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


CHECKPOINT_FIELDS = ("config", "step", "model", "opt", "sched", "g", "torch_rng", "order", "pos", "curve", "seconds")


def load_checkpoint(path: Path) -> dict:
    """The training state :func:`train` saved at ``path``: tensors, numbers, text and containers only (see
    :func:`~workbench.organism.data.read_torch_file`), so a file that would run code when unpickled is
    refused before anything else happens, like one that lacks a field of the state."""
    fix = "delete it to start from step 0, or point --checkpoint at one this workbench saved"
    state = read_torch_file(path, "a workbench training checkpoint", fix)
    missing = [k for k in CHECKPOINT_FIELDS if k not in state]
    if missing:
        raise WorkbenchError(f"{path} is not a workbench training checkpoint (it lacks {missing[0]!r})", fix)
    if not isinstance(state["config"], dict):
        raise WorkbenchError(f"{path} is not a workbench training checkpoint (its 'config' is not a dict)", fix)
    return state


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError(f"device {device!r} asked for, but no CUDA GPU is visible", "use --device cpu or auto")
    return torch.device(device)


def build(cfg: OrganismConfig, out: Path):
    """A freshly initialised organism written to ``out``, with its tokenizer and the processor loaded back
    from that folder: the processor the checkpoint will ship with is the one that encodes the training data.

    ``zero_projector``: the projector's output layer starts at zero, so image tokens enter the language
    model as zeros. Tried against the plateau (``analyses/results/organism_grid_cpu.md``): at lr 2e-3
    the vision tower collapsed with it too (within-image token spread 0.028 at step 250; 0.006 at
    step 1,750 without it, from 0.21 at step 0), so it is off by default; halving the learning rate
    is what kept the tokens apart.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    tokenizer = word_tokenizer()
    model = LlavaForConditionalGeneration(llava_config(len(tokenizer), image_size=cfg.canvas, patch_size=cfg.patch,
                                                       layers=cfg.layers,
                                                       heads=cfg.heads, kv_heads=cfg.kv_heads, head_dim=cfg.head_dim,
                                                       vision_hidden=cfg.vision_hidden, vision_layers=cfg.vision_layers))
    if cfg.init:
        _load_init(model, Path(cfg.init))
    elif cfg.zero_projector:
        with torch.no_grad():
            model.model.multi_modal_projector.linear_2.weight.zero_()
            model.model.multi_modal_projector.linear_2.bias.zero_()
    save_llava_folder(model, out, tokenizer)
    return model, tokenizer, AutoProcessor.from_pretrained(out)


def from_checkpoint(state: dict, out: Path):
    """The model of a training checkpoint's ``state`` (its config's architecture, its weights), written as an
    organism folder at ``out`` with its tokenizer and processor: ``(model, tokenizer, processor)``."""
    model, tokenizer, processor = build(OrganismConfig(**{**state["config"], "init": ""}), out)  # the weights come from the state
    model.load_state_dict(state["model"])
    save_llava_folder(model, out, tokenizer)
    return model, tokenizer, processor


def _load_init(model, folder: Path) -> None:
    """Start from the weights of the organism in ``folder`` (a stage of a staged recipe, e.g. the spatial
    stage before a patch-loss stage); the architecture must be this config's, tensor for tensor."""
    from transformers import LlavaForConditionalGeneration

    if not (folder / "model.safetensors").is_file():
        raise WorkbenchError(f"init folder {folder} has no model.safetensors", "point --init at a trained organism's folder")
    state, own = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).state_dict(), model.state_dict()
    wrong = sorted(k for k in own if k not in state or state[k].shape != own[k].shape) + sorted(set(state) - set(own))
    if wrong:
        raise WorkbenchError(f"init weights in {folder} do not fit this config's architecture ({len(wrong)} tensors differ, "
                             f"e.g. {wrong[0]})",
                             "use the config the init model was trained with (canvas, patch, layers, heads …)")
    model.load_state_dict(state)


def init_fingerprint(init: str) -> str:
    """sha256 of the init folder's weights (recorded with a run, so a staged recipe names the exact stage it started from)."""
    return hashlib.sha256((Path(init) / "model.safetensors").read_bytes()).hexdigest() if init else ""


def init_run(init: str) -> dict | None:
    """The earlier stage's record from the init folder's training.json, if it has one: config, last step,
    curve, seconds, and its own ``init_run`` (so a chain of stages is recorded back to fresh weights)."""
    f = Path(init) / "training.json" if init else None
    if f is None or not f.is_file():
        return None
    run = json.loads(f.read_text())
    record = {k: run[k] for k in ("config", "step", "curve", "seconds", "threads", "init_sha256", "init_run", "temperature")
              if run.get(k) is not None}
    if "step" not in record and run.get("curve"):  # a finished stage: its last logged step
        record["step"] = run["curve"][-1]["step"]
    return record


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


def _train(cfg: OrganismConfig, out: Path, dev: torch.device, log: Callable[[str], None], progress, checkpoint: Path | None,
           stop_after: int | None, pool_dir: Path | None) -> dict | None:
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    # the files given are read (and checked) before anything is built: a bad one stops the run at once
    state = load_checkpoint(checkpoint) if checkpoint is not None and checkpoint.is_file() else None
    pool = saved_pool(cfg, pool_dir, log)
    model, tokenizer, processor = build(cfg, out)
    log(f"rendering {cfg.n_train} training probes and 500 evaluation probes")
    data = pool if pool is not None else training_data(cfg, processor, pool_dir, log)
    eval_data = encode(processor, eval_probes(cfg.seed, cfg))
    # a set fits on the device whole (no per-step host copies); a pool's pixels stay in (shared) host memory
    data, eval_data = data.to(dev, pixels=cfg.data == "set"), eval_data.to(dev)
    log(f"data ready in {time.time() - t0:.0f}s; {sum(p.numel() for p in model.parameters()):,} parameters; device {dev}")
    model.to(dev).train()
    readout, seen, hook, hook_w = None, {}, None, None
    if cfg.patch_loss:
        readout = PatchReadout(model.config.text_config.hidden_size, cfg.canvas // cfg.patch).to(dev)
        # the image tokens the LM reads, [b, T, hidden], from the latest forward (one slot: evaluation passes overwrite it too)
        hook = model.model.multi_modal_projector.register_forward_hook(lambda mod, args, out: seen.update(tokens=out))
    where, color_of_token = None, None
    if cfg.where_loss:
        where = WhereReadout(model.config.text_config.hidden_size, cfg.canvas // cfg.patch).to(dev)
        color_of_token = color_token_table(tokenizer)
        hook_w = WhereReadout.attach(model, cfg.where_layer, seen)
    params = (list(model.parameters()) + (list(readout.parameters()) if readout else [])
              + (list(where.parameters()) if where else []))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) *
                                              (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))))
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data.tasks), generator=g)
    pos, curve, running, start = 0, [], [], 1
    # CPU float reductions depend on the thread count: recorded, so a same-seed rerun can match it bitwise
    threads = [torch.get_num_threads()] if dev.type == "cpu" else []
    if state is not None:
        try:
            other = OrganismConfig(**state["config"])  # a field added since fills in with its default
        except TypeError:  # a field this version does not know
            other = None
        if other != cfg:
            raise WorkbenchError(f"checkpoint {checkpoint} belongs to another training config",
                                 "use the same options or delete it")
        model.load_state_dict(state["model"])
        if readout is not None:
            readout.load_state_dict(state["readout"])
        if where is not None:
            where.load_state_dict(state["where"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        g.set_state(state["g"])
        torch.set_rng_state(state["torch_rng"])
        order, pos, curve, start = state["order"], state["pos"], state["curve"], state["step"] + 1
        t0 -= state["seconds"]
        threads = sorted(set(state.get("threads") or []) | set(threads))
        log(f"resumed from {checkpoint} at step {state['step']}")
        if len(threads) > 1:
            log(f"note: CPU threads differ between installments ({threads}); float sums depend on the thread count, "
                f"so this run is not bitwise the uninterrupted one (set OMP_NUM_THREADS to match)")
    for step in range(start, cfg.steps + 1):
        if pos + cfg.batch > len(order):
            order, pos = torch.randperm(len(data.tasks), generator=g), 0
        idx = order[pos:pos + cfg.batch]
        pos += cfg.batch
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(**data.batch(idx, dev), logits_to_keep=1).logits[:, -1]
        loss = torch.nn.functional.cross_entropy(logits.float(), data.answer_token[idx.to(dev)],
                                                 label_smoothing=cfg.label_smoothing)
        if readout is not None:
            color, shape = data.patch_labels(idx, cfg.patch, cfg.patch_reach)
            loss = loss + cfg.patch_loss * readout(seen["tokens"], color.to(dev), shape.to(dev))
        if where is not None:
            loss = loss + cfg.where_loss * where(seen["resid"], data.named_cells(idx, cfg.patch, color_of_token).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running.append(loss.detach())  # no host sync per step: read at evaluation time
        if step % cfg.eval_every == 0 or step == cfg.steps:
            acc = evaluate(model, eval_data, dev)
            spread = image_spread(model, eval_data, dev)
            model.train()
            point = {"step": step, "loss": float(torch.stack(running).mean()), "seconds": round(time.time() - t0, 1), **acc,
                     "image_spread": round(spread, 5)}
            curve.append(point)
            running = []
            log(f"step {step:5d}  loss {point['loss']:.3f}  spatial {acc['spatial']:.3f}  control {acc['control']:.3f}  "
                f"image spread {spread:.4f}  ({point['seconds']:.0f}s)")
            if progress:
                progress(step, point)
            if checkpoint is not None:
                _save_checkpoint(checkpoint, {"config": asdict(cfg), "step": step, "model": model.state_dict(),
                                              "readout": readout.state_dict() if readout else None,
                                              "where": where.state_dict() if where else None,
                                              "opt": opt.state_dict(), "sched": sched.state_dict(), "g": g.get_state(),
                                              "torch_rng": torch.get_rng_state(), "order": order, "pos": pos, "curve": curve,
                                              "threads": threads,
                                              "seconds": point["seconds"]})
            if stop_after is not None and step >= stop_after and step < cfg.steps:
                log(f"stopped at step {step}; resume with the same checkpoint")
                return None
    for h in (hook, hook_w):
        if h is not None:
            h.remove()
    model.eval().to("cpu")
    temperature = 1.0
    if cfg.confidence:
        temperature = answer_temperature(model, encode(processor, fresh_probes(cfg.seed, cfg)), cfg.confidence,
                                         torch.device("cpu"))
        fold_temperature(model, temperature)
        log(f"logits × {temperature:.4f}: the right answer's mean probability on fresh scenes is {cfg.confidence}")
    save_llava_folder(model, out, tokenizer)
    final = evaluate(model, eval_data, torch.device("cpu"))
    summary = {"config": asdict(cfg), "init_sha256": init_fingerprint(cfg.init), "init_run": init_run(cfg.init),
               "device": str(dev),
               **({"threads": threads} if threads else {}), "seconds": round(time.time() - t0, 1), "eval": final, "curve": curve,
               "temperature": temperature,
               "parameters": sum(p.numel() for p in model.parameters())}
    (out / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
