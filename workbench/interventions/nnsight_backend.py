"""The nnsight backend: interventions inside one ``model.trace(...)``.

For each decoder layer in execution order, the trace reads the input of ``o_proj`` (the
concatenated head outputs), views it as ``[batch, seq, head, head_dim]``, applies
:func:`~workbench.interventions.core.edit_heads`, and writes it back; then the same for the MLP
output with :func:`~workbench.interventions.core.edit_mlp`. The model's weights are never touched
and nnsight removes its hooks when the trace ends, also when the body raises.

Returns logits at the last position only, ``[batch, vocab]``: every metric is read there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from workbench.interventions.attention import check_backend
from workbench.interventions.backends import hook_layers
from workbench.interventions.core import Intervention, check_left_padded, edit_heads, edit_mlp, prepare, split_heads
from workbench.models.load import VLM


def envoy(root: Any, path: str) -> Any:
    """The nnsight envoy at a dotted module path ("model.language_model.layers.3.self_attn.o_proj")."""
    return functools.reduce(lambda e, part: e[int(part)] if part.isdigit() else getattr(e, part), path.split("."), root)


class NNsightBackend:
    """A :class:`~workbench.interventions.backends.Backend` that edits inside one ``vlm.nn.trace(...)``."""

    name = "nnsight"

    def __init__(self, vlm: VLM):
        self.vlm = vlm

    def last_logits(self, inputs: dict[str, torch.Tensor], interventions: Sequence[Intervention] = (),
                    grad: bool = False) -> torch.Tensor:
        """Logits at the last position ``[batch, vocab]`` with the interventions applied."""
        site, nn = self.vlm.site, self.vlm.nn
        check_backend(interventions, self.name)  # edges live in the attention function, which only the torch backend edits
        heads, mlps = prepare(interventions, site, inputs)
        with torch.set_grad_enabled(grad), nn.trace(**inputs):
            for layer, at_heads, at_mlp in hook_layers(heads, mlps, site.n_layers):
                if at_heads:
                    o_proj = envoy(nn, site.attn_out_path(layer))
                    x = o_proj.input
                    o_proj.input = edit_heads(split_heads(x, site), layer, interventions).reshape(x.shape)
                if at_mlp:
                    mlp = envoy(nn, site.mlp_path(layer))
                    mlp.output = edit_mlp(mlp.output, layer, interventions)
            logits = nn.output.logits[:, -1].save()
        return logits

    def head_outputs(self, inputs: dict[str, torch.Tensor], positions: str = "last") -> torch.Tensor:
        """Clean head outputs: ``[batch, layer, head, head_dim]`` at the last token, or
        ``[batch, seq, layer, head, head_dim]`` for ``positions="all"``."""
        site, nn = self.vlm.site, self.vlm.nn
        check_left_padded(inputs.get("attention_mask"))
        saved = []
        with torch.no_grad(), nn.trace(**inputs):
            for layer in range(site.n_layers):
                z = split_heads(envoy(nn, site.attn_out_path(layer)).input, site)
                saved.append((z[:, -1] if positions == "last" else z).save())
        return torch.stack(saved, dim=-3)


def head_means(vlm: VLM, inputs: dict[str, torch.Tensor], positions: str = "last") -> torch.Tensor:
    """Mean head outputs over a reference batch, ``[layer, head, head_dim]``, for MeanAblation.

    ``positions="last"``: the mean of the last token's head outputs over the batch. ``"all"``: the
    mean over every real (non-padding) token of every row.
    """
    outs = NNsightBackend(vlm).head_outputs(inputs, positions)
    if positions == "last":
        return outs.mean(0)
    mask = inputs.get("attention_mask", torch.ones(outs.shape[:2], device=outs.device)).to(outs.dtype)
    return (outs * mask[:, :, None, None, None]).sum((0, 1)) / mask.sum()
