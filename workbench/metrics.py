"""Metrics at the answer position, over each probe's answer options.

All functions take last-position logits ``[batch, vocab]``, the option token ids ``[batch, K]``
(padded with −1 where a probe has fewer than K options) and the index of the correct option
``[batch]``, and return one value per probe ``[batch]``:

- ``logit_diff``: correct option's logit minus the best wrong option's. Positive = right answer
  preferred; the natural effect size for ablations (Wang et al., 2022).
- ``accuracy``: 1 if the correct option has the highest logit among the options, else 0.
- ``p_correct``: probability of the correct option, renormalised over the options only.
- ``kl``: KL(clean ‖ intervened) over the whole vocabulary, for "did anything change at all".

An effect is a metric under intervention minus the same metric clean (KL is already relative).
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.names import METRIC_VERSION, METRICS  # noqa: F401  (the names live torch-free in workbench.names)


def option_logits(logits: torch.Tensor, option_ids: torch.Tensor) -> torch.Tensor:
    """``[batch, K]`` logits of each option; padded slots are −inf."""
    picked = logits.gather(1, option_ids.clamp(min=0))
    return picked.masked_fill(option_ids < 0, float("-inf"))


def answer_token(option_ids: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """``[batch]`` vocabulary id of each row's correct option (the target of the answer-token loss)."""
    return option_ids.gather(1, answer[:, None])[:, 0]


def logit_diff(logits: torch.Tensor, option_ids: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    ol = option_logits(logits, option_ids)
    correct = ol.gather(1, answer[:, None])[:, 0]
    wrong = ol.scatter(1, answer[:, None], float("-inf")).max(dim=1).values
    return correct - wrong


def accuracy(logits: torch.Tensor, option_ids: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    return (option_logits(logits, option_ids).argmax(dim=1) == answer).to(logits.dtype)


def p_correct(logits: torch.Tensor, option_ids: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    return option_logits(logits, option_ids).float().softmax(dim=1).gather(1, answer[:, None])[:, 0]


def kl(logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
    """KL(clean ‖ intervened) per row, in nats."""
    lp_clean = clean_logits.float().log_softmax(-1)
    lp = logits.float().log_softmax(-1)
    return (lp_clean.exp() * (lp_clean - lp)).sum(-1)


def compute(name: str, logits: torch.Tensor, option_ids: torch.Tensor, answer: torch.Tensor,
            clean_logits: torch.Tensor | None = None) -> torch.Tensor:
    """One metric by name (``METRICS``); ``kl`` needs ``clean_logits``."""
    if name not in METRICS:
        raise WorkbenchError(f"unknown metric {name!r}", f"choose from: {', '.join(METRICS)}")
    if name == "kl":
        if clean_logits is None:
            raise ValueError("kl needs the clean logits")
        return kl(logits, clean_logits)
    return {"logit_diff": logit_diff, "accuracy": accuracy, "p_correct": p_correct}[name](logits, option_ids, answer)
