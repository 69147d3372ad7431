"""Attribution: a first-order estimate of every head's effect from one forward and one backward pass.

Write the model with head scales α (all 1 in the clean run). For a metric m, the effect of
setting head (l, h) to α is, to first order,

    effect(α; l, h) ≈ (α − 1) · ∂m/∂α[l, h] |_{α = 1}

(attribution patching, Nanda 2023 / Syed et al. 2023, here through the scales rather than the
activations: ∂m/∂α[l, h] = ⟨∂m/∂z_{l,h}, z_{l,h}⟩, gradient times activation). With a per-probe
scale tensor ``[batch, layer, head]`` one backward pass gives every probe's gradient, so a whole
layer × head map costs about two forwards instead of one forward per head. It is exact for α
near 1 and only an estimate for ablation (α = 0); :func:`spearman` reports how well it ranks
heads against an exact sweep.

KL is at its minimum in the clean run (zero gradient) and accuracy has no gradient: both are refused.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench import metrics
from workbench.errors import WorkbenchError
from workbench.interventions.torch_hooks import TorchHooksBackend
from workbench.models.load import VLM
from workbench.models.prompts import build_batch
from workbench.probes.probeset import ProbeSet
from workbench.sweeps.engine import BUILDERS, SweepSpec

DIFFERENTIABLE = ("logit_diff", "p_correct")


def attribution(vlm: VLM, probes: ProbeSet, spec: SweepSpec, batch_size: int = 16) -> torch.Tensor:
    """Estimated effects ``[probe, alpha, layer, head]`` (``[probe, alpha, layer]`` for a per-layer kind)."""
    if (spec.intervention, spec.target) not in BUILDERS:
        raise WorkbenchError(f"attribution estimates α families' effects, not {spec.intervention} on {spec.kind.title}",
                             "use an exact sweep (workbench sweep) for it")
    if spec.metric not in DIFFERENTIABLE:
        raise WorkbenchError(f"attribution needs a differentiable metric with a non-zero gradient, not {spec.metric!r}",
                             f"use one of: {', '.join(DIFFERENTIABLE)}")
    be = TorchHooksBackend(vlm)
    grads = []
    for s in range(0, len(probes), batch_size):
        batch = build_batch(vlm, probes, probes.items[s:s + batch_size])
        b = len(batch)
        shape = (b, *vlm.site.shape) if spec.kind.per_head else (b, vlm.site.n_layers)
        alpha = torch.ones(shape, requires_grad=True)
        (iv,) = BUILDERS[(spec.intervention, spec.target)](alpha[None], spec.positions)  # one variant, a factor per row
        logits = be.last_logits(batch.inputs, [iv], grad=True).float()
        metrics.compute(spec.metric, logits, batch.option_ids, batch.answer).sum().backward()
        grads.append(alpha.grad.detach())
    g = torch.cat(grads)  # [probe, layer, head] (or [probe, layer])
    steps = torch.tensor(spec.alphas) - 1.0
    return steps.reshape(1, -1, *([1] * (g.dim() - 1))) * g.unsqueeze(1)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally shaped tensors (ties get their mean rank)."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = x.argsort(kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # average ties
            m = x == v
            r[m] = r[m].mean()
        return r

    ra, rb = ranks(a.flatten().numpy()), ranks(b.flatten().numpy())
    return float(np.corrcoef(ra, rb)[0, 1])
