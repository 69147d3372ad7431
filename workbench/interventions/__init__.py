"""Interventions on attention heads and MLPs, and the backends that apply them.

    core             HeadScale, MeanAblation, MlpScale; edit_heads / edit_mlp (pure functions)
    nnsight_backend  NNsightBackend: interventions inside model.trace()
    torch_hooks      hooked(): plain torch hooks, for deployment and as a reference
    tl_backend       TransformerLensBackend: the same through TransformerLens 4's TransformerBridge
"""

from workbench.interventions.core import HeadScale, MeanAblation, MlpScale, edit_heads, edit_mlp

__all__ = ["HeadScale", "MeanAblation", "MlpScale", "edit_heads", "edit_mlp"]
