"""``workbench organism``: use the shipped organism. ``eval`` scores a model on its fixed held-out set.

Making organisms (training, pools, checkpoints, the planted deficit) is ``workbench lab`` (:mod:`workbench.cli.lab`);
``organism train`` and ``organism plant`` remain as hidden names of ``lab train`` and ``lab plant``.
"""

from __future__ import annotations

import typer

from workbench.cli._common import friendly
from workbench.cli.lab import ALIASES, print_scores
from workbench.organism import DEFAULT_MODEL

app = typer.Typer(help="Use the shipped organism (a small LLaVA) and its planted-deficit copy: evaluate them. "
                       "Training and planting: `workbench lab`.", no_args_is_help=True)


@app.command("eval")
@friendly
def eval_cmd(model: str = typer.Option(str(DEFAULT_MODEL), "--model", help="Model folder or hub id (default: the organism)."),
             seed: int = typer.Option(0, "--seed", help="Seed of the evaluation set.")) -> None:
    """Accuracy per task and relation on the fixed 500-probe held-out evaluation set."""
    from workbench.evaluation import score
    from workbench.models.load import load_vlm
    from workbench.organism.probesets import eval_probes

    s = score(load_vlm(model, attn_implementation="eager"), eval_probes(seed))
    print_scores({"accuracy": {**s.by_task(), **{f"spatial/{k}": v for k, v in s.by_relation().items()}}})


for _name, _command in ALIASES.items():
    app.command(_name, hidden=True)(_command)
