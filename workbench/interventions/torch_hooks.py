"""Plain torch hooks: the same interventions without nnsight, for deployment and as a reference.

``with hooked(vlm.model, vlm.site, [HeadScale(...)]): model(**inputs)`` registers a
``forward_pre_hook`` on every needed ``o_proj`` and a ``forward_hook`` on every needed ``mlp``,
and removes all of them on exit, also when the body raises. Nothing is copied and no weight
changes. During ``generate()`` each decoding step's last token is the newly generated one, which
is what the ScAle reference code scales.

:func:`record_sites` is the other direction: one plain forward that keeps the site outputs (each head's
slice of the ``o_proj`` input, each MLP's output) at the last token or at every position, the
``source`` of a :class:`~workbench.interventions.core.HeadPatch` / :class:`~workbench.interventions.core.MlpPatch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from workbench.interventions.backends import hook_layers
from workbench.interventions.core import (
    Intervention,
    _check_positions,
    check_left_padded,
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
        for layer, at_heads, at_mlp in hook_layers(heads, mlps, site.n_layers):
            if at_heads:
                def pre(module, args, layer=layer):
                    x = args[0]
                    return (edit_heads(split_heads(x, site), layer, interventions).reshape(x.shape), *args[1:])

                handles.append(site.attn_out(model, layer).register_forward_pre_hook(pre))
            if at_mlp:
                def post(module, args, output, layer=layer):
                    return edit_mlp(output, layer, interventions)

                handles.append(site.mlp(model, layer).register_forward_hook(post))
        from workbench.interventions.attention import register_edges  # EdgeScale / ImageTemperature: inside the attention

        handles.extend(register_edges(model, site, interventions))
    except BaseException:
        for h in handles:
            h.remove()
        raise
    return handles


class HookSet:
    """Hooks a context manager registers on entry (into ``self.handles``) and removes on exit; a subclass whose
    ``__enter__`` fails part-way calls ``self.__exit__()`` before re-raising, so no hook outlives it."""

    def __init__(self) -> None:
        self.handles: list = []

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


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


@dataclass(frozen=True, eq=False)
class SiteOutputs:
    """What one plain forward left at the sites (:func:`record_sites`).

    ``logits [batch, vocab]`` (float32) are the run's last-position logits. ``heads`` is ``[batch, layer, head,
    head_dim]`` at the last token or ``[batch, seq, layer, head, head_dim]`` at every position (``positions="all"``);
    ``mlp`` is ``[batch, layer, hidden]`` or ``[batch, seq, layer, hidden]``. Either is None when not asked for.
    Layers not recorded (outside ``layers``, or a layer that did not run on this batch, such as Mllama's
    cross-attention layers without an image) hold zeros: patching them is refused anyway (:meth:`Site.check_inputs`)."""

    logits: torch.Tensor
    heads: torch.Tensor | None
    mlp: torch.Tensor | None
    positions: str


@torch.no_grad()
def record_sites(vlm: VLM, inputs: dict[str, torch.Tensor], positions: str = "last", heads: bool = True, mlp: bool = True,
                 layers: Iterable[int] | None = None) -> SiteOutputs:
    """Run the model once on ``inputs`` (no intervention) and keep its site outputs (see :class:`SiteOutputs`).

    ``layers`` limits what is kept (default: every layer), so a sweep chunk of a few layers of a large model
    caches only those. The last token is index −1 (``inputs`` must be left-padded)."""
    _check_positions(positions)
    check_left_padded(inputs.get("attention_mask"))
    site, model = vlm.site, vlm.model
    keep = sorted(set(range(site.n_layers) if layers is None else (int(x) for x in layers)))
    for layer in keep:
        site.check_layer(layer)
    got_heads: dict[int, torch.Tensor] = {}
    got_mlp: dict[int, torch.Tensor] = {}

    def take(x: torch.Tensor) -> torch.Tensor:
        return x[:, -1].detach().clone() if positions == "last" else x.detach()

    handles = []
    try:
        for layer in keep:
            if heads:
                def pre(module, args, layer=layer):
                    got_heads[layer] = take(split_heads(args[0], site))

                handles.append(site.attn_out(model, layer).register_forward_pre_hook(pre))
            if mlp:
                def post(module, args, output, layer=layer):
                    got_mlp[layer] = take(output)

                handles.append(site.mlp(model, layer).register_forward_hook(post))
        logits = model(**inputs).logits[:, -1].float()
    finally:
        for h in handles:
            h.remove()

    def stack(got: dict[int, torch.Tensor]) -> torch.Tensor:  # {layer: [batch, (seq,) …]} → [batch, (seq,) layer, …]
        axis = 1 if positions == "last" else 2
        some = next(iter(got.values()))
        out = some.new_zeros(*some.shape[:axis], site.n_layers, *some.shape[axis:])
        for layer, value in got.items():
            out.select(axis, layer).copy_(value)
        return out

    return SiteOutputs(logits=logits, heads=stack(got_heads) if heads and got_heads else None,
                       mlp=stack(got_mlp) if mlp and got_mlp else None, positions=positions)
