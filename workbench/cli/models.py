"""``workbench model``: inspect a model's intervention sites before sweeping it."""

from __future__ import annotations

import typer
from rich.table import Table

from workbench.cli._common import console, friendly
from workbench.models.sites import SITES
from workbench.organism import DEFAULT_MODEL

app = typer.Typer(help="Inspect models and the supported VLM families.", no_args_is_help=True)


@app.command("info")
@friendly
def info(model: str = typer.Argument(str(DEFAULT_MODEL), help="A local model folder or a hub id (default: the organism)."),
         device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:0, …"),
         dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16.")) -> None:
    """Load a model and show its family, layers, query/KV heads, head_dim and fingerprint."""
    from workbench.models.load import load_vlm

    with console.status(f"loading {model}"):
        vlm = load_vlm(model, device=device, dtype=dtype)
    s = vlm.site
    t = Table("field", "value", title=vlm.name)
    for k, v in [("family", s.row.family), ("decoder layers", f"{s.n_layers}  ({s.row.layers})"),
                 ("query heads / layer", str(s.n_heads)), ("key/value heads", str(s.n_kv_heads)), ("head_dim", str(s.head_dim)),
                 ("head site", f"input of {s.row.layers}.<l>.{s.row.attn_out}"), ("MLP site", f"output of {s.row.layers}.<l>.{s.row.mlp}"),
                 ("fingerprint", vlm.fingerprint[:16])]:
        t.add_row(k, v)
    console.print(t)


@app.command("families")
def families() -> None:
    """List the supported VLM families (the sites table)."""
    t = Table("family", "model_type", "decoder layers", "o_proj", "mlp", "example")
    for r in SITES:
        t.add_row(r.family, ", ".join(r.model_types), r.layers, r.attn_out, r.mlp, r.example)
    console.print(t)
