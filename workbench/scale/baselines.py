"""Baselines in the ScAle harness: LoRA and (IA)³ through peft, and ScAle on random heads.

Each is trained by the same :func:`workbench.scale.train.fit` loop (same loss, optimizer, splits,
early stopping and seeds) so that the only difference is *what* is trained, and each reports its
number of trainable parameters. LoRA and (IA)³ modify modules, so they work on a deep copy of the
model (for a 7B model that copy costs its size in memory; on the organism it is 9 MB).

Target modules are regular expressions over module names, restricted to the language model:
LoRA's default is every linear layer of the decoder (q, k, v, o, gate, up, down) at rank 1, as in
the ScAle paper's comparison; (IA)³ rescales keys, values and the MLP's down projection.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from workbench.errors import WorkbenchError
from workbench.models.load import VLM
from workbench.probes.probeset import ProbeSet
from workbench.scale.train import TrainConfig, fit, train_scales
from workbench.scale.vector import ScaleVector

LM_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
IA3_TARGETS = r".*language_model.*\.(k_proj|v_proj|down_proj)$"
IA3_FEEDFORWARD = r".*language_model.*\.down_proj$"


def clone_model(vlm: VLM) -> VLM:
    """A deep copy of the model (for baselines that change modules), sharing nothing with ``vlm``."""
    return VLM(model=copy.deepcopy(vlm.model), processor=vlm.processor, site=vlm.site, nn=None, name=vlm.name, source=vlm.source)


@dataclass
class Adapted:
    """A baseline after training: the adapted model (a copy), its parameter count and history."""

    method: str
    vlm: VLM
    n_params: int
    history: dict = field(default_factory=dict)


def _peft_fit(vlm: VLM, probes: ProbeSet, peft_config, method: str, cfg: TrainConfig,
              progress: Callable[[dict], None] | None) -> Adapted:
    from peft import get_peft_model

    copy = clone_model(vlm)
    model = get_peft_model(copy.model, peft_config)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise WorkbenchError(f"{method}: the target modules matched nothing in this model",
                             "check --targets against the module names")
    adapted = VLM(model=model, processor=vlm.processor, site=vlm.site, nn=None, name=f"{vlm.name}+{method}", source=vlm.source)

    def forward(inputs: dict) -> torch.Tensor:
        return model(**inputs).logits[:, -1]

    model.train()
    history = fit(adapted, probes, forward, params, cfg, progress=progress)
    model.eval()
    return Adapted(method, adapted, sum(p.numel() for p in params), history)


def train_lora(vlm: VLM, probes: ProbeSet, cfg: TrainConfig = TrainConfig(), rank: int = 1, alpha: float | None = None,
               targets: str = LM_LINEAR, progress: Callable[[dict], None] | None = None) -> Adapted:
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else 2 * rank, lora_dropout=0.0, target_modules=targets,
                        init_lora_weights=True)
    return _peft_fit(vlm, probes, config, f"lora-r{rank}", cfg, progress)


def train_ia3(vlm: VLM, probes: ProbeSet, cfg: TrainConfig = TrainConfig(), targets: str = IA3_TARGETS,
              feedforward: str = IA3_FEEDFORWARD, progress: Callable[[dict], None] | None = None) -> Adapted:
    from peft import IA3Config

    return _peft_fit(vlm, probes, IA3Config(target_modules=targets, feedforward_modules=feedforward), "ia3", cfg, progress)


def random_heads(shape: tuple[int, int], k: int, seed: int) -> list[tuple[int, int]]:
    """``k`` distinct (layer, head) pairs drawn with ``seed``."""
    n_layers, n_heads = shape
    if not 0 < k <= n_layers * n_heads:
        raise WorkbenchError(f"cannot draw {k} heads from {n_layers * n_heads}", f"pass 1 to {n_layers * n_heads}")
    pairs = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    return sorted(random.Random(seed).sample(pairs, k))


def train_random_heads(vlm: VLM, probes: ProbeSet, k: int, cfg: TrainConfig = TrainConfig(),
                       progress: Callable[[dict], None] | None = None) -> ScaleVector:
    """ScAle restricted to ``k`` random heads (attention only): the control for a discovered head set of size k."""
    return train_scales(vlm, probes, replace(cfg, mode="attn"), heads=random_heads(vlm.site.shape, k, cfg.seed),
                        progress=progress)
