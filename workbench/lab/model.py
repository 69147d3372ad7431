"""The organism as a model: built fresh (or from an earlier stage's weights) from a config, or from a checkpoint.

A standard ``LlavaForConditionalGeneration`` (CLIP-style vision tower, Llama language model with grouped-query
attention), written as a Hugging Face folder with the workbench's word-level tokenizer and processor, so
every code path that serves real LLaVA checkpoints serves it too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.lab.config import OrganismConfig
from workbench.models.scaffold import llava_config, save_llava_folder, word_tokenizer


def pick_device(device: str) -> torch.device:
    """``auto``: the GPU when one is visible, else the CPU; a CUDA device asked for without CUDA is refused."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError(f"device {device!r} asked for, but no CUDA GPU is visible", "use --device cpu or auto")
    return torch.device(device)


def build(cfg: OrganismConfig, out: Path):
    """A freshly initialised organism written to ``out``, with its tokenizer and the processor loaded back
    from that folder: the processor the checkpoint will ship with is the one that encodes the training data.

    ``zero_projector``: the projector's output layer starts at zero, so image tokens enter the language
    model as zeros. Off by default: it did not keep the vision tower from collapsing at a large learning
    rate (``analyses/results/organism_grid_cpu.md``, run b); a smaller learning rate did.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    tokenizer = word_tokenizer()
    model = LlavaForConditionalGeneration(llava_config(len(tokenizer), image_size=cfg.canvas, patch_size=cfg.patch,
                                                       layers=cfg.layers,
                                                       heads=cfg.heads, kv_heads=cfg.kv_heads, head_dim=cfg.head_dim,
                                                       vision_hidden=cfg.vision_hidden, vision_layers=cfg.vision_layers))
    if cfg.init:
        _load_init(model, Path(cfg.init))
    elif cfg.zero_projector:
        with torch.no_grad():
            model.model.multi_modal_projector.linear_2.weight.zero_()
            model.model.multi_modal_projector.linear_2.bias.zero_()
    save_llava_folder(model, out, tokenizer)
    return model, tokenizer, AutoProcessor.from_pretrained(out)


def from_checkpoint(state: dict, out: Path):
    """The model of a training checkpoint's ``state`` (its config's architecture, its weights), written as an
    organism folder at ``out`` with its tokenizer and processor: ``(model, tokenizer, processor)``."""
    model, tokenizer, processor = build(OrganismConfig(**{**state["config"], "init": ""}), out)  # the weights come from the state
    model.load_state_dict(state["model"])
    save_llava_folder(model, out, tokenizer)
    return model, tokenizer, processor


def _load_init(model, folder: Path) -> None:
    """Start from the weights of the organism in ``folder`` (a stage of a staged recipe, e.g. the spatial
    stage before a patch-loss stage); the architecture must be this config's, tensor for tensor."""
    from transformers import LlavaForConditionalGeneration

    if not (folder / "model.safetensors").is_file():
        raise WorkbenchError(f"init folder {folder} has no model.safetensors", "point --init at a trained organism's folder")
    state, own = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).state_dict(), model.state_dict()
    wrong = sorted(k for k in own if k not in state or state[k].shape != own[k].shape) + sorted(set(state) - set(own))
    if wrong:
        raise WorkbenchError(f"init weights in {folder} do not fit this config's architecture ({len(wrong)} tensors differ, "
                             f"e.g. {wrong[0]})",
                             "use the config the init model was trained with (canvas, patch, layers, heads …)")
    model.load_state_dict(state)
