"""Interventions as small frozen objects, applied by pure functions.

Five interventions cover head ablation, head scaling, ScAle, MLP scaling and activation patching:

- :class:`HeadScale` multiplies head ``h`` of layer ``l`` by ``alpha[l, h]``. α = 1 is the
  identity, α = 0 is zero ablation, α = 2 doubles the head. ``alpha`` may carry a leading batch
  dimension (``[batch, layer, head]``) so that one forward runs a different variant per row.
- :class:`MeanAblation` replaces a head's output by its mean over a reference probe set
  (``means [layer, head, head_dim]``, from :func:`workbench.interventions.nnsight_backend.head_means`),
  which removes the head's *information* while keeping its average contribution.
- :class:`MlpScale` multiplies each layer's MLP output by ``alpha[l]``.
- :class:`HeadPatch` and :class:`MlpPatch` *replace* a site's output by the same site's output in
  another run of the model (activation patching, Vig et al. 2020, Meng et al. 2022): ``source`` holds
  the other run's outputs (recorded by :func:`workbench.interventions.torch_hooks.record_sites`) and a
  0/1 ``mask`` says which sites are patched, ``z = where(mask, source, z)``. Patching a site with the
  run's own output is the identity, and patching with zeros is exactly α = 0 ablation.

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
from workbench.interventions.attention import EdgeScale, ImageTemperature
from workbench.models.sites import Site
from workbench.names import POSITIONS  # noqa: F401  (re-exported: one list of positions)
from workbench.names import check_positions as _check_positions  # one rule, one message


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


def _check_mask(name: str, mask, positions: str, site_dims: int) -> None:
    """A patch mask: a bool tensor, or a float one holding only 0 and 1, of ``site_dims`` site axes plus 0 or 1 leading
    (batch) axes, or 2 (batch, seq) with ``positions="all"``."""
    ok_dims = tuple(site_dims + k for k in ((0, 1, 2) if positions == "all" else (0, 1)))
    if not isinstance(mask, torch.Tensor) or mask.dim() not in ok_dims:
        shape = list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise WorkbenchError(f"{name} mask must be a tensor of {ok_dims[0]} to {ok_dims[-1]} dimensions, got {shape}",
                             f"build it with {name}.at(site, source, ...)")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise WorkbenchError(f"{name} mask holds values other than 0 and 1 (a patch replaces a site or leaves it alone)",
                             "pass a boolean mask")


def _check_source(name: str, source, positions: str, site_dims: int, what: str) -> None:
    want = 1 + (positions == "all") + site_dims + 1  # batch, (seq,) site axes, features
    if not isinstance(source, torch.Tensor) or source.dim() != want:
        shape = list(source.shape) if isinstance(source, torch.Tensor) else type(source).__name__
        raise WorkbenchError(f"{name} source with positions={positions!r} must be {what}, got {shape}",
                             "record it with workbench.interventions.torch_hooks.record_sites(..., positions=...)")


@dataclass(frozen=True, eq=False)
class HeadPatch:
    """Replace the output of the heads ``mask`` selects by ``source``, the same heads' outputs in another run.

    ``positions="last"``: ``source [batch, layer, head, head_dim]`` (the other run's last token), ``mask
    [layer, head]`` or ``[batch, layer, head]``. ``positions="all"``: ``source [batch, seq, layer, head,
    head_dim]`` (position i into position i: the two prompts must align token by token; a seq axis of 1 is
    broadcast over the positions), ``mask [layer, head]``, ``[batch, layer, head]`` or ``[batch|1, seq, layer,
    head]`` — a mask per token, which the packed sweep uses to patch one head per packed copy. ``mask`` is bool
    (or 0/1 float): ``z = where(mask, source, z)``, so the patched values are the source's bit for bit."""

    source: torch.Tensor
    mask: torch.Tensor
    positions: str = "last"

    def __post_init__(self) -> None:
        _check_positions(self.positions)
        _check_source("HeadPatch", self.source, self.positions, 2,
                      "[batch, layer, head, head_dim]" if self.positions == "last" else "[batch, seq, layer, head, head_dim]")
        _check_mask("HeadPatch", self.mask, self.positions, 2)

    @classmethod
    def at(cls, site: Site, source: torch.Tensor, heads: Iterable[tuple[int, int]], positions: str = "last") -> HeadPatch:
        """Patch the listed ``(layer, head)`` from ``source``, leave every other head alone."""
        mask = torch.zeros(site.shape, dtype=torch.bool)
        for layer, head in heads:
            site.check_head(int(layer), int(head))
            mask[int(layer), int(head)] = True
        return cls(source, mask, positions)

    def layers(self) -> list[int]:
        """Layers with at least one patched head (only their ``o_proj`` is hooked)."""
        return torch.nonzero(self.mask.reshape(-1, *self.mask.shape[-2:]).bool().any(0).any(-1)).flatten().tolist()

    def check(self, site: Site, batch: int | None = None) -> None:
        want = (site.n_layers, site.n_heads)
        if tuple(self.mask.shape[-2:]) != want or tuple(self.source.shape[-3:-1]) != want:
            raise WorkbenchError(f"HeadPatch mask {list(self.mask.shape)} / source {list(self.source.shape)} do not fit the "
                                 f"model's {site.n_layers} layers × {site.n_heads} query heads",
                                 f"pass a mask [..., {site.n_layers}, {site.n_heads}] and a source recorded on this model")
        if self.source.shape[-1] != site.head_dim:
            raise WorkbenchError(f"HeadPatch source has head_dim {self.source.shape[-1]}, the model {site.head_dim}",
                                 "record the source on this model (record_sites)")
        _check_batch("HeadPatch", self, batch, 2)


@dataclass(frozen=True, eq=False)
class MlpPatch:
    """Replace the MLP output of the layers ``mask`` selects by ``source``, the same layers' outputs in another run.

    ``positions="last"``: ``source [batch, layer, hidden]``, ``mask [layer]`` or ``[batch, layer]``;
    ``positions="all"``: ``source [batch, seq, layer, hidden]`` (seq 1 broadcasts), ``mask [layer]``,
    ``[batch, layer]`` or ``[batch|1, seq, layer]``. ``y = where(mask, source, y)``."""

    source: torch.Tensor
    mask: torch.Tensor
    positions: str = "last"

    def __post_init__(self) -> None:
        _check_positions(self.positions)
        _check_source("MlpPatch", self.source, self.positions, 1,
                      "[batch, layer, hidden]" if self.positions == "last" else "[batch, seq, layer, hidden]")
        _check_mask("MlpPatch", self.mask, self.positions, 1)

    @classmethod
    def at(cls, site: Site, source: torch.Tensor, layers: Iterable[int], positions: str = "last") -> MlpPatch:
        mask = torch.zeros(site.n_layers, dtype=torch.bool)
        for layer in layers:
            site.check_layer(int(layer))
            mask[int(layer)] = True
        return cls(source, mask, positions)

    def layers(self) -> list[int]:
        return torch.nonzero(self.mask.reshape(-1, self.mask.shape[-1]).bool().any(0)).flatten().tolist()

    def check(self, site: Site, batch: int | None = None) -> None:
        if self.mask.shape[-1] != site.n_layers or self.source.shape[-2] != site.n_layers:
            raise WorkbenchError(f"MlpPatch mask {list(self.mask.shape)} / source {list(self.source.shape)} do not fit the "
                                 f"model's {site.n_layers} layers",
                                 f"pass a mask [..., {site.n_layers}] and a source recorded on this model")
        _check_batch("MlpPatch", self, batch, 1)


def _check_batch(name: str, iv, batch: int | None, site_dims: int) -> None:
    """The source has one row per batch row; a mask's leading axis is 1 or the batch."""
    if batch is None:
        return
    if iv.source.shape[0] != batch:
        raise WorkbenchError(f"{name} source has {iv.source.shape[0]} rows for a batch of {batch}",
                             "record the source run on the batch paired row by row with this one")
    if iv.mask.dim() > site_dims and iv.mask.shape[0] not in (1, batch):
        raise WorkbenchError(f"{name} mask has {iv.mask.shape[0]} rows for a batch of {batch}",
                             "give one mask row per batch row, or a mask without a batch axis")


# EdgeScale / ImageTemperature (attention edges, workbench.interventions.attention) act inside the attention: only the
# torch backend applies them (torch_hooks.register → attention.register_edges)
Intervention = HeadScale | MeanAblation | MlpScale | HeadPatch | MlpPatch | EdgeScale | ImageTemperature
KNOWN = (HeadScale, MeanAblation, MlpScale, HeadPatch, MlpPatch, EdgeScale, ImageTemperature)  # every class validate() accepts


def validate(interventions: Sequence[Intervention], site: Site, batch: int | None = None) -> None:
    for iv in interventions:
        if not isinstance(iv, KNOWN):
            raise WorkbenchError(f"{type(iv).__name__} is not an intervention",
                                 f"use one of {', '.join(k.__name__ for k in KNOWN)}")
        iv.check(site, batch)


def head_layers(interventions: Sequence[Intervention]) -> list[int] | None:
    """Layers whose ``o_proj`` input must be edited; ``None`` means every layer."""
    layers: set[int] = set()
    for iv in interventions:
        if isinstance(iv, HeadScale):
            return None  # a HeadScale covers every layer (α = 1 included: the hook runs, and must be exact)
        if isinstance(iv, MeanAblation):
            layers |= {layer for layer, _ in iv.heads}
        if isinstance(iv, HeadPatch):
            layers |= set(iv.layers())
    return sorted(layers)


def mlp_layers(interventions: Sequence[Intervention]) -> list[int] | None:
    """Layers whose MLP output must be edited; ``None`` means every layer."""
    if any(isinstance(iv, MlpScale) for iv in interventions):
        return None
    return sorted({layer for iv in interventions if isinstance(iv, MlpPatch) for layer in iv.layers()})


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
        elif isinstance(iv, HeadPatch):
            z = _patch(z, layer, iv, iv.mask[..., layer, :])  # mask [head], [batch, head] or [batch, seq, head]
    return z


def _patch(x: torch.Tensor, layer: int, iv: HeadPatch | MlpPatch, m: torch.Tensor) -> torch.Tensor:
    """``where(mask, source, x)`` at one layer. ``x`` is ``[batch, seq, head, head_dim]`` (heads) or ``[batch, seq,
    hidden]`` (MLP); ``m`` the layer's mask with its site axis last (none for MLPs): ``[]``/``[head]``,
    ``[batch, …]`` or ``[batch, seq, …]``."""
    per_head = isinstance(iv, HeadPatch)
    if not bool(m.bool().any()):
        return x  # nothing patched at this layer
    src = (iv.source[:, layer] if iv.positions == "last" else iv.source[:, :, layer]).to(x.dtype).to(x.device)
    m = m.bool().to(x.device)
    lead = m.dim() - per_head  # 0: no batch axis, 1: [batch], 2: [batch, seq]
    m = m.reshape(*(m.shape[:lead] if lead == 2 else (m.shape[0], 1) if lead == 1 else (1, 1)),
                  *((m.shape[-1],) if per_head else ()), 1)  # [batch|1, seq|1, (head,) 1]
    if iv.positions == "last":
        return torch.cat([x[:, :-1], torch.where(m[:, -1:], src[:, None], x[:, -1:])], dim=1)
    if src.shape[1] not in (1, x.shape[1]):
        raise WorkbenchError(f"the patch source has {src.shape[1]} positions and this run {x.shape[1]}",
                             "patch all positions only between prompts that align token by token (same length)")
    return torch.where(m, src, x)


def edit_mlp(y: torch.Tensor, layer: int, interventions: Sequence[Intervention]) -> torch.Tensor:
    """MLP output ``y [batch, seq, hidden]`` of one layer → edited copy (pure)."""
    for iv in interventions:
        if isinstance(iv, MlpScale):
            a = iv.alpha[..., layer].to(y.dtype).to(y.device)  # [], [batch] or [batch, seq]
            a = a.reshape(a.shape[0], a.shape[1], 1) if a.dim() == 2 else a.reshape(-1, 1, 1)
            y = _at_positions(y, iv.positions, lambda t, a=a: t * a)
        elif isinstance(iv, MlpPatch):
            y = _patch(y, layer, iv, iv.mask[..., layer])
    return y


def split_heads(x: torch.Tensor, site: Site) -> torch.Tensor:
    """``o_proj`` input ``[batch, seq, head·head_dim]`` → ``[batch, seq, head, head_dim]``."""
    return x.view(*x.shape[:-1], site.n_heads, site.head_dim)


def check_left_padded(attention_mask: torch.Tensor | None) -> None:
    """Last-token interventions read index −1: every row's last token must be real."""
    if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask[:, -1].all()):
        raise WorkbenchError("the batch is right-padded, so index -1 is padding for some rows",
                             "pad on the left (tokenizer.padding_side = 'left'); build_batch() does this")
