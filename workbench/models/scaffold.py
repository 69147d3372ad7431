"""Build LLaVA-architecture model folders that load offline: the organism's and the tests' scaffold.

A folder written by :func:`save_llava_folder` is a standard Hugging Face LLaVA checkpoint —
``config.json``, safetensors weights, a word-level ``tokenizer.json`` whose vocabulary is the probe
suite's words (with ``<image>`` registered as a special token), a chat template, and a processor
config using the PIL image processor (no torchvision needed) — so that ``AutoProcessor``,
``AutoModelForImageTextToText``, nnsight's ``TransformersModel`` and TransformerLens's
``TransformerBridge`` all load it from disk with no hub.

The chat template is LLaVA-1.5's shape, ``USER: <image>\\n{question} ASSISTANT:``; the answer is
the next word.
"""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.probes.scenes import PALETTE, RELATIONS, SHAPES
from workbench.probes.tasks import COUNTS, plural

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% else %} ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)


def probe_vocabulary() -> list[str]:
    """Every word the probe generator's questions and answers use, plus the chat template's."""
    words = ("USER ASSISTANT : ? Where Is What How where is the relative to of left right above below yes no what color "
             "shape object how many are there a an").split()
    words += list(PALETTE) + list(SHAPES) + [plural(s) for s in SHAPES] + list(RELATIONS) + list(COUNTS)
    return list(dict.fromkeys(words))


def word_tokenizer(words: list[str] | None = None):
    """A word-level fast tokenizer: specials, then ``words``; splits on whitespace and punctuation."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for w in (*SPECIALS, *(words or probe_vocabulary())):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIALS))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   extra_special_tokens={"image_token": "<image>"}, padding_side="left", model_max_length=2048)


def llava_config(vocab_size: int, *, image_size: int = 48, patch_size: int = 8, layers: int = 4, heads: int = 8, kv_heads: int = 2,
                 head_dim: int = 16, intermediate: int = 0, vision_hidden: int = 64, vision_layers: int = 2, vision_heads: int = 4):
    """A LlavaConfig: CLIP-style vision tower + Llama language model with grouped-query attention."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    hidden = heads * head_dim
    text = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or 4 * hidden, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim, max_position_embeddings=2048,
                       bos_token_id=2, eos_token_id=3, pad_token_id=0, tie_word_embeddings=False)
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=4 * vision_hidden, num_hidden_layers=vision_layers,
                              num_attention_heads=vision_heads, image_size=image_size, patch_size=patch_size, projection_dim=vision_hidden)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=SPECIALS.index("<image>"),
                       image_seq_length=(image_size // patch_size) ** 2, vision_feature_select_strategy="default",
                       vision_feature_layer=-1, pad_token_id=0, tie_word_embeddings=False)


def save_llava_folder(model: torch.nn.Module, folder: str | Path, tokenizer=None) -> Path:
    """Write ``model`` with a word-level tokenizer, chat template and PIL processor to ``folder``."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or word_tokenizer()
    vc = model.config.vision_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": vc.image_size}, crop_size={"height": vc.image_size, "width": vc.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=vc.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
                               image_token="<image>")
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_llava_folder(folder: str | Path, seed: int = 0, init_std: float = 0.1, **config) -> Path:
    """A random-weight LLaVA folder (weights ~ N(0, init_std²), so heads visibly matter): for tests."""
    from transformers import LlavaForConditionalGeneration

    tokenizer = word_tokenizer()
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava_config(len(tokenizer), **config)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * init_std)
    return save_llava_folder(model, folder, tokenizer)
