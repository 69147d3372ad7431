"""Build model folders of every supported VLM family that load offline: the organism's and the tests' scaffold.

A folder written by :func:`save_llava_folder` is a standard Hugging Face LLaVA checkpoint —
``config.json``, safetensors weights, a word-level ``tokenizer.json`` whose vocabulary is the probe
suite's words (with ``<image>`` registered as a special token), a chat template, and a processor
config using the PIL image processor (no torchvision needed) — so that ``AutoProcessor``,
``AutoModelForImageTextToText``, nnsight's ``TransformersModel`` and TransformerLens's
``TransformerBridge`` all load it from disk with no hub.

The chat template is LLaVA-1.5's shape, ``USER: <image>\\n{question} ASSISTANT:``; the answer is
the next word.

Every other family is one :class:`FamilySpec` row of :data:`FAMILIES` (Qwen2.5-VL, Qwen2-VL, LLaVA-NeXT,
Idefics3, SmolVLM, Gemma 3, PaliGemma, LLaVA-OneVision, Qwen3-VL, InternVL, Mllama), built by
:func:`build_family_folder`: the family's real config and ``…ForConditionalGeneration`` class at a tiny size
(2 decoder layers × 4 query heads, 2 KV heads, head_dim 16, hidden 64; a one-layer vision tower), a word-level
tokenizer holding the family's special tokens (Qwen's ``<|vision_start|><|image_pad|><|vision_end|>``, Idefics3's
``<fake_token_around_image>``/``<global-img>``/``<row_i_col_j>``, Gemma 3's ``<start_of_image>``/``<image_soft_token>``,
…), the family's own processor class over its PIL image processor, and a chat template with the family's image
placeholder — all written with ``save_pretrained``, so that loading it is a user's path from a download. Without
torchvision the processors with a video part are built in their image-only form
(:func:`workbench.models.load.image_only_processor_class`) and the folder gets the
``video_preprocessor_config.json`` a download carries, written as data. SmolVLM's processor needs ``num2words``
(a project dependency). LLaVA-1.5 stays with :func:`random_llava_folder` (the organism's builder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def word_tokenizer(words: list[str] | None = None, specials: tuple[str, ...] = SPECIALS, named: dict[str, str] | None = None):
    """A word-level fast tokenizer: ``specials``, then ``words``; splits on whitespace and punctuation.

    ``specials`` are matched whole before splitting (``<|image_pad|>`` stays one token); ``named`` gives some of them
    the names a processor looks up (``image_token``, ``boi_token``, …), as a hub tokenizer's ``extra_special_tokens`` do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for w in (*specials, *(words or probe_vocabulary())):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(specials))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    named = {"image_token": "<image>"} if named is None else named
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   extra_special_tokens=named, padding_side="left", model_max_length=2048)


def llava_config(vocab_size: int, *, image_size: int = 48, patch_size: int = 8, layers: int = 4, heads: int = 8,
                 kv_heads: int = 2,
                 head_dim: int = 16, intermediate: int = 0, vision_hidden: int = 64, vision_layers: int = 2,
                 vision_heads: int = 4):
    """A LlavaConfig: CLIP-style vision tower + Llama language model with grouped-query attention."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    hidden = heads * head_dim
    text = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or 4 * hidden,
                       num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim, max_position_embeddings=2048,
                       bos_token_id=2, eos_token_id=3, pad_token_id=0, tie_word_embeddings=False)
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=4 * vision_hidden, num_hidden_layers=vision_layers,
                              num_attention_heads=vision_heads, image_size=image_size, patch_size=patch_size,
                              projection_dim=vision_hidden)
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
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": vc.image_size},
                                            crop_size={"height": vc.image_size, "width": vc.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=vc.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE,
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


# ---------------------------------------------------------------------------------------------------------------------
# Every family: one FamilySpec row each, one builder for all of them.
# ---------------------------------------------------------------------------------------------------------------------

BASE_SPECIALS = SPECIALS[:4]  # <pad> <unk> <s> </s>: ids 0–3 in every family's tokenizer
TEMPLATE_WORDS = ("user", "assistant", "User", "Assistant", "model")
_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=16,
             max_position_embeddings=4096, bos_token_id=2, eos_token_id=3, pad_token_id=0, tie_word_embeddings=False)
_CLIP = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
             image_size=32, patch_size=8, projection_dim=32)
_SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
               image_size=32, patch_size=8)
_MROPE = {"rope_type": "default", "type": "mrope", "mrope_section": [2, 3, 3]}
_QWEN_VISION = dict(patch_size=4, spatial_merge_size=2, temporal_patch_size=2)
# Qwen's image processor: 32×32 px stays 32×32 (a multiple of patch·merge = 8): an 8×8 patch grid, 16 tokens after the 2×2 merge
_QWEN_PIXELS = dict(patch_size=4, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 16 * 16, "longest_edge": 32 * 32})
_GRID_TOKENS = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))  # Idefics3 / SmolVLM's crop tags


def chat_template(user: str, image: str, end: str, assistant: str) -> str:
    """A Jinja chat template: ``{user}{image}{question}{end}`` per user turn, ``{assistant}`` as the generation prompt.

    The image placeholder is the family's own (the processor expands it: Qwen's ``<|image_pad|>`` into
    (t·h·w)/merge² copies, Gemma 3's ``<start_of_image>`` into its soft tokens, …)."""
    text = "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    return ("{% for message in messages %}{% if message['role'] == 'user' %}" + user
            + "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for c in message['content'] %}{% if c['type'] == 'image' %}" + image + "{% endif %}{% endfor %}" + text
            + "{% endif %}"
            + end + "{% else %}" + assistant + "{% if message['content'] is string %}{{ message['content'] }}{% else %}" + text
            + "{% endif %}" + end + "{% endif %}{% endfor %}{% if add_generation_prompt %}" + assistant + "{% endif %}")


@dataclass(frozen=True)
class FamilySpec:
    """How to build one family's tiny checkpoint folder: all data, read by :func:`build_family_folder`.

    ``config`` is passed to ``AutoConfig.for_model(model_type, …)`` (``vocab_size`` is filled in from the tokenizer);
    ``token_ids`` maps a config key (dotted for a sub-config) to the special token whose id it must hold. The
    processor is ``processor`` (a transformers class name) built from a ``word_tokenizer(specials=…, named=…)``,
    the PIL image processor ``image_processor(**image_kwargs)`` and ``processor_kwargs``; ``template`` is the chat
    template (``None``: the family has none, like PaliGemma's base checkpoints). ``video`` is the
    ``video_preprocessor_config.json`` a real download carries (written as data: building a video processor needs torchvision)."""

    key: str  # short name used by tests and the CLI, e.g. "qwen2_5_vl"
    model_type: str  # config.model_type
    config: dict[str, Any]
    token_ids: dict[str, str]
    processor: str
    image_processor: str
    image_kwargs: dict[str, Any]
    specials: tuple[str, ...]
    named: dict[str, str]
    template: str | None
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    image_attrs: dict[str, Any] = field(default_factory=dict)  # set on the image processor after construction
    video: dict[str, Any] | None = None
    fill: dict[str, float] = field(default_factory=dict)  # parameters (by name suffix) set to a constant after the random init


_QWEN_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")
_QWEN_NAMED = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
               "vision_eos_token": "<|vision_end|>"}
_QWEN_TEMPLATE = chat_template("<|im_start|>user\n", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n",
                               "<|im_start|>assistant\n")
_QWEN_IDS = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>", "vision_start_token_id": "<|vision_start|>",
             "vision_end_token_id": "<|vision_end|>"}
_IDEFICS_SPECIALS = ("<|im_start|>", "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>", *_GRID_TOKENS)
_IDEFICS_TEMPLATE = chat_template("<|im_start|>User:", "<image>", "<end_of_utterance>\n", "Assistant:")
# Idefics3 / SmolVLM: images are resized to longest edge 64 and split into 32 px crops (2×2 + the global image), 4 tokens each
_IDEFICS_PIXELS = dict(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True)
_IDEFICS_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                       patch_size=8)

FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec("qwen2_5_vl", "qwen2_5_vl",
               dict(text_config=dict(**_TEXT, rope_scaling=_MROPE),
                    vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2,
                                       in_channels=3,
                                       fullatt_block_indexes=[0], window_size=16, **_QWEN_VISION)),
               _QWEN_IDS, "Qwen2_5_VLProcessor", "Qwen2VLImageProcessorPil", _QWEN_PIXELS, _QWEN_SPECIALS, _QWEN_NAMED,
               _QWEN_TEMPLATE,
               video={"video_processor_type": "Qwen2VLVideoProcessor", **_QWEN_PIXELS}),
    FamilySpec("qwen2_vl", "qwen2_vl",
               dict(text_config=dict(**_TEXT, rope_scaling=_MROPE),
                    vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, in_chans=3, **_QWEN_VISION)),
               _QWEN_IDS, "Qwen2VLProcessor", "Qwen2VLImageProcessorPil", _QWEN_PIXELS, _QWEN_SPECIALS, _QWEN_NAMED,
               _QWEN_TEMPLATE,
               video={"video_processor_type": "Qwen2VLVideoProcessor", **_QWEN_PIXELS}),
    FamilySpec("llava_next", "llava_next",
               dict(text_config=dict(model_type="mistral", **_TEXT), vision_config=_CLIP,
                    vision_feature_select_strategy="default",
                    vision_feature_layer=-1, image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]]),
               {"image_token_id": "<image>"}, "LlavaNextProcessor", "LlavaNextImageProcessorPil",
               dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                    image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]]),
               ("[INST]", "[/INST]", "<image>"), {"image_token": "<image>"},
               chat_template("[INST] ", "<image>\n", " [/INST]", ""),
               processor_kwargs=dict(patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1)),
    FamilySpec("idefics3", "idefics3",
               dict(text_config=dict(model_type="llama", **_TEXT), vision_config=_IDEFICS_VISION, scale_factor=2),
               {"image_token_id": "<image>"}, "Idefics3Processor", "Idefics3ImageProcessorPil", _IDEFICS_PIXELS,
               _IDEFICS_SPECIALS,
               {"image_token": "<image>"}, _IDEFICS_TEMPLATE, processor_kwargs=dict(image_seq_len=4)),
    FamilySpec("smolvlm", "smolvlm",
               dict(text_config=dict(model_type="llama", **_TEXT), vision_config=_IDEFICS_VISION, scale_factor=2),
               {"image_token_id": "<image>"}, "SmolVLMProcessor", "SmolVLMImageProcessorPil", _IDEFICS_PIXELS, _IDEFICS_SPECIALS,
               {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>", "global_image_token": "<global-img>",
                "end_of_utterance_token": "<end_of_utterance>"}, _IDEFICS_TEMPLATE, processor_kwargs=dict(image_seq_len=4),
               video={"video_processor_type": "SmolVLMVideoProcessor", **_IDEFICS_PIXELS}),
    FamilySpec("gemma3", "gemma3",
               dict(text_config=dict(model_type="gemma3_text", **_TEXT, sliding_window=16), vision_config=_SIGLIP,
                    mm_tokens_per_image=4),
               {"image_token_id": "<image_soft_token>", "boi_token_id": "<start_of_image>", "eoi_token_id": "<end_of_image>"},
               "Gemma3Processor", "Gemma3ImageProcessorPil", dict(size={"height": 32, "width": 32}),
               ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<image_soft_token>", "<end_of_image>"),
               {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
               chat_template("<start_of_turn>user\n", "<start_of_image>", "<end_of_turn>\n", "<start_of_turn>model\n"),
               processor_kwargs=dict(image_seq_length=4)),
    # PaliGemma's base checkpoints have no chat template: the processor puts the image tokens and <bos> before the text itself
    FamilySpec("paligemma", "paligemma",
               dict(text_config=dict(model_type="gemma", **_TEXT), vision_config={**_SIGLIP, "projection_dim": 64},
                    projection_dim=64),
               {"image_token_id": "<image>"}, "PaliGemmaProcessor", "SiglipImageProcessorPil",
               dict(size={"height": 32, "width": 32}),
               ("<image>",), {"image_token": "<image>"}, None, image_attrs=dict(image_seq_length=16)),
    FamilySpec("llava_onevision", "llava_onevision",
               dict(text_config=dict(model_type="qwen2", **_TEXT), vision_config=_SIGLIP, vision_feature_select_strategy="full",
                    vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9",
                    image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]]),
               {"image_token_id": "<image>", "video_token_id": "<video>"}, "LlavaOnevisionProcessor",
               "LlavaOnevisionImageProcessorPil",
               dict(size={"height": 32, "width": 32}, image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]]),
               ("<|im_start|>", "<|im_end|>", "<image>", "<video>"), {"image_token": "<image>", "video_token": "<video>"},
               chat_template("<|im_start|>user\n", "<image>\n", "<|im_end|>\n", "<|im_start|>assistant\n"),
               processor_kwargs=dict(num_image_tokens=16, vision_feature_select_strategy="full",
                                     vision_aspect_ratio="anyres_max_9"),
               video={"video_processor_type": "LlavaOnevisionVideoProcessor", "size": {"height": 32, "width": 32}}),
    FamilySpec("qwen3_vl", "qwen3_vl",
               dict(text_config=dict(**_TEXT, rope_parameters={"rope_type": "default", "mrope_section": [4, 2, 2],
                                                               "mrope_interleaved": True,
                                                               "rope_theta": 10000.0}),
                    vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2,
                                       in_channels=3,
                                       num_position_embeddings=64, deepstack_visual_indexes=[0], **_QWEN_VISION)),
               _QWEN_IDS, "Qwen3VLProcessor", "Qwen2VLImageProcessorPil", _QWEN_PIXELS, _QWEN_SPECIALS, _QWEN_NAMED,
               _QWEN_TEMPLATE,
               video={"video_processor_type": "Qwen3VLVideoProcessor", **_QWEN_PIXELS}),
    # InternVL: <IMG_CONTEXT> in the prompt becomes <img> + (32/8)²·0.5² = 4 × <IMG_CONTEXT> + </img>
    FamilySpec("internvl", "internvl",
               dict(text_config=dict(model_type="qwen2", **_TEXT),
                    vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=[32, 32],
                                       patch_size=[8, 8]), downsample_ratio=0.5, vision_feature_layer=-1),
               {"image_token_id": "<IMG_CONTEXT>"}, "InternVLProcessor", "GotOcr2ImageProcessorPil",
               dict(size={"height": 32, "width": 32}),
               ("<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
               {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>"},
               chat_template("<|im_start|>user\n", "<IMG_CONTEXT>\n", "<|im_end|>\n", "<|im_start|>assistant\n"),
               processor_kwargs=dict(image_seq_length=4),
               video={"video_processor_type": "InternVLVideoProcessor", "size": {"height": 32, "width": 32}}),
    # Mllama: one <|image|> token per image; the image reaches the text through the cross-attention layer (layer 1)
    FamilySpec("mllama", "mllama",
               dict(text_config={**{k: v for k, v in _TEXT.items() if k != "head_dim"}, "cross_attention_layers": [1]},
                    vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_global_layers=1,
                                       attention_heads=2,
                                       image_size=32, patch_size=8, max_num_tiles=1, vision_output_dim=64,
                                       intermediate_layers_indices=[0],
                                       supported_aspect_ratios=[[1, 1]])),
               {"image_token_index": "<|image|>"}, "MllamaProcessor", "MllamaImageProcessorPil",
               dict(size={"height": 32, "width": 32}, max_image_tiles=1),
               ("<|image|>", "<|python_tag|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
               {"image_token": "<|image|>"},
               chat_template("<|start_header_id|>user<|end_header_id|>\n\n", "<|image|>", "<|eot_id|>",
                             "<|start_header_id|>assistant<|end_header_id|>\n\n"),
               fill={"cross_attn_attn_gate": 1.0, "cross_attn_mlp_gate": 1.0}),  # zero-initialised gates would shut the image out
)
FAMILY = {f.key: f for f in FAMILIES}


def _processor_class(name: str):
    """The processor class ``name``; where its video part needs torchvision and torchvision is absent, its image-only form."""
    import transformers

    from workbench.models.load import image_only_processor_class

    return image_only_processor_class(getattr(transformers, name))


def build_family_folder(key: str, folder: str | Path, seed: int = 0, init_std: float = 0.1) -> Path:
    """Write a tiny random checkpoint of family ``key`` (a :data:`FAMILY` key) to ``folder``, as a download would hold it.

    The model is the family's real ``…ForConditionalGeneration`` from a tiny config (2 decoder layers × 4 query heads,
    2 KV heads, head_dim 16, hidden 64; a one-layer vision tower), weights ~ N(0, init_std²) from ``seed``; the
    tokenizer is word-level with the family's special tokens; the processor is the family's own class over the PIL image
    processor, with its chat template. Everything is written with ``save_pretrained``."""
    import transformers
    from transformers import AutoConfig, AutoModelForImageTextToText

    spec = FAMILY[key]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer([*probe_vocabulary(), *TEMPLATE_WORDS], specials=(*BASE_SPECIALS, *spec.specials),
                               named=spec.named)
    image_processor = getattr(transformers, spec.image_processor)(**spec.image_kwargs)
    for k, v in spec.image_attrs.items():
        setattr(image_processor, k, v)
    # may add tokens (PaliGemma's <loc…>/<seg…>): vocab after
    processor = _processor_class(spec.processor)(image_processor=image_processor, tokenizer=tokenizer,
                                                 chat_template=spec.template, **spec.processor_kwargs)
    config = json.loads(json.dumps(spec.config))
    config["text_config"]["vocab_size"] = len(tokenizer)
    for dotted, token in spec.token_ids.items():
        *path, name = dotted.split(".")
        target = config
        for p in path:
            target = target[p]
        target[name] = tokenizer.convert_tokens_to_ids(token)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(spec.model_type, **config)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * init_std)
        for name, p in model.named_parameters():
            for suffix, value in spec.fill.items():
                if name.endswith(suffix):
                    p.fill_(value)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if spec.video is not None and not (folder / "video_preprocessor_config.json").exists():
        (folder / "video_preprocessor_config.json").write_text(json.dumps(spec.video, indent=2))
    return folder
