"""The auxiliary read-outs: extra losses that shape what the organism learns, used only while training.

Neither is part of a shipped model (a plain ``LlavaForConditionalGeneration``); both are linear layers trained
alongside it by :func:`workbench.lab.train.train` when ``OrganismConfig.patch_loss`` / ``where_loss`` is > 0.
"""

from __future__ import annotations

import torch

from workbench.probes.scenes import PALETTE, SHAPES


class PatchReadout(torch.nn.Module):
    """Auxiliary supervision of the image tokens: linear read-outs of each projected image token
    ``[b, tokens, hidden]`` — *what* it shows (the color and the shape of the object whose center lies in its
    patch, class 0: none; :meth:`Encoded.patch_labels`) and *where* it is (its row and column in the
    patch grid).

    Why: trained on answers alone, the vision tower learns shape slowly and as color–shape
    conjunctions, which fail on the held-out pairs of the evaluation set; separate linear read-outs
    ask every token to carry color, shape and position as separate directions, which is what the
    language model must retrieve and compare to answer a spatial question. The read-outs are used
    only while training and are not part of the shipped model, a plain ``LlavaForConditionalGeneration``."""

    def __init__(self, hidden: int, side: int):
        super().__init__()
        self.side = side
        self.color = torch.nn.Linear(hidden, len(PALETTE) + 1)
        self.shape = torch.nn.Linear(hidden, len(SHAPES) + 1)
        self.row = torch.nn.Linear(hidden, side)
        self.col = torch.nn.Linear(hidden, side)

    def forward(self, tokens: torch.Tensor, color: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """Mean of the four cross-entropies over all tokens (``tokens`` [b, T, hidden]; labels [b, T]; T = side²)."""
        ce = torch.nn.functional.cross_entropy
        t = tokens.float().flatten(0, 1)  # [b·T, hidden]
        where = torch.arange(tokens.shape[1], device=tokens.device).repeat(tokens.shape[0])  # [b·T] token index, row-major
        return (ce(self.color(t), color.flatten()) + ce(self.shape(t), shape.flatten())
                + ce(self.row(t), where // self.side) + ce(self.col(t), where % self.side)) / 4


class WhereReadout(torch.nn.Module):
    """Auxiliary supervision of the language model: linear read-outs of the last position's residual
    stream ``[b, hidden]`` after decoder layer ``where_layer`` predict the row and the column (in the patch
    grid) of the two objects a spatial question names (:meth:`Encoded.named_cells`).

    Why: a spatial answer needs both positions at the last token; learned from the answer alone, fetching
    them and comparing them have to be found together: a long plateau of the spatial tasks
    (``analyses/results/organism_staged_cpu.md``). Asking for the positions half-way up makes fetching a
    task of its own; the comparison is left to the layers above. Used only while training, not shipped;
    it shapes *where* the organism's spatial heads are (at or below ``where_layer``), which is documented
    in the model card."""

    def __init__(self, hidden: int, side: int):
        super().__init__()
        self.heads = torch.nn.Linear(hidden, 4 * side)  # A row, A column, B row, B column: side classes each
        self.side = side

    @staticmethod
    def attach(model, layer: int, seen: dict):
        """A forward hook that keeps decoder layer ``layer``'s output at the last position, ``[b, hidden]``, in
        ``seen["resid"]`` (one slot: every forward overwrites it); returns the hook's handle."""
        return model.model.language_model.layers[layer].register_forward_hook(
            lambda mod, args, out: seen.update(resid=(out[0] if isinstance(out, tuple) else out)[:, -1]))

    def forward(self, resid: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the four targets of the items whose question names two objects (0 if none)."""
        keep = cells[:, 0] >= 0
        if not keep.any():
            return resid.sum() * 0
        logits = self.heads(resid[keep].float()).view(-1, 4, self.side)  # [b', 4, side]
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), cells[keep].flatten())
