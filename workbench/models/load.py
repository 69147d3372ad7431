"""Load a VLM (local folder or hub id), wrap it for nnsight, resolve its sites, fingerprint it.

:func:`load_vlm` returns a :class:`VLM`: the Hugging Face model, its processor, the checked
:class:`~workbench.models.sites.Site` (where heads and MLPs live, and their counts) and an
nnsight wrapper for interventions. :func:`wrap_vlm` does the same for a model already in memory
(the tests' tiny random configs, a model you built yourself). Both put the model in eval mode and
freeze its weights (``requires_grad=False``): the workbench only ever trains scales and adapters.

Hub ids need the network. Without it (or with ``HF_HUB_OFFLINE=1``) a hub id that is not in the
local cache fails at once with a message saying so — a short connection probe decides, so a
closed network never makes this hang. ``trust_remote_code`` stays off unless asked for.

The **fingerprint** identifies a model by its config and weights: sha256 over the config JSON and,
for every parameter, its name, shape, dtype and 4,096 evenly strided values. It is what every
stored result and exported file carries; sampling keeps it fast on 7B models, and any retraining or
weight surgery changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from workbench.errors import WorkbenchError
from workbench.models.sites import Site, resolve_site

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


@dataclass(eq=False)
class VLM:
    """A loaded vision-language model and everything interventions need to know about it."""

    model: torch.nn.Module  # the transformers model (…ForConditionalGeneration), eval mode
    processor: Any | None  # its processor (None for bare in-memory models)
    site: Site
    nn: Any  # nnsight wrapper (TransformersModel or NNsight) over ``model``
    name: str
    source: str | None = None  # the folder or hub id it was loaded from (None for in-memory models)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model)
        return self._fingerprint


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise WorkbenchError(f"unknown dtype {dtype!r}", f"choose from: {', '.join(DTYPES)}") from None


def wrap_vlm(model: torch.nn.Module, processor: Any | None = None, name: str | None = None) -> VLM:
    """Wrap a model already in memory (checked against the sites table)."""
    from nnsight import NNsight

    site = resolve_site(model)
    model.eval().requires_grad_(False)
    return VLM(model=model, processor=processor, site=site, nn=NNsight(model), name=name or _model_name(model))


def load_vlm(id_or_path: str | os.PathLike, device: str = "cpu", dtype: str | torch.dtype = "float32",
             trust_remote_code: bool = False, attn_implementation: str | None = None) -> VLM:
    """Load an image-text-to-text model and its processor from a local folder or a hub id."""
    from nnsight.modeling.transformers import TransformersModel

    source = str(id_or_path)
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise WorkbenchError(f"{local} has no config.json", "point at a Hugging Face model folder")
        source = str(local)
    elif not local.exists() and source.startswith((".", "/", "~")):
        raise WorkbenchError(f"model folder {source} does not exist",
                             "check the path (the default organism is built with `workbench organism train`)")
    elif local.exists() or not _HUB_ID.match(source):
        raise WorkbenchError(f"model {source!r} is neither a model folder nor a hub id", "pass a folder with config.json or an id like org/name")
    elif not _cached(source):
        _require_hub(source)
    kwargs: dict[str, Any] = dict(task="image-text-to-text", dispatch=True, dtype=resolve_dtype(dtype), device_map=device,
                                  trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        nn = TransformersModel(source, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WorkbenchError(f"could not load {source!r}: {msg}", "check that it is an image-text-to-text model folder or hub id") from e
    model = nn._module
    model.eval().requires_grad_(False)
    return VLM(model=model, processor=nn.processor, site=resolve_site(model), nn=nn, name=_model_name(model, source), source=source)


def _model_name(model: torch.nn.Module, source: str | None = None) -> str:
    if source:
        return Path(source).name if Path(source).is_dir() else source
    return str(getattr(model.config, "name_or_path", "") or type(model).__name__)


def _cached(repo_id: str) -> bool:
    """True when the hub id's config is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an unusual cache layout only means "not cached"
        return False


def _require_hub(repo_id: str, timeout: float = 3.0) -> None:
    """Fail at once, with the fix, when the hub cannot be reached (never hang)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise WorkbenchError(f"model {repo_id!r} is not in the local cache and HF_HUB_OFFLINE is set",
                             "download it where the hub is reachable and pass its folder")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise WorkbenchError(f"model {repo_id!r} needs the Hugging Face hub, which is unreachable ({host}:{port}: "
                             f"{e.strerror or type(e).__name__})",
                             "download the model where the hub is reachable and pass its local folder") from None


def fingerprint(model: torch.nn.Module, samples: int = 4096) -> str:
    """sha256 of the config and a strided sample of every parameter (name, shape, dtype, values)."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        d = config.to_dict()
        for volatile in ("_name_or_path", "transformers_version", "_attn_implementation_autoset", "_commit_hash", "architectures"):
            d.pop(volatile, None)
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in sorted(model.state_dict().items()):
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // samples)
            sample = flat[::step][:samples].to(torch.float64).cpu()
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()
