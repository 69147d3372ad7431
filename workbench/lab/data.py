"""Training data for the organism as tensors: encoding, and a large pool rendered in parallel.

Why a module of its own: the organism must see hundreds of thousands to millions of distinct scenes to
learn its control tasks (color, shape, count, existence) instead of memorising them (a small set is learned
by heart and fails on held-out pairs). Rendering and tokenising through the processor costs ~1 ms an item,
so a pool of that size is built differently:

- scenes come from :func:`workbench.probes.generate.train_chunk`, in chunks of :data:`CHUNK`
  items with a random stream each, rendered by worker processes in any order (the result does not
  depend on the number of workers);
- pixels stay raw ``uint8`` ``[n, H, W, 3]`` and are normalised per batch on the device, exactly as
  the processor would;
- text is tokenised once per *distinct* question (a few thousand of them), then left-padded.

:func:`encode_arrays` checks its first items against the processor itself; any difference (a
processor that resizes, crops or tokenises differently) is an error, never a silent drift
between training and serving. A pool is saved as ``pixels.npy`` plus a small ``meta.pt`` and
loaded with the pixels memory-mapped, so several training runs share one copy in memory.

Files written by ``torch.save`` (a pool's ``meta.pt``, a training checkpoint) are read back with
:func:`read_torch_file`: tensors, numbers, text and containers only (``weights_only=True``), since a
full unpickle runs whatever code a file names, and a pool or checkpoint may come from anywhere.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from workbench import metrics
from workbench.errors import WorkbenchError
from workbench.models.prompts import option_token_ids, prompt_text
from workbench.probes.generate import ProbeConfig, train_chunk
from workbench.probes.probeset import ProbeSet
from workbench.probes.scenes import PALETTE, SHAPES, Scene, render

CHUNK = 8192  # items per random stream of a pool
MAX_OBJECTS = 3  # rows of an item's object table: the generator draws 2-3 objects (ProbeConfig.max_objects)
COLOR_IDS = {c: i for i, c in enumerate(PALETTE)}
SHAPE_IDS = {s: i for i, s in enumerate(SHAPES)}


@dataclass
class Encoded:
    """A probe set turned into tensors once: left-padded ids, raw pixels, option ids, answers.

    Pixels stay ``uint8`` ([n, H, W, 3], a quarter of float32's memory) and are normalised per
    batch, on the device, exactly as the processor would."""

    input_ids: torch.Tensor  # [n, seq]
    attention_mask: torch.Tensor  # [n, seq]
    pixels: torch.Tensor  # [n, H, W, 3] uint8
    mean: torch.Tensor  # [3] the processor's normalisation, applied after rescaling by 1/255
    std: torch.Tensor  # [3]
    option_ids: torch.Tensor  # [n, K]
    answer: torch.Tensor  # [n] index into options
    answer_token: torch.Tensor  # [n] vocabulary id of the answer
    tasks: list[str]
    objects: torch.Tensor | None = None  # [n, MAX_OBJECTS, 4] int16: color id, shape id, x, y of each object; -1 rows: none

    def to(self, device: torch.device, pixels: bool = True) -> Encoded:
        """Move to ``device``; ``pixels=False`` keeps the (large) pixels where they are and moves a batch at a time."""
        keys = ("input_ids", "attention_mask", "mean", "std", "answer_token") + (("pixels",) if pixels else ())
        move = {k: getattr(self, k).to(device) for k in keys}
        return Encoded(**{"pixels": self.pixels, **move}, option_ids=self.option_ids, answer=self.answer, tasks=self.tasks,
                       objects=self.objects)

    def patch_labels(self, idx: torch.Tensor, patch: int, reach: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """What each image token of the items ``idx`` shows: (color, shape) class ``[b, tokens]`` each,
        ``1 + id`` for the token whose ``patch``-px square holds an object's center, 0 for the others
        (row-major over the patch grid, the vision tower's token order). Targets of the auxiliary
        patch loss (:func:`workbench.lab.train.train`, ``patch_loss``).

        ``reach`` > 0 also labels every token whose patch *center* lies within ``reach`` px of an object's
        center (in x and in y): an object larger than a patch then labels each token that shows a part of
        it (e.g. 14 px objects on a 16 px grid with 8 px patches, reach 7: the 2 × 2 tokens it covers).
        Where two objects' reaches overlap, the later object's label wins."""
        if self.objects is None:
            raise WorkbenchError("these training items carry no object tables", "rebuild the pool (its format is version 3)")
        side = self.pixels.shape[1] // patch
        obj = self.objects[idx.to(self.objects.device)].long()  # [b, MAX_OBJECTS, 4]
        centre = torch.arange(side) * patch + (patch - 1) / 2  # [side] pixel center of each patch row / column
        near_x = (centre[None, None, :] - obj[..., 2:3]).abs() <= reach  # [b, MAX_OBJECTS, side]
        near_y = (centre[None, None, :] - obj[..., 3:4]).abs() <= reach
        own = torch.zeros(*obj.shape[:2], side, side, dtype=torch.bool)  # [b, MAX_OBJECTS, row, col]
        at = torch.arange(len(obj))[:, None].expand(obj.shape[:2])
        k = torch.arange(obj.shape[1])[None, :].expand(obj.shape[:2])
        own[at, k, obj[..., 3].clamp_min(0) // patch, obj[..., 2].clamp_min(0) // patch] = True  # the center's own token
        own |= near_y[..., :, None] & near_x[..., None, :]
        own &= (obj[..., 0] >= 0)[..., None, None]
        color = torch.zeros(len(obj), side * side, dtype=torch.long)
        shape = torch.zeros_like(color)
        for j in range(obj.shape[1]):  # in table order, so a later object overwrites an earlier one
            m = own[:, j].flatten(1)
            color[m] = (obj[:, j, 0] + 1)[:, None].expand_as(m)[m]
            shape[m] = (obj[:, j, 1] + 1)[:, None].expand_as(m)[m]
        return color, shape

    def named_cells(self, idx: torch.Tensor, patch: int, color_of_token: torch.Tensor) -> torch.Tensor:
        """Where the two objects a spatial question names lie: ``[b, 4]`` long — the row and column (in the
        ``patch`` grid) of the first-named object (A), then of the second (B); rows of -1 for items whose
        question names fewer than two objects (every control task).

        Objects are found by their color word: colors are unique within a scene, and a relation or verify
        question names A's color, then B's ("Is the blue diamond to the right of the yellow triangle?").
        ``color_of_token``: ``[vocab]`` the color id of each vocabulary word, -1 for the others
        (:func:`color_token_table`).
        Targets of the language model's auxiliary read-out (``OrganismConfig.where_loss``)."""
        if self.objects is None:
            raise WorkbenchError("these training items carry no object tables", "rebuild the pool (its format is version 3)")
        ids = self.input_ids[idx.to(self.input_ids.device)].cpu()
        colors = color_of_token[ids]  # [b, seq] color id of each word, -1 elsewhere
        rank = (colors >= 0).long().cumsum(1)
        first = torch.where((rank == 1) & (colors >= 0), colors, -1).max(1).values  # [b]
        second = torch.where((rank == 2) & (colors >= 0), colors, -1).max(1).values
        obj = self.objects[idx.to(self.objects.device)].long()  # [b, MAX_OBJECTS, 4]
        cells, found = [], torch.ones(len(ids), dtype=torch.bool)
        for c in (first, second):
            hit = (obj[..., 0] == c[:, None]) & (c[:, None] >= 0)  # [b, MAX_OBJECTS]
            o = obj[torch.arange(len(ids)), hit.float().argmax(1)]  # [b, 4] the named object (any row where none is)
            cells += [o[:, 3] // patch, o[:, 2] // patch]
            found &= hit.any(1)
        out = torch.stack(cells, 1)
        out[~found] = -1
        return out

    def pixel_values(self, idx: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        raw = self.pixels[idx.to(self.pixels.device)]
        if device is not None:
            raw = raw.to(device, non_blocking=True)
        x = raw.permute(0, 3, 1, 2).float() / 255.0  # [b, 3, H, W]
        return (x - self.mean.to(x.device)[:, None, None]) / self.std.to(x.device)[:, None, None]

    def batch(self, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        idx = idx.to(self.input_ids.device)
        mask = self.attention_mask[idx]
        keep = int(mask.sum(1).max())  # drop columns that are padding in every row of this batch
        return {"input_ids": self.input_ids[idx, -keep:].to(device), "attention_mask": mask[:, -keep:].to(device),
                "pixel_values": self.pixel_values(idx, device)}


def color_token_table(tokenizer) -> torch.Tensor:
    """``[vocab]`` long: the color id (:data:`COLOR_IDS`) of each color word of the word-level tokenizer, -1 for
    every other token — how :meth:`Encoded.named_cells` finds the objects a question names."""
    table = torch.full((len(tokenizer),), -1, dtype=torch.long)
    table[torch.tensor([tokenizer.convert_tokens_to_ids(c) for c in COLOR_IDS])] = torch.tensor(list(COLOR_IDS.values()))
    return table


def object_table(scenes: Sequence[Scene]) -> torch.Tensor:
    """``[n, MAX_OBJECTS, 4]`` int16: (color id, shape id, x, y) per object of each scene, rows of -1 after the last.
    Built in numpy: pool workers are forked, and torch ops in a forked child can hang on the parent's thread pool."""
    table = np.full((len(scenes), MAX_OBJECTS, 4), -1, dtype=np.int16)
    for i, scene in enumerate(scenes):
        for j, o in enumerate(scene.objects):
            table[i, j] = (COLOR_IDS[o.color], SHAPE_IDS[o.shape], o.x, o.y)
    return torch.from_numpy(table)


def encode(processor, probes: ProbeSet, check: int = 32) -> Encoded:
    """Tokenise and rasterise a probe set (see :func:`encode_arrays`)."""
    pixels = np.stack([np.asarray(probes.image(it).convert("RGB")) for it in probes])
    objects = object_table([Scene.from_json(it.scene) for it in probes]) if all(it.scene for it in probes) else None
    return encode_arrays(processor, pixels, [it.question for it in probes], [tuple(it.options) for it in probes],
                         [it.answer_index for it in probes], [it.task for it in probes], check=check, objects=objects)


def encode_arrays(processor, pixels: np.ndarray, questions: Sequence[str], options: Sequence[tuple[str, ...]],
                  answers: Sequence[int], tasks: Sequence[str], check: int = 32, objects: torch.Tensor | None = None) -> Encoded:
    """Encode items given as arrays: pixels ``[n, H, W, 3]`` uint8, a question, options and answer index each.

    Text: the chat prompt with ``<image>`` expanded to the image's token count, tokenised once per
    distinct question and left-padded. The first ``check`` items also go through the processor
    itself, and any difference is an error."""
    tok = processor.tokenizer
    tok.padding_side = "left"
    n = min(check, len(questions))
    ref_prompts = [prompt_text(processor, q) for q in questions[:n]]
    ref = processor(text=ref_prompts, images=[Image.fromarray(p) for p in pixels[:n]], padding="longest", return_tensors="pt")
    n_img = int((ref["input_ids"][0] == tok.convert_tokens_to_ids(processor.image_token)).sum())
    distinct = list(dict.fromkeys(questions))
    prompts = {q: prompt_text(processor, q) for q in distinct}
    ids = [tok(prompts[q].replace(processor.image_token, processor.image_token * n_img))["input_ids"] for q in distinct]
    width = max(len(v) for v in ids)
    table = torch.full((len(distinct), width), tok.pad_token_id, dtype=torch.long)  # [distinct question, seq], left-padded
    for row, seq in enumerate(ids):
        table[row, width - len(seq):] = torch.tensor(seq)
    row_of = {q: i for i, q in enumerate(distinct)}
    which = torch.as_tensor([row_of[q] for q in questions], dtype=torch.long)  # [n] each item's question
    input_ids = table[which]
    mask = (torch.arange(width)[None, :] >= width - torch.tensor([len(v) for v in ids])[:, None]).long()[which]
    pairs = list(dict.fromkeys(zip(questions, options)))  # distinct (question, options)
    k = max(len(o) for o in options)
    opt_table = torch.full((len(pairs), k), -1, dtype=torch.long)
    for row, (q, opts) in enumerate(pairs):
        opt_table[row, : len(opts)] = torch.tensor(option_token_ids(tok, prompts[q], opts))
    pair_of = {pair: i for i, pair in enumerate(pairs)}
    option_ids = opt_table[torch.as_tensor([pair_of[pair] for pair in zip(questions, options)], dtype=torch.long)]
    ip = processor.image_processor
    answer = torch.as_tensor(list(answers), dtype=torch.long)
    data = Encoded(input_ids=input_ids, attention_mask=mask, pixels=torch.from_numpy(np.ascontiguousarray(pixels)),
                   mean=torch.tensor(ip.image_mean, dtype=torch.float32), std=torch.tensor(ip.image_std, dtype=torch.float32),
                   option_ids=option_ids, answer=answer, answer_token=metrics.answer_token(option_ids, answer), tasks=list(tasks),
                   objects=objects)
    _check_against_processor(ref, data, n)
    return data


def _check_against_processor(ref, data: Encoded, n: int) -> None:
    mine = data.batch(torch.arange(n), torch.device("cpu"))
    width = ref["input_ids"].shape[1]
    same_ids = (mine["input_ids"].shape[1] >= width and torch.equal(mine["input_ids"][:, -width:], ref["input_ids"])
                and bool((mine["attention_mask"][:, :-width] == 0).all()))
    same_pixels = mine["pixel_values"].shape == ref["pixel_values"].shape and torch.allclose(
        mine["pixel_values"], ref["pixel_values"].float(), atol=1e-5)
    if not (same_ids and same_pixels):
        raise WorkbenchError("the vectorised encoding disagrees with the model's processor",
                             "train with images of the model's input size and the shipped PIL processor")


# ----------------------------------------------------------------------------- the pool

def _render_chunk(job: tuple[dict, int, int]):
    """Worker: one chunk's pixels, question fields and object tables (module level, so it pickles)."""
    cfg_fields, chunk, n = job
    pairs = train_chunk(ProbeConfig(**cfg_fields), chunk, n)
    pixels = np.stack([np.asarray(render(scene)) for scene, _ in pairs])
    return (pixels, [q["question"] for _, q in pairs], [tuple(q["options"]) for _, q in pairs],
            [list(q["options"]).index(q["answer"]) for _, q in pairs], [q["task"] for _, q in pairs],
            object_table([scene for scene, _ in pairs]).numpy())


def pool_key(seed: int, n: int, scene: dict) -> dict:
    """What a pool's content depends on (besides the processor, which the encoding check covers);
    ``scene``: the scene geometry (canvas, object_size, grid; see ``OrganismConfig.scene``)."""
    return {"seed": seed, "n": n, **scene, "chunk": CHUNK, "version": 3}  # 3: object tables


def render_pool(processor, seed: int, n: int, scene: dict, workers: int = 0,
                log: Callable[[str], None] = print) -> Encoded:
    """n training items in chunks of :data:`CHUNK`, rendered by ``workers`` processes (0: one per CPU);
    ``scene`` gives the scene geometry (ProbeConfig fields: canvas, object_size, grid)."""
    cfg = {"n": CHUNK, "seed": seed, **scene, "test_fraction": 0.0}
    jobs = [(cfg, c, min(CHUNK, n - c * CHUNK)) for c in range(-(-n // CHUNK))]
    workers = workers or mp.cpu_count()
    pixels = np.empty((n, scene["canvas"], scene["canvas"], 3), dtype=np.uint8)
    questions: list[str] = []
    options: list[tuple[str, ...]] = []
    answers: list[int] = []
    tasks: list[str] = []
    objects: list[np.ndarray] = []
    with mp.get_context("fork").Pool(workers) as pool:
        # ordered: same result for any worker count
        for c, (px, q, o, a, t, obj) in enumerate(pool.imap(_render_chunk, jobs, chunksize=1)):
            pixels[c * CHUNK:c * CHUNK + len(px)] = px
            questions += q
            options += o
            answers += a
            tasks += t
            objects.append(obj)
            if (c + 1) % 50 == 0:
                log(f"rendered {min(n, (c + 1) * CHUNK):,} of {n:,}")
    return encode_arrays(processor, pixels, questions, options, answers, tasks, objects=torch.from_numpy(np.concatenate(objects)))


POOL_FIELDS = ("key", "input_ids", "attention_mask", "mean", "std", "option_ids", "answer", "tasks", "objects")


def read_torch_file(path: Path, what: str, fix: str) -> dict:
    """The dict a ``torch.save`` wrote to ``path``, read with ``weights_only=True``: only tensors, numbers,
    text, None and lists/tuples/dicts of them come back, and a file naming anything else (a class, a
    function: what a pickle payload needs to run code) is refused with one line ``{path} is not {what}``.
    ``fix`` says how to get a good file."""
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WorkbenchError(f"{path} is not {what} (it names objects other than tensors, numbers and text, which are never "
                             "unpickled)", fix) from None
    except Exception as e:  # torch raises several types for a damaged or foreign file
        raise WorkbenchError(f"{path} is not {what} ({type(e).__name__})", fix) from None
    if not isinstance(obj, dict):
        raise WorkbenchError(f"{path} is not {what} (it holds a {type(obj).__name__}, not a dict)", fix)
    return obj


def save_pool(data: Encoded, folder: Path, key: dict) -> None:
    """``pixels.npy`` (memory-mappable) and ``meta.pt``; written under temporary names, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "pixels.tmp.npy", data.pixels.numpy())
    torch.save({"key": key, "input_ids": data.input_ids, "attention_mask": data.attention_mask, "mean": data.mean,
                "std": data.std,
                "option_ids": data.option_ids, "answer": data.answer, "tasks": data.tasks, "objects": data.objects},
               folder / "meta.tmp.pt")
    (folder / "pixels.tmp.npy").replace(folder / "pixels.npy")
    (folder / "meta.tmp.pt").replace(folder / "meta.pt")


def load_pool(folder: Path, key: dict) -> Encoded:
    """A saved pool, its pixels memory-mapped (shared between processes); refused if built for another key."""
    if not (folder / "meta.pt").is_file() or not (folder / "pixels.npy").is_file():
        raise WorkbenchError(f"{folder} holds no training pool", "build one with `workbench lab pool --dir DIR`")
    meta = read_torch_file(folder / "meta.pt", "a readable training pool", "rebuild the pool: delete the folder and run "
                           "`workbench lab pool --dir DIR` or train with --data pool --pool DIR")
    missing = [k for k in POOL_FIELDS if k not in meta]
    if missing:
        raise WorkbenchError(f"{folder / 'meta.pt'} is not a readable training pool (it lacks {missing[0]!r})",
                             "rebuild the pool: delete the folder and train with --data pool --pool DIR")
    if meta["key"] != key:
        raise WorkbenchError(f"the pool in {folder} was built for {json.dumps(meta['key'])}, not {json.dumps(key)}",
                             "build a pool for this config or point at the right one")
    with warnings.catch_warnings():  # read-only map: torch warns that writes are undefined; nothing writes to it
        warnings.simplefilter("ignore", UserWarning)
        pixels = torch.from_numpy(np.load(folder / "pixels.npy", mmap_mode="r"))
    option_ids, answer = meta["option_ids"], meta["answer"]
    return Encoded(input_ids=meta["input_ids"], attention_mask=meta["attention_mask"], pixels=pixels, mean=meta["mean"],
                   std=meta["std"], option_ids=option_ids, answer=answer, answer_token=metrics.answer_token(option_ids, answer),
                   tasks=meta["tasks"], objects=meta["objects"])
