"""``workbench model``: inspect a model's intervention sites before sweeping it."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from workbench.cli._common import console, friendly
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
                 *_site_rows(s), ("processor", _processor_line(vlm.processor)), ("fingerprint", vlm.fingerprint[:16])]:
        t.add_row(k, v)
    console.print(t)


def _site_rows(s) -> list[tuple[str, str]]:
    """The head and MLP sites, one pair of rows per layer kind (Mllama's cross-attention layers have their own)."""
    from workbench.models.sites import DEFAULT_KIND

    kinds = [(DEFAULT_KIND, s.row.attn_out, s.row.mlp)] + [(k.name, k.attn_out, k.mlp) for k in s.row.other_kinds]
    out = []
    for name, attn_out, mlp in kinds:
        layers = s.layers_of_kind(name)
        if not layers:
            continue
        where = "" if len(kinds) == 1 else f" ({name}: layers {', '.join(map(str, layers))})"
        out += [(f"head site{where}", f"input of {s.row.layers}.<l>.{attn_out}"),
                (f"MLP site{where}", f"output of {s.row.layers}.<l>.{mlp}")]
    return out


def _processor_line(processor) -> str:
    """The processor class and its image processor; says when the video part is missing (no torchvision)."""
    from workbench.models.load import VideoUnavailable

    if processor is None:
        return "none"
    image = type(getattr(processor, "image_processor", None)).__name__
    video = isinstance(getattr(processor, "video_processor", None), VideoUnavailable)
    return f"{type(processor).__name__} ({image}{'; no video: torchvision is not installed' if video else ''})"


@app.command("families")
def families() -> None:
    """List the supported VLM families (the sites table)."""
    from workbench.models.sites import SITES

    t = Table("family", "model_type", "decoder layers", "o_proj", "mlp", "example")
    for r in SITES:
        t.add_row(r.family, ", ".join(r.model_types), r.layers, r.attn_out_paths().replace("; ", "\n"), r.mlp, r.example)
    wide = console if console.is_terminal else Console(width=220)  # piped: module paths and hub ids whole, never cut with "…"
    wide.print(t)
