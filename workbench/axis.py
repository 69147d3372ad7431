"""The site axis and the intervention families, as data (torch-free).

A sweep asks one question of many *sites*: what happens to a metric when this one site is
intervened on. Sites come in kinds, and every consumer — engines, the store, aggregation, the
app — asks the kind instead of comparing a ``target`` string:

==========  =========================  ===================  ==================================
kind        one site per               label                what is touched
==========  =========================  ===================  ==================================
``heads``   (layer, query head)        ``L3H5``             the head's slice of ``o_proj``'s input
``mlp``     layer                      ``L3 MLP``           the layer's MLP output
``edges``   (layer, query head)        ``L3H5→img``         the head's attention from the last
                                                            token to the image keys
==========  =========================  ===================  ==================================

Results are ``[probe, alpha, layer, head]`` for kinds with a head axis and ``[probe, alpha,
layer]`` for the others. The store keeps both in one long table whose ``head`` column holds
:data:`NO_HEAD` (−1) for a per-layer kind: :meth:`SiteKind.stored_heads` and
:meth:`SiteKind.width` are the only places that know it.

An intervention *family* says what is done at a site and what a stored value means:

- ``scale``: the site's output (or attention weight on image keys) times α. α = 1 is the
  identity, α = 0 zero ablation (a knock-out for edges). Value: metric(α) − metric(clean).
- ``patch``: the site's output replaced by the same site's output in the paired
  (counterfactual) run — ``noising`` (base clean, source counterfactual) or ``denoising``
  (base counterfactual, source clean). No α (the axis holds the single value 1: fully patched).
  Value: the normalized effect (patched − base) / (source − base) of the answer-vs-foil
  logit difference; 1 = the site alone carries the whole difference, 0 = none of it. Probes
  whose base and source differences are too close to normalise are stored as NaN (dropped, counted).
- ``temperature``: the site's attention logits on image keys divided by α = the temperature
  (AdaptVis, Chen et al. ICML 2025: α < 1 sharpens, α > 1 smooths). α = 1 is the identity.
  Value: metric(α) − metric(clean).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from workbench.errors import WorkbenchError

NO_HEAD = -1  # the store's head column for a per-layer site kind (an MLP)
POSITIONS = ("last", "all")
DIRECTIONS = ("noising", "denoising")


@dataclass(frozen=True)
class SiteKind:
    """One kind of site. ``per_head``: one site per (layer, head) rather than one per layer."""

    name: str
    per_head: bool
    label_format: str  # str.format over layer= and head=
    title: str  # what the kind's sites are, for headings: "attention heads", "MLPs"

    def width(self, n_heads: int) -> int:
        """Size of the head axis of this kind's results (1 for a per-layer kind, before it is dropped)."""
        return n_heads if self.per_head else 1

    def n_sites(self, n_layers: int, n_heads: int) -> int:
        return n_layers * self.width(n_heads)

    def sites(self, layers: Iterable[int], n_heads: int) -> list[tuple[int, int]]:
        """``(layer, head)`` of every site in ``layers`` in result order (head = :data:`NO_HEAD` for per-layer kinds)."""
        return [(layer, head) for layer in layers for head in (range(n_heads) if self.per_head else (NO_HEAD,))]

    def label(self, layer: int, head: int = NO_HEAD) -> str:
        return self.label_format.format(layer=layer, head=head)

    def stored_heads(self, heads):
        """The store's ``head`` column for result head indices (a per-layer kind stores :data:`NO_HEAD`)."""
        return heads if self.per_head else heads * 0 + NO_HEAD

    def result_shape(self, n_probes: int, n_alphas: int, n_layers: int, n_heads: int) -> tuple[int, ...]:
        return (n_probes, n_alphas, n_layers) + ((n_heads,) if self.per_head else ())


HEADS = SiteKind("heads", True, "L{layer}H{head}", "attention heads")
MLP = SiteKind("mlp", False, "L{layer} MLP", "MLPs")
EDGES = SiteKind("edges", True, "L{layer}H{head}→img", "attention edges (last token → image)")
KINDS: dict[str, SiteKind] = {k.name: k for k in (HEADS, MLP, EDGES)}
TARGETS = tuple(KINDS)


def kind(name: str) -> SiteKind:
    """The site kind called ``name`` (a sweep spec's ``target``)."""
    if name not in KINDS:
        raise WorkbenchError(f"unknown target {name!r}", f"choose from: {', '.join(KINDS)}")
    return KINDS[name]


@dataclass(frozen=True)
class Family:
    """One intervention family: the site kinds it applies to and what its α and its values mean."""

    name: str
    kinds: tuple[str, ...]
    identity: float | None  # the α that changes nothing; None when the family has no α
    alpha_name: str  # how the α axis is labelled ("α", "temperature"; "" when there is none)
    default_alphas: tuple[float, ...]
    value: str  # what one stored value is, one line (labels, tooltips, notes)
    needs_pairs: bool = False  # uses each probe's counterfactual partner
    positive_alpha: bool = False  # α must be > 0 (a temperature divides the logits)

    @property
    def has_alpha(self) -> bool:
        return self.identity is not None


SCALE = Family("scale", ("heads", "mlp", "edges"), 1.0, "α", (0.0,),
               "Δ = metric with the site scaled by α − clean metric (negative: the intervention hurts)")
PATCH = Family("patch", ("heads", "mlp"), None, "", (1.0,),
               "normalized patching effect (patched − base) / (source − base) of the answer-vs-foil logit difference: "
               "1 = the site carries the whole difference, 0 = none", needs_pairs=True)
TEMPERATURE = Family("temperature", ("edges",), 1.0, "temperature", (0.5, 2.0),
                     "Δ = metric with the site's image-key attention logits divided by the temperature − clean metric",
                     positive_alpha=True)
FAMILIES: dict[str, Family] = {f.name: f for f in (SCALE, PATCH, TEMPERATURE)}
INTERVENTIONS = tuple(FAMILIES)


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise WorkbenchError(f"unknown intervention {name!r}", f"choose from: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def check_combination(intervention: str, target: str, direction: str = "") -> None:
    """Refuse a family on a kind it does not apply to, and a direction where it means nothing or is missing."""
    fam, k = family(intervention), kind(target)
    if k.name not in fam.kinds:
        raise WorkbenchError(f"the {fam.name} intervention does not apply to {k.title}",
                             f"use --target {' or '.join(fam.kinds)} with --intervention {fam.name}")
    if fam.needs_pairs and direction not in DIRECTIONS:
        raise WorkbenchError(f"unknown direction {direction!r}" if direction else "patching needs a direction",
                             f"use --direction {' or '.join(DIRECTIONS)}")
    if not fam.needs_pairs and direction:
        raise WorkbenchError(f"--direction {direction} applies to patching only", "drop --direction, or use --intervention patch")
