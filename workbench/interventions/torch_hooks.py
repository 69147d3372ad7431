"""Plain torch hooks: the same interventions without nnsight, for deployment and as a reference.

``with hooked(vlm.model, vlm.site, [HeadScale(...)]): model(**inputs)`` registers a
``forward_pre_hook`` on every needed ``o_proj`` and a ``forward_hook`` on every needed ``mlp``,
and removes all of them on exit, also when the body raises. Nothing is copied and no weight
changes. During ``generate()`` each decoding step's last token is the newly generated one, which
is what the ScAle reference code scales.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from workbench.interventions.core import (
    Intervention,
    edit_heads,
    edit_mlp,
    head_layers,
    mlp_layers,
    prepare,
    split_heads,
    validate,
)
from workbench.models.load import VLM
from workbench.models.sites import Site


def register(model: torch.nn.Module, site: Site, interventions: Sequence[Intervention]) -> list:
    """Register the interventions as plain hooks and return their handles (``h.remove()`` undoes each).
    Prefer :func:`hooked`, which always removes them; this is for hooks that outlive a block
    (:func:`workbench.scale.apply.apply_scales`)."""
    validate(interventions, site)
    heads, mlps = head_layers(interventions), mlp_layers(interventions)
    handles = []
    try:
        for layer in range(site.n_layers):
            if heads is None or layer in heads:
                def pre(module, args, layer=layer):
                    x = args[0]
                    return (edit_heads(split_heads(x, site), layer, interventions).reshape(x.shape), *args[1:])

                handles.append(site.attn_out(model, layer).register_forward_pre_hook(pre))
            if mlps is None or layer in mlps:
                def post(module, args, output, layer=layer):
                    return edit_mlp(output, layer, interventions)

                handles.append(site.mlp(model, layer).register_forward_hook(post))
    except BaseException:
        for h in handles:
            h.remove()
        raise
    return handles


@contextmanager
def hooked(model: torch.nn.Module, site: Site, interventions: Sequence[Intervention]) -> Iterator[list]:
    """Register the interventions as plain hooks for the duration of the block; yields the handles."""
    handles = register(model, site, interventions)
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


class TorchHooksBackend:
    name = "torch"

    def __init__(self, vlm: VLM):
        self.vlm = vlm

    def last_logits(self, inputs: dict[str, torch.Tensor], interventions: Sequence[Intervention] = (),
                    grad: bool = False) -> torch.Tensor:
        prepare(interventions, self.vlm.site, inputs)
        with torch.set_grad_enabled(grad), hooked(self.vlm.model, self.vlm.site, interventions):
            return self.vlm.model(**inputs).logits[:, -1]
