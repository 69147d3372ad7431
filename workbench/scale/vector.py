"""Scale vectors: the few numbers ScAle learns, as a file a deployed model can use.

A :class:`ScaleVector` holds *effective* scales — what multiplies the model's activations — not
the raw parameters: ``attn [layer, head]`` (one factor per query head, applied to the head's slice
of the ``o_proj`` input) and ``mlp [layer]`` (one factor per layer's MLP output), both at the last
token (``positions="last"``, the ScAle reference setting) or at every token. A mode that does not
train a part leaves it at 1 (the identity), so every vector has both parts and applies the same way.

Files: ``NAME.safetensors`` (tensors ``attn`` and ``mlp``, float32) beside ``NAME.json`` (model
name and fingerprint, head order, s_max, positions, mode, the training probe set's hash, metrics).
The ScAle reference code saves ``eff_attn*.npy`` ``[layers, heads]`` and ``eff_mlp*.npy`` ``[layers]``;
:meth:`ScaleVector.from_npy` and :meth:`ScaleVector.to_npy` read and write those.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write
from workbench.interventions.core import HeadScale, Intervention, MlpScale

FORMAT = "workbench.scale_vector"
VERSION = 1
HEAD_ORDER = "attn[layer, head]: query heads of each decoder layer in o_proj input order (head h = columns h·d … (h+1)·d − 1)"
MODES = ("attn", "mlp", "both")


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
                                 f"not on {name} ({fingerprint[:12]}…)", "train a vector on this model, or load the model it was made for")

    def moved(self) -> torch.Tensor:
        """|effective scale − 1| per head ``[layer, head]``: how far training moved each head."""
        return (self.attn - 1).abs()

    # ------------------------------------------------------------------ files
    def meta(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("attn", "mlp")}
        return {"format": FORMAT, "version": VERSION, "head_order": HEAD_ORDER, "layers": self.shape[0], "heads": self.shape[1], **d}

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
                raise WorkbenchError(f"{p} is missing", "a scale vector is NAME.safetensors plus NAME.json, as `workbench scale train` writes")
        try:
            tensors = load_file(str(st))
            meta = json.loads(js.read_text())
        except (SafetensorError, OSError, ValueError) as e:
            raise WorkbenchError(f"{st} or its .json is not a readable scale vector ({type(e).__name__}: {e})",
                                 "re-export it with `workbench scale train` or `workbench scale import`") from None
        if meta.get("format") != FORMAT or "attn" not in tensors or "mlp" not in tensors:
            raise WorkbenchError(f"{st} is not a workbench scale vector", "expected tensors 'attn' and 'mlp' and a .json with format "
                                 f"{FORMAT!r}")
        keep = ("model", "model_fingerprint", "positions", "mode", "s_max", "probes_hash", "metrics", "extra")
        return cls(attn=tensors["attn"], mlp=tensors["mlp"], **{k: meta[k] for k in keep if k in meta})

    # ------------------------------------------------------- reference code files
    def to_npy(self, folder: str | os.PathLike, suffix: str = "") -> tuple[Path, Path]:
        """Write ``eff_attn{suffix}.npy`` ``[layers, heads]`` and ``eff_mlp{suffix}.npy`` ``[layers]``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = (folder / f"eff_attn{suffix}.npy", folder / f"eff_mlp{suffix}.npy")
        for p, t in zip(out, (self.attn, self.mlp)):
            atomic_write(p, lambda tmp, t=t: _save_npy(tmp, t.numpy()))
        return out

    @classmethod
    def from_npy(cls, attn: str | os.PathLike | None, mlp: str | os.PathLike | None, *, model: str, model_fingerprint: str,
                 shape: tuple[int, int], positions: str = "last", s_max: float = 10.0) -> ScaleVector:
        """Read the reference code's arrays (either may be None: that part stays at 1) for a model of ``shape``."""
        a = _check_shape(read_npy(attn), shape, attn) if attn else np.ones(shape, dtype=np.float32)
        m = _check_shape(read_npy(mlp), (shape[0],), mlp) if mlp else np.ones(shape[0], dtype=np.float32)
        mode = "both" if attn and mlp else "attn" if attn else "mlp"
        return cls(attn=torch.from_numpy(a), mlp=torch.from_numpy(m), model=model, model_fingerprint=model_fingerprint,
                   positions=positions, mode=mode, s_max=s_max, extra={"imported_from": [str(p) for p in (attn, mlp) if p]})


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
        why = "it holds Python objects, which are never unpickled" if "allow_pickle" in str(e) else str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WorkbenchError(f"{path} is not a readable .npy array ({why})", "pass the eff_attn*.npy / eff_mlp*.npy the ScAle code saved") from None
    if not isinstance(arr, np.ndarray):  # np.load of an .npz archive gives a mapping
        raise WorkbenchError(f"{path} is an .npz archive, not one .npy array", "pass the eff_attn*.npy / eff_mlp*.npy files themselves")
    if arr.dtype.kind not in "fiu":
        raise WorkbenchError(f"{path} holds {arr.dtype} values, not numbers", "save the scales as float32 (or any float) arrays")
    return arr.astype(np.float32)


def _check_shape(arr: np.ndarray, shape: tuple[int, ...], path: str | os.PathLike) -> np.ndarray:
    if tuple(arr.shape) != tuple(shape):
        raise WorkbenchError(f"{path} has shape {list(arr.shape)}, this model needs {list(shape)}",
                             "use the arrays saved for this model (attn [layers, heads], mlp [layers])")
    return arr
