"""Scale vectors: the few numbers ScAle learns, as a file a deployed model can use.

A :class:`ScaleVector` holds *effective* scales — what multiplies the model's activations — not
the raw parameters: ``attn [layer, head]`` (one factor per query head, applied to the head's slice
of the ``o_proj`` input) and ``mlp [layer]`` (one factor per layer's MLP output), both at the last
token (``positions="last"``, the ScAle reference setting) or at every token. A mode that does not
train a part leaves it at 1 (the identity), so every vector has both parts and applies the same way.

Files: ``NAME.safetensors`` (tensors ``attn`` and ``mlp``, float32) beside ``NAME.json`` (model
name and fingerprint, head order, s_max, positions, mode, the training probe set's hash, metrics).
Reference files. The ScAle reference code (``ft_vlm_spatial.py``) saves, per run folder, the effective
scales ``eff_attn_final.npy`` ``[layers, heads]`` and ``eff_mlp_final.npy`` ``[layers]`` and, after each
epoch N (from 1), ``epoch_scales/eff_attn_epoch{N}.npy`` / ``eff_mlp_epoch{N}.npy``; a part its mode does
not train (mode ``attn``: the MLP; mode ``mlp``: the heads) has no file. It applies them at the last
token only, batch 1. :meth:`ScaleVector.to_npy` writes those files with the same meaning (one file per
trained part; a vector that scales every token is refused unless asked, and then a
``workbench_export{suffix}.json`` beside the arrays says so); :func:`reference_files` finds a run's
final or epoch-N arrays and :meth:`ScaleVector.from_npy` reads them back: the mode is what the files
present say, the positions ``last`` (the reference's) unless that JSON records ``all``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write
from workbench.interventions.core import HeadScale, Intervention, MlpScale
from workbench.names import MODES
from workbench.names import SCALE_FORMAT as FORMAT

VERSION = 1
HEAD_ORDER = "attn[layer, head]: query heads of each decoder layer in o_proj input order (head h = columns h·d … (h+1)·d − 1)"
FINAL_SUFFIXES = ("_final", "")  # the reference's final files, then `workbench scale export`'s default names
EXPORT_META = "workbench_export{suffix}.json"  # written beside an all-positions export, read back on import
_NPY = re.compile(r"eff_(attn|mlp)(.*)\.npy")


@dataclass(frozen=True, eq=False)
class ScaleVector:
    attn: torch.Tensor  # [layer, head] effective scales
    mlp: torch.Tensor  # [layer] effective scales
    model: str  # the model's name or path when trained
    model_fingerprint: str
    positions: str = "last"
    mode: str = "both"
    s_max: float = 10.0
    probes_hash: str = ""
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        attn = torch.as_tensor(self.attn, dtype=torch.float32)
        mlp = torch.as_tensor(self.mlp, dtype=torch.float32)
        if attn.dim() != 2 or mlp.dim() != 1 or mlp.shape[0] != attn.shape[0]:
            raise WorkbenchError(f"a scale vector needs attn [layers, heads] and mlp [layers], got {list(attn.shape)} and "
                                 f"{list(mlp.shape)}", "check that both came from the same model")
        if not (torch.isfinite(attn).all() and torch.isfinite(mlp).all()):
            raise WorkbenchError("the scale vector holds NaN or infinite scales", "retrain it (lower the learning rate)")
        if self.mode not in MODES:
            raise WorkbenchError(f"unknown mode {self.mode!r}", f"use one of: {', '.join(MODES)}")
        object.__setattr__(self, "attn", attn)
        object.__setattr__(self, "mlp", mlp)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.attn.shape)

    def interventions(self) -> list[Intervention]:
        """The vector as interventions for any backend (both parts; an untrained part is all ones)."""
        return [HeadScale(self.attn.clone(), self.positions), MlpScale(self.mlp.clone(), self.positions)]

    def check_model(self, fingerprint: str | None, shape: tuple[int, int], name: str = "this model") -> None:
        """Refuse a vector made for another model (other weights, or other layer × head counts).
        ``fingerprint=None`` checks the shape only."""
        if tuple(shape) != self.shape:
            raise WorkbenchError(f"this scale vector is [{self.shape[0]} layers × {self.shape[1]} heads] but {name} has "
                                 f"{shape[0]} × {shape[1]}", "train a vector on this model, or load the model it was made for")
        if fingerprint is not None and self.model_fingerprint and fingerprint != self.model_fingerprint:
            raise WorkbenchError(f"this scale vector was trained on {self.model!r} (fingerprint {self.model_fingerprint[:12]}…), "
                                 f"not on {name} ({fingerprint[:12]}…)",
                                 "train a vector on this model, or load the model it was made for")

    def moved(self) -> torch.Tensor:
        """|effective scale − 1| per head ``[layer, head]``: how far training moved each head."""
        return (self.attn - 1).abs()

    # ------------------------------------------------------------------ files
    def meta(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("attn", "mlp")}
        return {"format": FORMAT, "version": VERSION, "head_order": HEAD_ORDER, "layers": self.shape[0], "heads": self.shape[1],
                **d}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (.safetensors) and its .json sidecar, each atomically; returns the .safetensors path."""
        from safetensors.torch import save_file

        st, js = vector_files(path)
        st.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(st, lambda tmp: save_file({"attn": self.attn.contiguous(), "mlp": self.mlp.contiguous()}, tmp))
        atomic_write(js, lambda tmp: Path(tmp).write_text(json.dumps(self.meta(), indent=1) + "\n"))
        return st

    @classmethod
    def load(cls, path: str | os.PathLike) -> ScaleVector:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        st, js = vector_files(path)
        for p in (st, js):
            if not p.is_file():
                raise WorkbenchError(f"{p} is missing",
                                     "a scale vector is NAME.safetensors plus NAME.json, as `workbench scale train` writes")
        try:
            tensors = load_file(str(st))
            meta = json.loads(js.read_text())
        except (SafetensorError, OSError, ValueError) as e:
            raise WorkbenchError(f"{st} or its .json is not a readable scale vector ({type(e).__name__}: {e})",
                                 "re-export it with `workbench scale train` or `workbench scale import`") from None
        if meta.get("format") != FORMAT or "attn" not in tensors or "mlp" not in tensors:
            raise WorkbenchError(f"{st} is not a workbench scale vector",
                                 "expected tensors 'attn' and 'mlp' and a .json with format "
                                 f"{FORMAT!r}")
        keep = ("model", "model_fingerprint", "positions", "mode", "s_max", "probes_hash", "metrics", "extra")
        return cls(attn=tensors["attn"], mlp=tensors["mlp"], **{k: meta[k] for k in keep if k in meta})

    # ------------------------------------------------------- reference code files
    def npy_files(self, folder: str | os.PathLike, suffix: str = "") -> list[Path]:
        """The files :meth:`to_npy` writes into ``folder``: ``eff_attn{suffix}.npy`` unless the mode is ``mlp``,
        ``eff_mlp{suffix}.npy`` unless it is ``attn``, and ``workbench_export{suffix}.json`` for an all-positions vector."""
        folder = Path(folder)
        out = [folder / f"eff_{part}{suffix}.npy" for part in ("attn", "mlp") if self.mode in (part, "both")]
        return out + ([folder / EXPORT_META.format(suffix=suffix)] if self.positions != "last" else [])

    def check_reference(self, suffix: str = "", allow_all_positions: bool = False) -> None:
        """Refuse a vector the reference files cannot mean: one that scales every token (unless allowed)."""
        if self.positions != "last" and not allow_all_positions:
            raise WorkbenchError("this vector scales every token (positions=all), but the ScAle reference code applies "
                                 "eff_attn/eff_mlp at the last token only, so its files would mean another intervention",
                                 "export a vector trained with --positions last, or pass --allow-all-positions to write it "
                                 f"anyway with a {EXPORT_META.format(suffix=suffix)} that says so")

    def to_npy(self, folder: str | os.PathLike, suffix: str = "", allow_all_positions: bool = False) -> tuple[Path, ...]:
        """Write the reference code's files, meaning what they mean there; returns the paths written.

        ``eff_attn{suffix}.npy`` ``[layers, heads]`` (float32) for modes ``attn`` and ``both``, ``eff_mlp{suffix}.npy``
        ``[layers]`` for ``mlp`` and ``both``: an untrained part gets no file of ones, as in the reference. The
        reference applies the arrays at the last token, so a ``positions="all"`` vector is refused before anything
        is written, unless ``allow_all_positions``; then ``workbench_export{suffix}.json`` (positions, a warning,
        the model) is written too, and an import of these files reads ``all`` back from it."""
        self.check_reference(suffix, allow_all_positions)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = self.npy_files(folder, suffix)
        for p in paths:
            if p.suffix == ".npy":
                t = self.attn if p.name.startswith("eff_attn") else self.mlp
                atomic_write(p, lambda tmp, t=t: _save_npy(tmp, t.numpy()))
            else:
                meta = {"format": "workbench.scale_export", "positions": self.positions, "mode": self.mode,
                        "warning": f"these scales were trained at every token (positions={self.positions}); the ScAle "
                                   "reference code applies eff_attn/eff_mlp at the last token only, which is another "
                                   "intervention than the one trained",
                        "model": self.model, "model_fingerprint": self.model_fingerprint, "s_max": self.s_max}
                atomic_write(p, lambda tmp, meta=meta: Path(tmp).write_text(json.dumps(meta, indent=1) + "\n"))
        return tuple(paths)

    @classmethod
    def from_npy(cls, attn: str | os.PathLike | None, mlp: str | os.PathLike | None, *, model: str, model_fingerprint: str,
                 shape: tuple[int, int], positions: str | None = None, s_max: float = 10.0) -> ScaleVector:
        """Read the reference code's arrays for a model of ``shape`` (either may be None: that part stays at 1).

        The mode is what is present (both, ``attn`` only, ``mlp`` only). ``positions=None`` reads them from a
        ``workbench_export{suffix}.json`` beside the arrays (an ``--allow-all-positions`` export), else ``last``,
        where the reference applies them."""
        if not attn and not mlp:
            raise WorkbenchError("nothing to import", "pass an eff_attn*.npy and/or an eff_mlp*.npy")
        a = _check_shape(read_npy(attn), shape, attn) if attn else np.ones(shape, dtype=np.float32)
        m = _check_shape(read_npy(mlp), (shape[0],), mlp) if mlp else np.ones(shape[0], dtype=np.float32)
        mode = "both" if attn and mlp else "attn" if attn else "mlp"
        meta = export_meta(attn or mlp)
        if positions is None:
            positions = meta.get("positions", "last")
        extra = {"imported_from": [str(p) for p in (attn, mlp) if p]}
        if meta.get("warning"):
            extra["export_warning"] = meta["warning"]
        return cls(attn=torch.from_numpy(a), mlp=torch.from_numpy(m), model=model, model_fingerprint=model_fingerprint,
                   positions=positions, mode=mode, s_max=s_max, extra=extra)


def export_meta(npy: str | os.PathLike) -> dict:
    """The ``workbench_export{suffix}.json`` beside ``eff_attn{suffix}.npy`` / ``eff_mlp{suffix}.npy``, or ``{}``
    when there is none (reference files). Only ``positions`` and ``warning`` are read from it."""
    p = Path(npy)
    match = _NPY.fullmatch(p.name)
    js = p.with_name(EXPORT_META.format(suffix=match.group(2))) if match else None
    if js is None or not js.is_file():
        return {}
    try:
        meta = json.loads(js.read_text())
    except (OSError, ValueError) as e:
        raise WorkbenchError(f"{js} is not readable JSON ({type(e).__name__})", "delete it (the arrays are then read as "
                             "the reference's, at the last token) or export the vector again") from None
    if not isinstance(meta, dict) or meta.get("positions") not in ("last", "all"):
        raise WorkbenchError(f"{js} does not say positions 'last' or 'all'",
                             "export the vector again with `workbench scale export`")
    return {k: meta[k] for k in ("positions", "warning") if isinstance(meta.get(k), str)}


def reference_files(folder: str | os.PathLike, epoch: int | None = None) -> tuple[Path | None, Path | None]:
    """(attn, mlp) arrays of a reference run folder (either None where that part has no file).

    ``epoch=None``: the final scales, ``eff_attn_final.npy`` / ``eff_mlp_final.npy`` (or ``eff_attn.npy`` /
    ``eff_mlp.npy``, what ``workbench scale export`` writes by default). ``epoch=N``: the scales after epoch N,
    ``epoch_scales/eff_attn_epoch{N}.npy`` / ``eff_mlp_epoch{N}.npy`` (or those names in ``folder`` itself).
    Neither present: one error that lists what the folder holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WorkbenchError(f"{folder} is not a folder",
                             "pass the run folder the ScAle code wrote (it holds eff_attn_final.npy)")
    if epoch is None:
        candidates = [(folder / f"eff_attn{s}.npy", folder / f"eff_mlp{s}.npy") for s in FINAL_SUFFIXES]
    else:
        candidates = [(d / f"eff_attn_epoch{epoch}.npy", d / f"eff_mlp_epoch{epoch}.npy")
                      for d in (folder / "epoch_scales", folder)]
    for a, m in candidates:
        if a.is_file() or m.is_file():
            return (a if a.is_file() else None), (m if m.is_file() else None)
    finals, epochs = available(folder)
    there = (f"final: {', '.join(finals)}" if finals else "no final scales") + \
        (f"; epochs: {', '.join(map(str, epochs))}" if epochs else "; no epoch scales")
    others = sorted(p.name for p in folder.glob("eff_*.npy")
                    if not re.fullmatch(r"eff_(?:attn|mlp)(?:_final|_epoch\d+)?\.npy", p.name))
    if others:
        there += f"; other arrays: {', '.join(others)}"
    if epoch is None:
        raise WorkbenchError(f"{folder} has no eff_attn_final.npy or eff_mlp_final.npy ({there})",
                             "pass --epoch N for an epoch's scales" if epochs else "pass other arrays with --attn / --mlp"
                             if others else "pass the folder the ScAle run saved its scales in")
    raise WorkbenchError(f"{folder} has no eff_attn_epoch{epoch}.npy or eff_mlp_epoch{epoch}.npy ({there})",
                         "pass --epoch with one of those" + (", or leave it out for the final scales" if finals else ""))


def available(folder: str | os.PathLike) -> tuple[list[str], list[int]]:
    """What a run folder holds: the final-scale file names, and the epochs with scales (sorted)."""
    folder = Path(folder)
    finals = [f"eff_{part}{s}.npy" for s in FINAL_SUFFIXES for part in ("attn", "mlp")
              if (folder / f"eff_{part}{s}.npy").is_file()]
    epochs = set()
    for d in (folder / "epoch_scales", folder):
        for p in d.glob("eff_*_epoch*.npy") if d.is_dir() else ():
            got = re.fullmatch(r"eff_(?:attn|mlp)_epoch(\d+)\.npy", p.name)
            if got:
                epochs.add(int(got.group(1)))
    return finals, sorted(epochs)


def vector_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``NAME``, ``NAME.safetensors`` or ``NAME.json`` → (``NAME.safetensors``, ``NAME.json``)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _save_npy(tmp: str, arr: np.ndarray) -> None:
    with open(tmp, "wb") as f:  # np.save on a name would append .npy
        np.save(f, arr.astype(np.float32))


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """A .npy of real numbers (float, int or unsigned int) as float32; needs no model, so callers read it first.

    Never unpickles (``allow_pickle=False``): an object array is refused, not loaded. Strings, booleans and
    complex numbers are refused by name (a cast would fail with a traceback, or silently drop the imaginary part)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        why = ("it holds Python objects, which are never unpickled" if "allow_pickle" in str(e)
               else str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise WorkbenchError(f"{path} is not a readable .npy array ({why})",
                             "pass the eff_attn*.npy / eff_mlp*.npy the ScAle code saved") from None
    if not isinstance(arr, np.ndarray):  # np.load of an .npz archive gives a mapping
        raise WorkbenchError(f"{path} is an .npz archive, not one .npy array",
                             "pass the eff_attn*.npy / eff_mlp*.npy files themselves")
    if arr.dtype.kind not in "fiu":
        raise WorkbenchError(f"{path} holds {arr.dtype} values, not numbers", "save the scales as float32 (or any float) arrays")
    return arr.astype(np.float32)


def _check_shape(arr: np.ndarray, shape: tuple[int, ...], path: str | os.PathLike) -> np.ndarray:
    if tuple(arr.shape) != tuple(shape):
        raise WorkbenchError(f"{path} has shape {list(arr.shape)}, this model needs {list(shape)}",
                             "use the arrays saved for this model (attn [layers, heads], mlp [layers])")
    return arr
