"""Choose a backend by name. All three run the same pure edit functions at the same sites.

    torch             plain torch hooks on the loaded model (the default: what apply_scales deploys, and the fastest)
    nnsight           interventions inside model.trace()
    transformer_lens  TransformerLens 4's TransformerBridge on its own copy, booted from the folder

Every backend is a :class:`Backend`: ``last_logits(inputs, interventions=(), grad=False) -> [batch, vocab]``,
the logits at the last position with the interventions applied. Which layers a backend hooks is
:func:`hook_layers`'s answer, the same for all of them: a layer gets a head hook only when some
intervention edits its heads, an MLP hook only when some edits its MLP (every layer when an intervention
covers all of them), so an intervention on layer 3 costs two hooks, not two per layer. The oracle tests
(tests/integration/test_oracles.py) hold the three to the same numbers.

The backend modules are imported when a backend is made: nnsight and TransformerLens take seconds to import,
and a caller that asks for the torch backend needs neither.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import torch

    from workbench.interventions.core import Intervention
    from workbench.models.load import VLM

DEFAULT_BACKEND = "torch"


@runtime_checkable
class Backend(Protocol):
    """What :func:`make_backend` returns: a name and the intervened last-position logits."""

    name: str

    def last_logits(self, inputs: dict[str, torch.Tensor], interventions: Sequence[Intervention] = (),
                    grad: bool = False) -> torch.Tensor:
        """Logits ``[batch, vocab]`` at the last position of the left-padded batch ``inputs``."""
        ...


def hook_layers(heads: Sequence[int] | None, mlps: Sequence[int] | None, n_layers: int) -> Iterator[tuple[int, bool, bool]]:
    """``(layer, hook its heads, hook its MLP)`` for every layer that needs a hook, in execution order.

    ``heads`` / ``mlps`` are :func:`~workbench.interventions.core.prepare`'s answer: the layers whose heads / MLP
    some intervention edits, or None when some intervention edits every layer. A layer that needs neither is
    skipped. For example ``hook_layers([1], [], 3)`` → ``(1, True, False)`` only; ``hook_layers(None, [2], 3)`` →
    ``(0, True, False), (1, True, False), (2, True, True)``."""
    head_set = None if heads is None else set(heads)
    mlp_set = None if mlps is None else set(mlps)
    for layer in range(n_layers):
        at_heads = head_set is None or layer in head_set
        at_mlp = mlp_set is None or layer in mlp_set
        if at_heads or at_mlp:
            yield layer, at_heads, at_mlp


def _torch(vlm: VLM) -> Backend:
    from workbench.interventions.torch_hooks import TorchHooksBackend

    return TorchHooksBackend(vlm)


def _nnsight(vlm: VLM) -> Backend:
    from workbench.interventions.nnsight_backend import NNsightBackend

    return NNsightBackend(vlm)


def _transformer_lens(vlm: VLM) -> Backend:
    from workbench.interventions.tl_backend import TransformerLensBackend

    if vlm.source is None:
        raise WorkbenchError("the TransformerLens backend boots from the model folder, and this model was built in memory",
                             "save it with save_pretrained and load it with load_vlm(folder)")
    return TransformerLensBackend(vlm.source, vlm.site, device=str(vlm.device), dtype=vlm.dtype)


BACKENDS = {"torch": _torch, "nnsight": _nnsight, "transformer_lens": _transformer_lens}


def make_backend(vlm: VLM, name: str = DEFAULT_BACKEND) -> Backend:
    """The backend called ``name`` over ``vlm`` (see the module docstring for the three)."""
    if name not in BACKENDS:
        raise WorkbenchError(f"unknown backend {name!r}", f"choose from: {', '.join(BACKENDS)}")
    return BACKENDS[name](vlm)
