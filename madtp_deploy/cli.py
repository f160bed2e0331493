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
    table.add_row("text GMACs (reference 'GFLOPs', dense)", f"{txt.gmacs.item():.4f}")
    console.print(table)


@app.command()
def export(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
           output: Path = typer.Option(Path("export"), "--output", help="output folder"),
           mode: str = typer.Option("invariant", "--mode", help="invariant (batch-independent) or reference (max-keep)"),
           opset: int = typer.Option(20, "--opset", help="ONNX opset (dynamo exporter: 18 and up)"),
           max_batch: int = typer.Option(64, "--max-batch", help="largest batch the graph accepts"),
           temperature: Optional[float] = typer.Option(None, "--temperature", help="override the checkpoint's"),
           name: Optional[str] = typer.Option(None, "--name", help="file stem (default: the spec name)"),
           check_trt: bool = typer.Option(False, "--check-trt", help="also report TensorRT compatibility"),
           no_validate: bool = typer.Option(False, "--no-validate", help="skip validation against eager")) -> None:
    """Export the image and text encoders to ONNX with pruning inside the graph, then validate."""
    from . import load
    from .onnx.export import check_opset, check_output_dir, export_model

    check_opset(opset)
    check_output_dir(output)
    m = load(model, mode=mode, temperature=temperature)
    paths = export_model(m, output, name or m.spec.name, source=str(model), opset=opset, max_batch=max_batch,
                         validate=not no_validate, log=console.print)
    for p in paths:
        console.print(f"wrote {p}")
    if check_trt:
        for p in paths:
            if p.suffix == ".onnx":
                _print_trt_report(p)


def _print_trt_report(path: Path) -> None:
    from .trt.check import report

    r = report(path)
    console.print(f"[bold]TensorRT compatibility of {path.name}[/]: {r['would_fail']} would fail, "
                  f"{r['warnings']} warnings ({r['source']})")
    for f in r["findings"]:
        console.print(f"  {f['level']:5} {f['op']:12} {f['node']}: {f['why']}")


@app.command()
def validate(file: Path = typer.Argument(..., help="an exported .onnx file (its .json sidecar beside it)"),
             check_trt: bool = typer.Option(False, "--check-trt")) -> None:
    """Re-run onnxruntime against eager PyTorch for an exported file."""
    from .onnx.validate import validate_file

    r = validate_file(file, log=console.print)
    if check_trt:
        _print_trt_report(file)
    raise typer.Exit(0 if r["passed"] else 1)


@app.command("make-data")
def make_data(output: Path = typer.Option(Path("data/scenes"), "--output"),
              n_train: int = typer.Option(4000, "--train"), n_val: int = typer.Option(300, "--val"),
              n_test: int = typer.Option(500, "--test"), seed: int = typer.Option(0, "--seed")) -> None:
    """Generate the seeded shapes-and-relations retrieval task in BLIP's annotation format."""
    from .data import scenes

    root = scenes.generate(output, n_train, n_val, n_test, seed)
    console.print(f"wrote {root} (train {n_train}, val {n_val}, test {n_test} images, seed {seed})")


@app.command()
def train(data: Path = typer.Option(..., "--data", help="dataset folder (*_train.json, *_val.json)"),
          output: Path = typer.Option(..., "--output", help="run folder: madtp.pt, model.safetensors, last.pt"),
          init: str = typer.Option("madtp-clip-tiny", "--init", help=MODEL_HELP),
          reduce: float = typer.Option(0.0, "--reduce", help="fraction of GFLOPs to remove (0 = dense)"),
          epochs: int = typer.Option(5, "--epochs"), batch_size: int = typer.Option(64, "--batch-size"),
          lr: float = typer.Option(5e-4, "--lr"), weight_decay: float = typer.Option(0.2, "--wd"),
          mode: str = typer.Option("invariant", "--mode"), control_every: int = typer.Option(0, "--control-every"),
          max_steps: int = typer.Option(0, "--max-steps"), seed: int = typer.Option(0, "--seed"),
          resume: bool = typer.Option(False, "--resume"),
          tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="HF tokenizer dir or BPE .txt.gz")) -> None:
    """Dense CLIP training, or MADTP compression to a GFLOPs target (--reduce P)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .errors import UsageError
    from .train.trainer import TrainConfig, train as run

    if not 0.0 <= reduce < 1.0:
        raise UsageError(f"--reduce {reduce}: must be in [0, 1); fix: e.g. --reduce 0.5")
    cfg = TrainConfig(data=str(data), output=str(output), init=init, reduce=reduce, epochs=epochs,
                      batch_size=batch_size, lr=lr, weight_decay=weight_decay, mode=mode,
                      control_every=control_every, max_steps=max_steps, seed=seed, resume=resume,
                      tokenizer=str(tokenizer) if tokenizer else None)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=console,
                  disable=not console.is_terminal) as progress:
        r = run(cfg, log=console.print, progress=progress)
    console.print(f"done: GFLOPs/pair {r['gflops_current']:.4f} (target {r['gflops_target']:.4f}, "
                  f"dense {r['gflops_dense']:.4f}), temperature {r['temperature']:.3f}")


@app.command("eval")
def eval_(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
          data: Path = typer.Option(..., "--data", help="dataset folder"),
          split: str = typer.Option("test", "--split"), batch_size: int = typer.Option(64, "--batch-size"),
          mode: str = typer.Option("invariant", "--mode"),
          temperature: Optional[float] = typer.Option(None, "--temperature"),
          tokenizer: Optional[Path] = typer.Option(None, "--tokenizer"),
          json_out: Optional[Path] = typer.Option(None, "--json")) -> None:
    """Retrieval recall@1/5/10 both ways, per-instance GFLOPs and kept tokens per layer."""
    import json

    from . import load
    from .data import dataset
    from .evaluate import evaluate
    from .files import write_text_atomic

    m = load(model, mode=mode, temperature=temperature)
    s = dataset.load(data, split)
    r = evaluate(m, s, dataset.tokenizer_for(data, m.spec, tokenizer), batch_size)
    r["model"], r["split"] = model, str(s.annotation)
    table = Table(title=f"{model} on {s.annotation.name} ({mode}, batch {batch_size}, T {m.temperature:g})")
    for k in ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10"):
        table.add_column(k, justify="right")
    table.add_column("GFLOPs/pair", justify="right")
    table.add_column("reduction", justify="right")
    table.add_row(*[f"{r[k]:.2f}" for k in ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10")],
                  f"{r['gflops_per_pair']:.4f}", f"{100 * r['gflops_reduction']:.1f}%")
    console.print(table)
    console.print(f"kept image tokens per layer: {[round(v, 1) for v in r['kept_image_per_layer']]}")
    if json_out:
        write_text_atomic(json_out, json.dumps(r, indent=2))


@app.command()
def bench(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
          onnx: Optional[Path] = typer.Option(None, "--onnx", help="an exported pruned image .onnx to time"),
          batch_sizes: str = typer.Option("1,8,32", "--batch-sizes"),
          backend: Optional[str] = typer.Option(None, "--backend", help="comma list; default: all available"),
          mode: str = typer.Option("invariant", "--mode", help="invariant or reference (max-keep)"),
          temperature: Optional[float] = typer.Option(None, "--temperature"),
          data: Optional[Path] = typer.Option(None, "--data", help="dataset folder (default: generated scenes)"),
          warmup_s: float = typer.Option(1.0, "--warmup-s"), min_runs: int = typer.Option(10, "--min-runs"),
          json_out: Optional[Path] = typer.Option(None, "--json"),
          markdown_out: Optional[Path] = typer.Option(None, "--markdown"),
          plot_out: Optional[Path] = typer.Option(None, "--plot")) -> None:
    """Latency, throughput, per-instance GFLOPs and memory: dense vs pruned, backend vs backend."""
    import json

    from rich.progress import BarColumn, Progress, TextColumn

    from .bench import report as rep
    from .files import write_text_atomic
    from .bench.runner import BenchConfig, parse_backends, parse_batch_sizes, run_bench

    cfg = BenchConfig(model=model, onnx=str(onnx) if onnx else None, batch_sizes=parse_batch_sizes(batch_sizes),
                      backends=parse_backends(backend), mode=mode, temperature=temperature,
                      data=str(data) if data else None, warmup_s=warmup_s, min_runs=min_runs)
    with Progress(TextColumn("{task.description}"), BarColumn(), console=console, transient=True) as progress:
        r = run_bench(cfg, log=console.print, progress=progress)
    rep.validate_report(r)
    console.print(rep.rich_table(r))
    for c in r["comparisons"]:
        console.print(f"{c['backend']:>14} batch {c['batch']:>3}: pruned speedup {c['speedup']:.2f}x at "
                      f"{c['gflops_ratio']:.2f}x fewer GFLOPs ({c['speedup_over_gflops_ratio']:.2f} of the ratio)")
    for name, why in r["unavailable_backends"].items():
        console.print(f"not run: {name}: {why}", markup=False)
    if json_out:
        write_text_atomic(json_out, json.dumps(r, indent=2))
    if markdown_out:
        write_text_atomic(markdown_out, rep.markdown(r))
    if plot_out:
        rep.plot(r, plot_out)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
