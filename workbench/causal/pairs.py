"""Counterfactual minimal pairs as two batches that travel together.

Every generated spatial probe has a partner (:meth:`ProbeItem.counterfactual`): the same scene with
the two objects swapped (a new image, the same question, the opposite answer) or the same image with
the opposite relation asked (the other yes/no answer). Activation patching runs both and moves site
outputs from one run into the other:

- ``noising``: base = the clean probe, source = its counterfactual. Patching a site that carries the
  relation moves the answer toward the counterfactual's.
- ``denoising``: base = the counterfactual, source = the clean probe. Patching a site that carries the
  relation restores the clean answer.

The metric of both is the **answer-vs-foil logit difference** ``LD = logit[answer] − logit[foil]``,
with ``answer`` the clean probe's answer token and ``foil`` the counterfactual's (the same direction in
both runs and both directions, so LD is positive on the clean run and negative on the counterfactual
one for a model that gets both right). The **normalized effect** of a patch,

    (LD_patched − LD_base) / (LD_source − LD_base),

is 0 when the patch changes nothing and 1 when it moves the base run all the way to the source run. A
probe whose base and source differences are closer than ``min_gap`` has no denominator to speak of: it
is *dropped* (NaN), and the caller counts it.

Last-token patching needs nothing of the two prompts but a last token. All-position patching copies
position i of the source into position i of the base, which means something only when the two prompts
*align token by token*: same length, same padding, same image placement — checked here, and refused
with the first pair that differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workbench.causal.checks import check_direction, check_pairs  # noqa: F401  (their home is torch-free)
from workbench.errors import WorkbenchError
from workbench.models.load import VLM
from workbench.models.prompts import Batch, build_batch
from workbench.names import check_positions
from workbench.probes.items import ProbeItem
from workbench.probes.probeset import ProbeSet


@dataclass(frozen=True, eq=False)
class PairBatch:
    """A batch of base probes and the batch of their sources, row i of one paired with row i of the other."""

    base: Batch
    source: Batch
    answer: torch.Tensor  # [batch] vocabulary id of the clean probe's answer
    foil: torch.Tensor  # [batch] vocabulary id of the counterfactual's answer
    items: tuple[ProbeItem, ...]  # the clean probes (the rows' identities, whatever the direction)
    direction: str
    aligned: bool  # the two prompts align token by token (all-position patching is defined)

    def __len__(self) -> int:
        return len(self.items)


def _misalignment(base: Batch, source: Batch) -> str | None:
    """Why the two batches do not align token by token (None when they do)."""
    a, b = base.inputs, source.inputs
    if a["input_ids"].shape != b["input_ids"].shape:
        return f"the prompts have {a['input_ids'].shape[1]} and {b['input_ids'].shape[1]} tokens after padding"
    ma, mb = a.get("attention_mask"), b.get("attention_mask")
    if ma is not None and mb is not None and not torch.equal(ma, mb):
        row = int((ma != mb).any(1).nonzero()[0, 0])
        n_a, n_b = int(ma[row].sum()), int(mb[row].sum())
        return f"probe {base.items[row].id!r} and its partner differ in length ({n_a} vs {n_b} tokens)"
    for k in sorted(set(a) & set(b) - {"input_ids", "attention_mask", "pixel_values"}):
        if a[k].shape != b[k].shape:
            return f"their {k} differ in shape ({list(a[k].shape)} vs {list(b[k].shape)})"
    pa, pb = a.get("pixel_values"), b.get("pixel_values")
    if pa is not None and pb is not None and pa.shape != pb.shape:
        return "their images become different numbers of image tokens"
    return None


def pair_batch(vlm: VLM, probes: ProbeSet, items: Sequence[ProbeItem], direction: str, positions: str = "last") -> PairBatch:
    """Build the base and source batches of ``items`` (clean probes) for ``direction``.

    ``positions="all"`` refuses pairs that do not align token by token, naming the first one."""
    check_direction(direction)
    check_positions(positions)
    check_pairs(probes, items)
    clean = build_batch(vlm, probes, items)
    partner = build_batch(vlm, probes, [it.counterfactual() for it in items])
    base, source = (clean, partner) if direction == "noising" else (partner, clean)
    cf_index = torch.tensor([it.options.index(it.cf_answer) for it in items], dtype=torch.long, device=clean.answer.device)
    answer = clean.option_ids.gather(1, clean.answer[:, None])[:, 0]
    foil = clean.option_ids.gather(1, cf_index[:, None])[:, 0]
    if not torch.equal(clean.option_ids, partner.option_ids):
        row = int((clean.option_ids != partner.option_ids).any(1).nonzero()[0, 0])
        raise WorkbenchError(f"probe {items[row].id!r} and its counterfactual tokenize their options differently, "
                             "so one answer-vs-foil direction does not fit both runs",
                             "give the pair prompts that end alike (the question's ending sets the options' tokens)")
    if bool((answer == foil).any()):
        row = int((answer == foil).nonzero()[0, 0])
        raise WorkbenchError(f"probe {items[row].id!r} has the same answer as its counterfactual, so the pair has no "
                             "logit difference to patch", "check the probe's cf_answer")
    why = _misalignment(base, source)
    if positions == "all" and why is not None:
        raise WorkbenchError(f"all-position patching needs pairs that align token by token, and {why}",
                             "use --positions last, or pairs whose prompts have the same length (objects swapped, same question)")
    return PairBatch(base=base, source=source, answer=answer, foil=foil, items=tuple(items), direction=direction,
                     aligned=why is None)


def pair_logit_diff(logits: torch.Tensor, pair: PairBatch) -> torch.Tensor:
    """``logits [batch, vocab]`` → ``[batch]``, or ``[batch, V, vocab]`` → ``[batch, V]``: logit[answer] − logit[foil]."""
    if logits.dim() == 2:
        return logits.gather(1, pair.answer[:, None])[:, 0] - logits.gather(1, pair.foil[:, None])[:, 0]
    b, v, _ = logits.shape
    ans = pair.answer.view(b, 1, 1).expand(b, v, 1)
    foil = pair.foil.view(b, 1, 1).expand(b, v, 1)
    return logits.gather(2, ans)[..., 0] - logits.gather(2, foil)[..., 0]


def normalized_effect(patched: torch.Tensor, base: torch.Tensor, source: torch.Tensor, min_gap: float = 0.0) -> torch.Tensor:
    """``(patched − base) / (source − base)`` per probe and variant: ``patched [batch, V]``, ``base, source [batch]``.

    Rows where ``|source − base| < max(min_gap, 1e-6)`` are NaN (dropped: too close to normalise)."""
    gap = (source - base).float()
    keep = gap.abs() >= max(float(min_gap), 1e-6)
    safe = torch.where(keep, gap, torch.ones_like(gap))
    out = (patched.float() - base.float()[:, None]) / safe[:, None]
    return torch.where(keep[:, None], out, torch.full_like(out, float("nan")))
