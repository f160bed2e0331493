"""The `madtp-deploy` command: parse, call the library, render. No logic lives here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import MadtpError

console = Console()


class _App(typer.Typer):
    """Any MadtpError becomes one line on stderr and exit code 2, never a traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except MadtpError as exc:
            print(f"madtp-deploy: error: {exc}", file=sys.stderr)
            sys.exit(2)


app = _App(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
           help="Export, validate and benchmark MADTP token-pruned CLIP models.")



@app.callback()
def _root() -> None:
    """Export, validate and benchmark MADTP token-pruned CLIP models."""


MODEL_HELP = "spec name, checkpoint file, HF CLIP directory, or 'shipped'"


@app.command()
def info(model: str = typer.Argument("shipped", help=MODEL_HELP)) -> None:
    """Print a model's spec, parameter count and dense GFLOPs in both conventions."""
    from . import flops, load

    m = load(model)
    s = m.spec
    table = Table(title=f"{s.name}  (temperature {m.temperature:g})")
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in s.to_dict().items():
        table.add_row(key, str(value))
    table.add_row("parameters", f"{sum(p.numel() for p in m.parameters()):,}")
    img = flops.image_flops(s, flops.dense_image_kept(s), pruning=False)
    txt = flops.text_flops(s, flops.dense_text_kept(s)[:, 0], flops.dense_text_kept(s), pruning=False)
    table.add_row("image GFLOPs (2/MAC, dense)", f"{img.gflops.item():.4f}")
    table.add_row("image GMACs (reference 'GFLOPs', dense)", f"{img.gmacs.item():.4f}")
    table.add_row(f"text GFLOPs (2/MAC, dense, {s.context_length} tokens)", f"{txt.gflops.item():.4f}")
    table.add_row(f"text GMACs (reference 'GFLOPs', dense)", f"{txt.gmacs.item():.4f}")
    console.print(table)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
