"""Calibration after label smoothing: the temperature folded into the output layer (``OrganismConfig.confidence``)."""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.lab.data import Encoded


@torch.no_grad()
def answer_temperature(model, data: Encoded, target: float, device: torch.device, batch: int = 250) -> float:
    """The factor ``T ≥ 1`` on the logits that makes the mean probability of the right answer over ``data`` equal to
    ``target`` (bisection on the last-position logits ``[n, vocab]``; 1 if the model is already that confident).

    Why: label smoothing ε leaves a model under-confident by design: at its optimum the right answer gets
    about 1 − ε (``analyses/results/organism_staged_cpu.md`` measures it on the organism's stage 3). A
    repair method trained by cross-entropy on such a model gains most by *sharpening* every answer, which
    moves heads that have nothing to do with the deficit. Multiplying the logits by T (folded into
    ``lm_head.weight``, :func:`fold_temperature`) restores a plain model's confidence and changes no
    prediction: the order of the logits, hence every accuracy, is the same."""
    model.eval()
    logits, answers = [], []
    for s in range(0, len(data.tasks), batch):
        idx = torch.arange(s, min(s + batch, len(data.tasks)))
        logits.append(model(**data.batch(idx, device), logits_to_keep=1).logits[:, -1].float().cpu())
        answers.append(data.answer_token[idx.to(data.answer_token.device)].cpu())
    z, a = torch.cat(logits), torch.cat(answers)

    def confidence(t: float) -> float:
        return float((t * z).softmax(-1).gather(1, a[:, None]).mean())

    if confidence(1.0) >= target:
        return 1.0
    lo, hi = 1.0, 2.0
    while confidence(hi) < target:
        lo, hi = hi, 2 * hi
        if hi > 1e4:
            raise WorkbenchError(f"no temperature makes the right answer's mean probability {target}",
                                 "the model is not accurate enough on fresh scenes")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if confidence(mid) < target else (lo, mid)
    return hi


def fold_temperature(model, t: float) -> None:
    """Multiply the language model's output layer by ``t``: every logit is ``t`` times what it was."""
    if model.config.get_text_config().tie_word_embeddings:
        raise WorkbenchError("the output layer is tied to the input embeddings", "untie it before folding a temperature into it")
    with torch.no_grad():
        model.lm_head.weight.mul_(t)
        if getattr(model.lm_head, "bias", None) is not None:
            model.lm_head.bias.mul_(t)
