"""Apply a scale vector to a deployed transformers model: plain torch hooks, no nnsight.

    handle = apply_scales(model, vector)   # hooks on every o_proj (pre) and mlp (post)
    model.generate(**inputs)               # scaled: each decoding step's last token is the new one
    handle.remove()                        # the model is exactly as before

The hooks call the same pure :func:`~workbench.interventions.core.edit_heads` /
:func:`~workbench.interventions.core.edit_mlp` as every backend, so the logits equal the nnsight
forward with ``vector.interventions()``. The vector is checked against the model first (layer and
head counts, and the weights' fingerprint unless ``check_fingerprint=False``).
"""

from __future__ import annotations

import torch

from workbench.interventions.torch_hooks import register
from workbench.models.load import fingerprint
from workbench.models.sites import resolve_site
from workbench.scale.vector import ScaleVector


class ScaleHandle:
    """The hooks of one applied vector; ``remove()`` (or leaving a ``with`` block) takes them off."""

    def __init__(self, handles: list):
        self._handles = handles

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> ScaleHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def apply_scales(model: torch.nn.Module, vector: ScaleVector, check_fingerprint: bool = True) -> ScaleHandle:
    """Hook ``vector`` into ``model`` (a transformers VLM of a supported family) and return the handle."""
    site = resolve_site(model)
    vector.check_model(fingerprint(model) if check_fingerprint else None, site.shape,
                       getattr(model.config, "_name_or_path", None) or type(model).__name__)
    return ScaleHandle(register(model, site, vector.interventions()))
