"""Chat wrappers and image tokens that must not be part of a probe's question.

The workbench builds every prompt itself: it applies the model family's chat template to one user turn
holding the image and the bare question (:func:`workbench.models.prompts.prompt_text`), and the processor
expands the family's own image token. A question that already carries a wrapper — AdaptVis prompt files
ship ``"<image>\\nUSER: Where is …?\\nASSISTANT:"`` — would be wrapped twice, and its ``<image>`` counted as
a second image, which transformers reports as a bare ``ValueError`` about image-token counts.

:func:`wrapper_in` finds such a marker; :func:`check_question` turns it into one :class:`WorkbenchError`
naming the record, raised by the loaders at import and by ``build_batch`` (with the model's own image
tokens added) before anything reaches the processor. :func:`strip_wrapper` removes a LLaVA-1.5-style
wrapper (``<image>``, ``USER:``, ``ASSISTANT:``) for the loaders that know their files carry one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from workbench.errors import WorkbenchError

# A role label opening a line: "USER: …", "ASSISTANT:", "Human: …" (LLaVA, Vicuna, fastchat templates).
_ROLE = re.compile(r"(?im)^[ \t]*(USER|ASSISTANT|SYSTEM|HUMAN|GPT)[ \t]*:")

# Special tokens of the supported families' chat templates and image placeholders.
TOKENS: tuple[str, ...] = (
    "<image>", "<video>",  # LLaVA, LLaVA-NeXT, Idefics3 / SmolVLM, PaliGemma
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",  # Qwen, SmolVLM's ChatML
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",  # Qwen2-VL / Qwen2.5-VL
    "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>",  # Gemma 3
    "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",  # Idefics3 / SmolVLM
    "<|user|>", "<|assistant|>", "<|system|>",  # Phi / Zephyr-style
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",  # Llama 3
    "[INST]", "[/INST]",  # Mistral / Llama 2
)


def wrapper_in(text: str, extra: Iterable[str] = ()) -> str | None:
    """The first chat-wrapper marker or image token found in ``text`` (``extra``: more tokens to look
    for, e.g. a processor's ``image_token``), or None when the text is a bare question."""
    for tok in (*TOKENS, *(t for t in extra if isinstance(t, str) and t)):
        if tok in text:
            return tok
    m = _ROLE.search(text)
    return f"{m.group(1)}:" if m else None


def check_question(text: str, where: str, extra: Iterable[str] = ()) -> str:
    """``text`` if it holds no chat wrapper or image token, else one error naming ``where`` (the record)."""
    marker = wrapper_in(text, extra)
    if marker is not None:
        raise WorkbenchError(f"{where}: the question already holds the chat wrapper or image token {marker!r}",
                             "give the bare question: the workbench applies the model's chat template "
                             "and inserts the image itself")
    return text


_LEAD = re.compile(r"^\s*(?:<image>\s*)*(?:USER\s*:\s*)?", re.I)
_TAIL = re.compile(r"\s*(?:ASSISTANT\s*:\s*)?$", re.I)


def strip_wrapper(text: str) -> str:
    """A LLaVA-1.5 prompt ``"<image>\\nUSER: <question>\\nASSISTANT:"`` → ``"<question>"`` (spaces collapsed,
    a doubled closing period made single). Text without that wrapper comes back only tidied."""
    core = _TAIL.sub("", _LEAD.sub("", text))
    core = re.sub(r"\s+", " ", core).strip()
    return re.sub(r"\.{2,}$", ".", core)
