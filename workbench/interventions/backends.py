"""Choose a backend by name. All three run the same pure edit functions at the same sites.

    nnsight           interventions inside model.trace() (the default)
    torch             plain torch hooks on the loaded model (what apply_scales deploys)
    transformer_lens  TransformerLens 4's TransformerBridge on its own copy, booted from the folder

Each backend has ``last_logits(inputs, interventions=(), grad=False) -> [batch, vocab]``.
"""

from __future__ import annotations

from workbench.errors import WorkbenchError
from workbench.interventions.nnsight_backend import NNsightBackend
from workbench.interventions.torch_hooks import TorchHooksBackend
from workbench.models.load import VLM


def _transformer_lens(vlm: VLM):
    from workbench.interventions.tl_backend import TransformerLensBackend  # imported lazily: heavy

    if vlm.source is None:
        raise WorkbenchError("the TransformerLens backend boots from the model folder, and this model was built in memory",
                             "save it with save_pretrained and load it with load_vlm(folder)")
    return TransformerLensBackend(vlm.source, vlm.site, device=str(vlm.device), dtype=vlm.dtype)


BACKENDS = {"nnsight": NNsightBackend, "torch": TorchHooksBackend, "transformer_lens": _transformer_lens}


def make_backend(vlm: VLM, name: str = "nnsight"):
    if name not in BACKENDS:
        raise WorkbenchError(f"unknown backend {name!r}", f"choose from: {', '.join(BACKENDS)}")
    return BACKENDS[name](vlm)
