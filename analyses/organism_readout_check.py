"""Does an organism's vision tower encode shape apart from color? Its patch read-outs, on the held-out set.

A run trained with the auxiliary patch loss (``--patch-loss``) keeps linear read-outs of the color and the
shape of the object each image token shows (``workbench.lab.readouts.PatchReadout``), fitted on
*training* color–shape pairs only. Applied to the tokens of the fixed evaluation set, split by whether the
object's pair was seen in training or held out, they answer the question behind the control targets: a
tower that encodes shape as a direction of its own reads a held-out pair's shape as well as a seen one's;
a tower that encodes color–shape *conjunctions* fails on held-out pairs — and so does the language model
that reads it (the color, shape, count and exists tasks all name or ask for shape).

    python analyses/organism_readout_check.py /tmp/org17/e.ckpt /tmp/org18/g.ckpt

Prints one table row per checkpoint: object tokens of seen and held-out pairs, and the read-outs'
color and shape accuracy on each; for a run with the language model's read-out (``--where-loss``), the
share of the spatial questions whose two named objects' rows and columns it reads all right ("named
cells"). Runs on CPU in seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch


def check(path: Path) -> dict[str, float]:
    from workbench.lab.checkpoint import load_checkpoint
    from workbench.lab.config import OrganismConfig
    from workbench.lab.data import color_token_table, encode
    from workbench.lab.model import from_checkpoint
    from workbench.lab.readouts import PatchReadout, WhereReadout
    from workbench.organism.probesets import eval_probes
    from workbench.probes.scenes import PALETTE, SHAPES

    state = load_checkpoint(path)
    if not state.get("readout"):
        raise SystemExit(f"{path}: this checkpoint has no patch read-outs (trained without --patch-loss)")
    cfg = OrganismConfig(**state["config"])
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, processor = from_checkpoint(state, Path(tmp) / "m")
    model.eval()
    readout = PatchReadout(model.config.text_config.hidden_size, cfg.canvas // cfg.patch)
    readout.load_state_dict(state["readout"], strict=False)  # run d (color and shape only) predates the row and column read-outs
    probes = eval_probes(cfg.seed, cfg)
    data = encode(processor, probes)
    idx = torch.arange(len(data.tasks))
    with torch.no_grad():
        tokens = torch.stack(list(model.model.get_image_features(pixel_values=data.pixel_values(idx)).pooler_output)).float()
        color_hat, shape_hat = readout.color(tokens).argmax(-1), readout.shape(tokens).argmax(-1)  # [n, T]
    color, shape = data.patch_labels(idx, cfg.patch, cfg.patch_reach)  # [n, T]; class 0: no object
    held = torch.zeros_like(color, dtype=torch.bool)
    for c, s in probes.info["heldout_pairs"]:
        held |= (color == list(PALETTE).index(c) + 1) & (shape == SHAPES.index(s) + 1)
    seen = (color > 0) & ~held
    row = {"step": state["step"], "where": float("nan")}
    if state.get("where"):  # the language model's read-out: both named objects' row and column, all four right
        where = WhereReadout(model.config.text_config.hidden_size, cfg.canvas // cfg.patch)
        where.load_state_dict(state["where"])
        cells = data.named_cells(idx, cfg.patch, color_token_table(tokenizer))
        slot = {}
        hook = WhereReadout.attach(model, cfg.where_layer, slot)
        with torch.no_grad():
            model(**data.batch(idx, torch.device("cpu")), logits_to_keep=1)
        hook.remove()
        keep = cells[:, 0] >= 0
        guess = where.heads(slot["resid"][keep].float()).view(-1, 4, where.side).argmax(-1)
        row["where"] = float((guess == cells[keep]).all(1).float().mean())
    for name, m in (("seen", seen), ("held-out", held)):
        row[f"{name} tokens"] = int(m.sum())
        row[f"{name} color"] = float((color_hat == color)[m].float().mean())
        row[f"{name} shape"] = float((shape_hat == shape)[m].float().mean())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="training checkpoints (.ckpt) of runs with --patch-loss")
    args = parser.parse_args()
    print("| run | step | seen-pair tokens | color | shape | held-out-pair tokens | color | shape | named cells |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in args.checkpoints:
        r = check(Path(p))
        named = "—" if r["where"] != r["where"] else f"{100 * r['where']:.1f}%"  # nan: no language-model read-out
        print(f"| {p} | {r['step']} | {r['seen tokens']} | {100 * r['seen color']:.1f}% | {100 * r['seen shape']:.1f}% "
              f"| {r['held-out tokens']} | {100 * r['held-out color']:.1f}% | {100 * r['held-out shape']:.1f}% | {named} |")
    return 0


if __name__ == "__main__":
    from workbench.errors import WorkbenchError

    try:
        sys.exit(main())
    except WorkbenchError as e:  # a bad checkpoint or pool: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
