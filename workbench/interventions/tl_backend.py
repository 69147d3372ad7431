"""The TransformerLens backend: the same interventions through TransformerLens 4's TransformerBridge.

An independent implementation path — a different library's hook points on a separately loaded
copy of the model — used as an oracle for the nnsight backend and selectable by users who
prefer TransformerLens. Per-head outputs are ``blocks.{l}.attn.hook_z`` (``[batch, seq, head,
head_dim]``, the input of ``o_proj``; query heads under grouped-query attention) and MLP outputs
``blocks.{l}.hook_mlp_out`` (the MLP's contribution to the residual stream: the ``mlp`` output, or
in Gemma 3 the ``post_feedforward_layernorm`` output — the same site as the sites table's row); both
are edited with the same pure functions as every other backend.

The bridge wraps (and re-parents) the modules of the model it is given, so this backend boots its
own copy from the model folder rather than sharing the nnsight model. Tested against nnsight (per-head
α = 0 effects within 1e-4 relative, plus MLP scales) on LLaVA-1.5, LLaVA-NeXT, Idefics3, Gemma 3 and
LLaVA-OneVision (tests/integration/test_oracles.py, test_llava_folder.py). Refused in one line:
a folder whose architecture TransformerLens has no adapter for (TransformerLens 4.3: Qwen2-VL,
PaliGemma, InternVL, SmolVLM2, Mllama), and adapters whose optional libraries are missing (its
Qwen2.5-VL and Qwen3-VL adapters need torchvision).

Booting never installs anything: TransformerLens 4.3 runs ``pip install torchvision`` when a
folder's processor fails to load; that fallback is switched off here (the bridge does not need the
processor — inputs come from ``build_batch``).

Position ids: the bridge derives them from the attention mask (``cumsum − 1``); the transformers
forward uses ``0 … seq−1`` for every row. Under RoPE only relative positions matter, so the two
agree to ~1e-6 on left-padded batches; pass ``position_ids`` to both for bit-exact agreement.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.interventions.attention import check_backend
from workbench.interventions.backends import hook_layers
from workbench.interventions.core import Intervention, edit_heads, edit_mlp, prepare
from workbench.models.sites import Site


def check_adapter(folder: str | Path) -> None:
    """Refuse, in one line, a folder whose ``architectures`` TransformerLens has no adapter for."""
    import json
    from importlib.metadata import version

    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    config = Path(folder) / "config.json"
    if not config.is_file():
        return  # boot_transformers says what is missing
    archs = json.loads(config.read_text()).get("architectures") or []
    if archs and not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise WorkbenchError(f"TransformerLens {version('transformer-lens')} has no adapter for {', '.join(archs)}",
                             "use the torch backend (the default) or the nnsight backend for this family")


@contextmanager
def _no_pip_install():
    """Switch off TransformerLens's on-the-fly ``pip install torchvision`` while booting (see the module docstring)."""
    try:
        from transformer_lens.model_bridge.sources.transformers import helpers
    except ImportError:
        yield
        return
    original = getattr(helpers, "_ensure_torchvision", None)
    if original is None:
        yield
        return

    def importable_only() -> bool:
        return importlib.util.find_spec("torchvision") is not None

    helpers._ensure_torchvision = importable_only
    try:
        yield
    finally:
        helpers._ensure_torchvision = original


class TransformerLensBackend:
    """A :class:`~workbench.interventions.backends.Backend` over TransformerLens's bridge of a model folder."""

    name = "transformer_lens"

    def __init__(self, folder: str | Path, site: Site, device: str = "cpu", dtype: torch.dtype = torch.float32):
        from transformer_lens.model_bridge import TransformerBridge

        if not Path(folder).is_dir():
            raise WorkbenchError(f"the TransformerLens backend needs a model folder, got {folder!r}",
                                 "load the model from a local folder (or use the nnsight backend)")
        check_adapter(folder)
        try:
            with _no_pip_install():
                self.bridge = TransformerBridge.boot_transformers(str(folder), device=device, dtype=dtype)
        except (ValueError, KeyError, NotImplementedError, ImportError) as e:
            raise WorkbenchError(f"TransformerLens cannot bridge {folder}: {str(e).splitlines()[0]}",
                                 "use the nnsight backend for this architecture") from e
        self.site = site
        if (self.bridge.cfg.n_layers, self.bridge.cfg.n_heads) != site.shape:
            raise WorkbenchError(f"TransformerLens sees {self.bridge.cfg.n_layers}×{self.bridge.cfg.n_heads} heads, "
                                 f"the sites table {site.shape[0]}×{site.shape[1]}", "report this architecture")

    def last_logits(self, inputs: dict[str, torch.Tensor], interventions: Sequence[Intervention] = (),
                    grad: bool = False) -> torch.Tensor:
        site = self.site
        check_backend(interventions, self.name)  # edges live in the attention function, which only the torch backend edits
        heads, mlps = prepare(interventions, site, inputs)
        hooks = []
        for layer, at_heads, at_mlp in hook_layers(heads, mlps, site.n_layers):
            if at_heads:
                hooks.append((f"blocks.{layer}.attn.hook_z", lambda z, hook, layer=layer: edit_heads(z, layer, interventions)))
            if at_mlp:
                hooks.append((f"blocks.{layer}.hook_mlp_out", lambda y, hook, layer=layer: edit_mlp(y, layer, interventions)))
        kwargs = {k: v for k, v in inputs.items() if k != "input_ids"}
        with torch.set_grad_enabled(grad):
            logits = self.bridge.run_with_hooks(inputs["input_ids"], fwd_hooks=hooks, **kwargs)
        return logits[:, -1]
