"""Probe items → model inputs: chat-template prompts, left-padded batches, option token ids.

The prompt of a probe is the family's own chat template (through its processor) applied to one
user turn holding the image and the question, with the generation prompt appended, so the next
token the model would write is the answer. Processors without a chat template (PaliGemma's
base checkpoints) get the bare question; their processor inserts the image tokens itself.

Batches are **left-padded**, so index −1 is every row's real last token: the position where
the answer is read and where last-token interventions act.

Images go to the processor as one list per prompt (``[[image_0], [image_1], …]``), the nested form every
processor of the supported families accepts: a flat list is ambiguous, and Gemma 3's and SmolVLM's processors
read it as one sample holding all the images. The processor's own outputs flow through unchanged — its image-token
expansion in ``input_ids`` (Qwen's (t·h·w)/merge² ``<|image_pad|>`` per image with ``image_grid_thw``, Idefics3's
crops, LLaVA-NeXT's anyres tiles with ``image_sizes``), ``token_type_ids``, pixel masks — except training targets
(:data:`TARGET_KEYS`: PaliGemma's processor returns ``labels``, with which every forward would also compute a loss).

An option's token is the first token the tokenizer produces for the option *as a continuation of
the prompt* (a space is inserted when the prompt does not end in whitespace, as the model would
write it). Options of one probe must differ in that token, or no single-position metric can tell
them apart; such a probe is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workbench.errors import WorkbenchError
from workbench.models.load import VLM
from workbench.probes.items import ProbeItem
from workbench.probes.loaders.wrappers import check_question
from workbench.probes.probeset import ProbeSet

# training targets some processors add (PaliGemma's): a forward given them also computes a loss
TARGET_KEYS = frozenset({"labels"})


@dataclass(frozen=True, eq=False)
class Batch:
    """Model inputs and answer bookkeeping for a list of probes."""

    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask, pixel_values, … (left-padded)
    option_ids: torch.Tensor  # [batch, K] token id of each option, −1 where a probe has fewer options
    answer: torch.Tensor  # [batch] index of the correct option
    items: tuple[ProbeItem, ...]

    def __len__(self) -> int:
        return len(self.items)


def prompt_text(processor, question: str) -> str:
    """The full prompt (with the generation prompt) for one image and one question."""
    if getattr(processor, "chat_template", None):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return question


def option_token_ids(tokenizer, prompt: str, options: Sequence[str]) -> list[int]:
    """The first token of each option as the continuation of ``prompt``."""
    return list(_option_ids(tokenizer, prompt[-64:], tuple(options)))


def _option_ids(tokenizer, tail: str, options: tuple[str, ...]) -> tuple[int, ...]:
    cache = tokenizer.__dict__.setdefault("_workbench_option_ids", {})  # lives and dies with the tokenizer
    if (tail, options) in cache:
        return cache[(tail, options)]
    sep = "" if tail[-1:].isspace() else " "
    base = tokenizer(tail, add_special_tokens=False)["input_ids"]
    ids = []
    for opt in options:
        full = tokenizer(tail + sep + opt, add_special_tokens=False)["input_ids"]
        k = 0
        while k < min(len(base), len(full)) and base[k] == full[k]:
            k += 1
        if k >= len(full):
            raise WorkbenchError(f"option {opt!r} adds no token after the prompt", "check the options and the tokenizer")
        ids.append(int(full[k]))
    if len(set(ids)) < len(ids):
        same = [o for o, i in zip(options, ids) if ids.count(i) > 1]
        raise WorkbenchError(f"options {same} share their first token, so one answer position cannot tell them apart",
                             "use options that start with different tokens (e.g. option letters)")
    cache[(tail, options)] = tuple(ids)
    return cache[(tail, options)]


IMAGE_TOKEN_ATTRS = ("image_token", "boi_token", "eoi_token", "video_token", "fake_image_token", "global_image_token")


def check_questions(processor, items: Sequence[ProbeItem]) -> None:
    """One error naming the probe whose question already holds a chat wrapper or an image token (the generic
    markers of :mod:`workbench.probes.loaders.wrappers` and this processor's own image tokens): its prompt would
    be wrapped twice and its image counted twice, which transformers reports only as a bare ValueError."""
    extra = [t for t in (getattr(processor, a, None) for a in IMAGE_TOKEN_ATTRS) if isinstance(t, str) and t]
    for it in items:
        check_question(it.question, f"probe {it.id!r}", extra)


def build_batch(vlm: VLM, probes: ProbeSet, items: Sequence[ProbeItem]) -> Batch:
    """Prompts, images and option ids for ``items`` (whose images live in ``probes``)."""
    processor = vlm.processor
    if processor is None:
        raise WorkbenchError(f"model {vlm.name!r} has no processor", "load it with load_vlm(folder) so prompts can be built")
    tokenizer = processor.tokenizer
    check_questions(processor, items)
    prompts = [prompt_text(processor, it.question) for it in items]
    images = [[probes.image(it)] for it in items]  # one list per prompt: sample i has exactly image i
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    inputs = {k: v.to(vlm.device) for k, v in enc.items() if isinstance(v, torch.Tensor) and k not in TARGET_KEYS}
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].to(vlm.dtype)
    k = max(len(it.options) for it in items)
    option_ids = torch.full((len(items), k), -1, dtype=torch.long)
    for row, (it, prompt) in enumerate(zip(items, prompts)):
        option_ids[row, : len(it.options)] = torch.tensor(option_token_ids(tokenizer, prompt, it.options))
    answer = torch.tensor([it.answer_index for it in items], dtype=torch.long)
    return Batch(inputs=inputs, option_ids=option_ids.to(vlm.device), answer=answer.to(vlm.device), items=tuple(items))
