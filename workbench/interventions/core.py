"""Interventions as small frozen objects, applied by pure functions.

Three interventions cover head ablation, head scaling, ScAle and MLP scaling:

- :class:`HeadScale` multiplies head ``h`` of layer ``l`` by ``alpha[l, h]``. α = 1 is the
  identity, α = 0 is zero ablation, α = 2 doubles the head. ``alpha`` may carry a leading batch
  dimension (``[batch, layer, head]``) so that one forward runs a different variant per row.
- :class:`MeanAblation` replaces a head's output by its mean over a reference probe set
  (``means [layer, head, head_dim]``, from :func:`workbench.interventions.nnsight_backend.head_means`),
  which removes the head's *information* while keeping its average contribution.
- :class:`MlpScale` multiplies each layer's MLP output by ``alpha[l]``.

Each acts on the **last token** (``positions="last"``, the ScAle setting: the answer is read
there) or on **all tokens**. "Last" means index −1 of the sequence, which is every row's real
last token because batches are left-padded (:func:`check_left_padded`).

Head outputs are the input of ``o_proj`` viewed as ``[batch, seq, query_heads, head_dim]``
(see :mod:`workbench.models.sites`). The functions here take and return those tensors and know
nothing of hooks or backends: every backend (nnsight, plain torch hooks, TransformerLens) calls
:func:`edit_heads` and :func:`edit_mlp`, so they cannot disagree about what an intervention means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from workbench.errors import WorkbenchError
from workbench.models.sites import Site

POSITIONS = ("last", "all")


def _check_positions(positions: str) -> None:
    if positions not in POSITIONS:
        raise WorkbenchError(f"unknown positions {positions!r}", "use 'last' (the answer token, as in ScAle) or 'all'")


@dataclass(frozen=True, eq=False)
class HeadScale:
    """``alpha [layer, head]`` (or ``[batch, layer, head]``): one factor per query head.

    With ``positions="all"``, ``alpha`` may also be ``[batch|1, seq, layer, head]``: a factor per
    token, which the packed sweep uses to run one variant per packed query token."""

    alpha: torch.Tensor
    positions: str = "last"

    def __post_init__(self) -> None:
        _check_positions(self.positions)
        ok_dims = (2, 3, 4) if self.positions == "all" else (2, 3)
        if not isinstance(self.alpha, torch.Tensor) or self.alpha.dim() not in ok_dims:
            shape = list(self.alpha.shape) if isinstance(self.alpha, torch.Tensor) else type(self.alpha).__name__
            raise WorkbenchError(f"HeadScale alpha must be a tensor [layer, head] or [batch, layer, head], got {shape}",
                                 "build it with HeadScale.at(site, {(layer, head): alpha})")

    @classmethod
    def identity(cls, site: Site, positions: str = "last") -> HeadScale:
        return cls(torch.ones(site.shape), positions)

    @classmethod
    def at(cls, site: Site, heads: Mapping[tuple[int, int], float] | Iterable[tuple[int, int]], alpha: float = 0.0,
           positions: str = "last") -> HeadScale:
        """α at the given heads and 1 elsewhere. ``heads`` is ``{(layer, head): α}`` or a list of
        ``(layer, head)`` that all get ``alpha`` (default 0: ablation)."""
        items = heads.items() if isinstance(heads, Mapping) else ((h, alpha) for h in heads)
        a = torch.ones(site.shape)
        for (layer, head), value in items:
            site.check_head(int(layer), int(head))
            a[int(layer), int(head)] = float(value)
        return cls(a, positions)

    def check(self, site: Site, batch: int | None = None) -> None:
        if tuple(self.alpha.shape[-2:]) != site.shape:
            raise WorkbenchError(f"HeadScale alpha has shape {list(self.alpha.shape)}, but the model has {site.n_layers} layers "
                                 f"× {site.n_heads} query heads", f"pass alpha of shape [{site.n_layers}, {site.n_heads}] "
                                 f"(or [batch, {site.n_layers}, {site.n_heads}])")
        if self.alpha.dim() >= 3 and batch is not None and self.alpha.shape[0] not in (1, batch):
            raise WorkbenchError(f"HeadScale alpha has {self.alpha.shape[0]} variants for a batch of {batch}",
                                 "give one row of alpha per batch row, or a single [layer, head] alpha")


@dataclass(frozen=True, eq=False)
class MeanAblation:
    """Replace the output of ``heads`` by ``means[layer, head]`` (a ``[layer, head, head_dim]`` tensor)."""

    heads: tuple[tuple[int, int], ...]
    means: torch.Tensor
    positions: str = "last"

    def __post_init__(self) -> None:
        _check_positions(self.positions)
        object.__setattr__(self, "heads", tuple((int(layer), int(head)) for layer, head in self.heads))

    def check(self, site: Site, batch: int | None = None) -> None:
        for layer, head in self.heads:
            site.check_head(layer, head)
        want = (site.n_layers, site.n_heads, site.head_dim)
        if tuple(self.means.shape) != want:
            raise WorkbenchError(f"MeanAblation means have shape {list(self.means.shape)}, the model needs {list(want)}",
                                 "compute them with head_means() on this model")


@dataclass(frozen=True, eq=False)
class MlpScale:
    """``alpha [layer]`` (or ``[batch, layer]``; with ``positions="all"`` also ``[batch|1, seq, layer]``):
    one factor per layer's MLP output."""

    alpha: torch.Tensor
    positions: str = "last"

    def __post_init__(self) -> None:
        _check_positions(self.positions)
        ok_dims = (1, 2, 3) if self.positions == "all" else (1, 2)
        if not isinstance(self.alpha, torch.Tensor) or self.alpha.dim() not in ok_dims:
            raise WorkbenchError("MlpScale alpha must be a tensor [layer] or [batch, layer]", "pass one factor per layer")

    @classmethod
    def at(cls, site: Site, layers: Mapping[int, float], positions: str = "last") -> MlpScale:
        a = torch.ones(site.n_layers)
        for layer, value in layers.items():
            site.check_layer(int(layer))
            a[int(layer)] = float(value)
        return cls(a, positions)

    def check(self, site: Site, batch: int | None = None) -> None:
        if self.alpha.shape[-1] != site.n_layers:
            raise WorkbenchError(f"MlpScale alpha has shape {list(self.alpha.shape)}, the model has {site.n_layers} layers",
                                 f"pass alpha of shape [{site.n_layers}] (or [batch, {site.n_layers}])")
        if self.alpha.dim() >= 2 and batch is not None and self.alpha.shape[0] not in (1, batch):
            raise WorkbenchError(f"MlpScale alpha has {self.alpha.shape[0]} variants for a batch of {batch}",
                                 "give one row of alpha per batch row")


Intervention = HeadScale | MeanAblation | MlpScale


def validate(interventions: Sequence[Intervention], site: Site, batch: int | None = None) -> None:
    for iv in interventions:
        if not isinstance(iv, (HeadScale, MeanAblation, MlpScale)):
            raise WorkbenchError(f"{type(iv).__name__} is not an intervention", "use HeadScale, MeanAblation or MlpScale")
        iv.check(site, batch)


def head_layers(interventions: Sequence[Intervention]) -> list[int] | None:
    """Layers whose ``o_proj`` input must be edited; ``None`` means every layer."""
    layers: set[int] = set()
    for iv in interventions:
        if isinstance(iv, HeadScale):
            return None  # a HeadScale covers every layer (α = 1 included: the hook runs, and must be exact)
        if isinstance(iv, MeanAblation):
            layers |= {layer for layer, _ in iv.heads}
    return sorted(layers)


def mlp_layers(interventions: Sequence[Intervention]) -> list[int] | None:
    return None if any(isinstance(iv, MlpScale) for iv in interventions) else []


def prepare(interventions: Sequence[Intervention], site: Site,
            inputs: dict[str, torch.Tensor]) -> tuple[list[int] | None, list[int] | None]:
    """What every backend does first: validate against the model and the batch, require left
    padding, refuse layers that will not run on this batch (:meth:`Site.check_inputs`), and return
    the layers to hook (heads, MLPs; ``None`` = every layer)."""
    validate(interventions, site, inputs["input_ids"].shape[0])
    check_left_padded(inputs.get("attention_mask"))
    heads, mlps = head_layers(interventions), mlp_layers(interventions)
    if heads or mlps or heads is None or mlps is None:
        site.check_inputs(inputs, None if heads is None or mlps is None else sorted({*heads, *mlps}))
    return heads, mlps


def _at_positions(x: torch.Tensor, positions: str, fn) -> torch.Tensor:
    """Apply ``fn`` to the last token (dim 1 index −1) or to every token of ``x``."""
    if positions == "all":
        return fn(x)
    return torch.cat([x[:, :-1], fn(x[:, -1:])], dim=1)


def edit_heads(z: torch.Tensor, layer: int, interventions: Sequence[Intervention]) -> torch.Tensor:
    """Head outputs ``z [batch, seq, head, head_dim]`` of one layer → edited copy (pure)."""
    for iv in interventions:
        if isinstance(iv, HeadScale):
            a = iv.alpha[..., layer, :].to(z.dtype).to(z.device)  # [head], [batch, head] or [batch, seq, head]
            a = a.reshape(a.shape[0], a.shape[1], a.shape[2], 1) if a.dim() == 3 else a.reshape(-1, 1, a.shape[-1], 1)
            z = _at_positions(z, iv.positions, lambda t, a=a: t * a)
        elif isinstance(iv, MeanAblation):
            heads = [h for layer_, h in iv.heads if layer_ == layer]
            if heads:
                idx = torch.tensor(heads, device=z.device)
                mean = iv.means[layer, idx].to(z.dtype).to(z.device)  # [k, head_dim]

                def replace(t: torch.Tensor, idx=idx, mean=mean) -> torch.Tensor:
                    t = t.clone()
                    t[:, :, idx] = mean
                    return t

                z = _at_positions(z, iv.positions, replace)
    return z


def edit_mlp(y: torch.Tensor, layer: int, interventions: Sequence[Intervention]) -> torch.Tensor:
    """MLP output ``y [batch, seq, hidden]`` of one layer → edited copy (pure)."""
    for iv in interventions:
        if isinstance(iv, MlpScale):
            a = iv.alpha[..., layer].to(y.dtype).to(y.device)  # [], [batch] or [batch, seq]
            a = a.reshape(a.shape[0], a.shape[1], 1) if a.dim() == 2 else a.reshape(-1, 1, 1)
            y = _at_positions(y, iv.positions, lambda t, a=a: t * a)
    return y


def split_heads(x: torch.Tensor, site: Site) -> torch.Tensor:
    """``o_proj`` input ``[batch, seq, head·head_dim]`` → ``[batch, seq, head, head_dim]``."""
    return x.view(*x.shape[:-1], site.n_heads, site.head_dim)


def check_left_padded(attention_mask: torch.Tensor | None) -> None:
    """Last-token interventions read index −1: every row's last token must be real."""
    if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask[:, -1].all()):
        raise WorkbenchError("the batch is right-padded, so index -1 is padding for some rows",
                             "pad on the left (tokenizer.padding_side = 'left'); build_batch() does this")
