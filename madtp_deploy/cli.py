"""The `madtp-deploy` command: parse, call the library, render. No logic lives here."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

import typer
import typer.core
from rich.console import Console
from rich.table import Table

from .capacity import DEFAULT_QUANTILE as DEFAULT_CAPACITY_QUANTILE
from .errors import MadtpError
from .modes import SERVING_DEFAULT, Mode

console = Console()


def _debug() -> bool:
    return os.environ.get("MADTP_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int = 2, exc: BaseException | None = None):
    if exc is not None and _debug():
        traceback.print_exception(exc)
    print(f"madtp-deploy: error: {message}", file=sys.stderr)  # noqa: T201 - the CLI's one error line
    sys.exit(code)


class _Group(typer.core.TyperGroup):
    """Every expected error ends the same way (also under typer's CliRunner): a MadtpError or a bad
    option (click's own parse errors) becomes one line on stderr and its exit code (2, or 1 for a wrong
    artifact); the traceback only with --debug (or MADTP_DEBUG=1). Anything else is a bug: it keeps its
    traceback."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            rc = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except MadtpError as exc:
            _fail(str(exc), exc.exit_code, exc)
        except typer.exceptions.TyperException as exc:  # typer's (vendored click's) parse errors
            ctx = getattr(exc, "ctx", None)
            where = f"`{ctx.command_path} --help`" if ctx is not None else "`madtp-deploy --help`"
            message = " ".join(exc.format_message().split()) if hasattr(exc, "format_message") else str(exc)
            _fail(f"{message.rstrip('.')}; fix: see {where}", getattr(exc, "exit_code", 2))
        except typer.Abort:
            _fail("interrupted", 130)
        if standalone_mode:
            sys.exit(rc or 0)
        return rc


class _App(typer.Typer):
    """Any MadtpError becomes one line on stderr and its exit code, never a traceback (but with --debug)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except MadtpError as exc:
            _fail(str(exc), exc.exit_code, exc)


app = _App(cls=_Group, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
           help="Export, validate and benchmark MADTP token-pruned CLIP and BLIP models.")



@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="print the traceback of an error (also MADTP_DEBUG=1)")
          ) -> None:
    """Export, validate and benchmark MADTP token-pruned CLIP and BLIP models."""
    if debug:
        os.environ["MADTP_DEBUG"] = "1"


@app.command("families")
def families_() -> None:
    """The registered model families, their graphs and the features each supports."""
    from . import families

    table = Table(title="model families")
    for col in ("family", "title", "encoders", "data", "features"):
        table.add_column(col)
    for row in families.table():
        table.add_row(row["family"], row["title"], ", ".join(row["encoders"]), row["data"], ", ".join(row["features"]))
    console.print(table)


MODEL_HELP = "spec name, checkpoint file, HF CLIP directory, or 'shipped'"


@app.command()
def info(model: str = typer.Argument("shipped", help=MODEL_HELP)) -> None:
    """Print a model's spec, parameter count and dense GFLOPs in both conventions."""
    from . import load

    from . import families

    m = load(model)
    table = Table(title=f"{m.spec.name}  ({families.of(m).title}, temperature {m.temperature:g})")
    table.add_column("field")
    table.add_column("value", justify="right")
    for row in families.of(m).hook("describe")(m):
        table.add_row(*row)
    console.print(table)


@app.command()
def export(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
           output: Path = typer.Option(Path("export"), "--output", help="output folder"),
           mode: Mode = typer.Option(SERVING_DEFAULT, "--mode", help="packed (default: batch-independent, fastest), invariant (padded) or reference (max-keep)"),
           opset: int = typer.Option(20, "--opset", help="ONNX opset (dynamo exporter: 18 and up)"),
           max_batch: int = typer.Option(64, "--max-batch", help="largest batch the graph accepts"),
           temperature: Optional[float] = typer.Option(None, "--temperature", help="override the checkpoint's"),
           name: Optional[str] = typer.Option(None, "--name", help="file stem (default: the spec name)"),
           check_trt: bool = typer.Option(False, "--check-trt", help="also report TensorRT compatibility"),
           no_validate: bool = typer.Option(False, "--no-validate", help="skip validation against eager"),
           shapes: str = typer.Option("dynamic", "--shapes", help="dynamic (data-dependent token counts) or static "
                                      "(a fixed slot capacity per layer, for engines)"),
           capacity_quantile: float = typer.Option(DEFAULT_CAPACITY_QUANTILE, "--capacity-quantile",
                                                   help="static: each layer's capacity is this quantile of its keep counts"),
           calibration_data: Optional[Path] = typer.Option(None, "--calibration-data",
                                                            help="static: dataset folder whose test split sets the "
                                                                 "capacities (default: generated scenes)"),
           calibration_samples: int = typer.Option(256, "--calibration-samples", help="static: inputs per encoder"),
           calibration_dir: Path = typer.Option(Path("calibration"), "--calibration-dir",
                                                help="static: where the capacity profiles are written"),
           fmt: str = typer.Option("onnx", "--format", help="onnx, or aoti (AOTInductor .pt2 packages for "
                                   "engines/cpp and the aoti runtime, compiled for this CPU)")) -> None:
    """Export the image and text encoders (BLIP NLVR2: its one graph) to ONNX with pruning inside the
    graph, then validate."""
    from . import families, load
    from .errors import UsageError
    from .files import clean_stale_staging, output_dir
    from .models.inputs import check_number, check_temperature
    from .onnx.export import check_opset, export_model

    check_opset(opset)
    if fmt not in ("onnx", "aoti"):
        raise UsageError(f"--format {fmt!r}: unknown; fix: onnx or aoti")
    check_number(max_batch, "--max-batch", lo=1, hi=4096, integer=True, error=UsageError,
                 fix="the largest batch the graph accepts, from 1 to 4096 (default 64)")
    if temperature is not None:
        check_temperature(temperature, "--temperature", error=UsageError)
    if shapes not in ("dynamic", "static"):
        raise UsageError(f"--shapes {shapes!r}: unknown; fix: dynamic or static")
    if shapes == "static":
        check_number(capacity_quantile, "--capacity-quantile", lo=0.0, hi=1.0, lo_open=True, error=UsageError,
                     fix="a quantile in (0, 1], e.g. 0.99")
        check_number(calibration_samples, "--calibration-samples", lo=1, hi=100_000, integer=True,
                     error=UsageError, fix="inputs per encoder, e.g. 256")
        if mode == Mode.reference:
            raise UsageError("--shapes static --mode reference: capacities give each instance its own answer; "
                             "fix: use --mode invariant or packed")
    with output_dir(output, "--output"):
        clean_stale_staging(output, ".export-")  # what a killed export left, before this run can fail
        m = load(model, mode=mode.value, temperature=temperature)
        family = families.of(m)
        if shapes == "static":
            family.require("static", f"--model {model} --shapes static")
        if fmt == "aoti":
            family.require("aoti", f"--model {model} --format aoti")
        profiles = None
        if shapes == "static":
            from .capacity import make_static

            profiles = make_static(m, _source(model), name or m.spec.name, capacity_quantile, calibration_data,
                                   calibration_samples, calibration_dir, log=console.print)
        if fmt == "aoti":
            from .aoti import export_aoti

            paths = export_aoti(m, output, name or m.spec.name, source=_source(model), max_batch=max_batch,
                                log=console.print)
        else:
            paths = export_model(m, output, name or m.spec.name, source=_source(model), opset=opset,
                                 max_batch=max_batch, validate=not no_validate, log=console.print,
                                 capacity_profiles=profiles)
    for p in paths:
        console.print(f"wrote {p}")
    if check_trt:
        for p in paths:
            if p.suffix == ".onnx":
                _print_trt_report(p)


def _source(model: str) -> str:
    """What a sidecar records as the model: a spec name as is, a path made absolute (so `validate`
    and `bench --onnx` find it from any working folder)."""
    from .api import SHIPPED_NAMES

    path = Path(model)
    return str(path.resolve()) if model not in SHIPPED_NAMES and path.exists() else model


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


@app.command()
def build(file: Path = typer.Argument(..., help="an exported .onnx file (its .json sidecar beside it)"),
          batch_sizes: str = typer.Option("1,8,32", "--batch-sizes", help="min,opt,max batch of the profile"),
          text_lengths: Optional[str] = typer.Option(None, "--text-lengths",
                                                     help="min,opt,max tokens (text graphs; default: the model's range)"),
          output: Path = typer.Option(Path("engines"), "--output", help="engine cache folder (shared timing cache)"),
          force: bool = typer.Option(False, "--force", help="rebuild even if a cached engine matches")) -> None:
    """Build a TensorRT engine from an exported graph through polygraphy (needs TensorRT and a GPU)."""
    from .trt.build import build_engine, parse_triple

    batch = parse_triple(batch_sizes, "--batch-sizes")
    seq = parse_triple(text_lengths, "--text-lengths") if text_lengths else None
    path = build_engine(file, engines_dir=output, batch=batch, seq=seq, force=force, log=console.print)
    console.print(f"wrote {path} (sidecar {path.with_suffix('.json').name})")


@app.command("make-data")
def make_data(output: Path = typer.Option(Path("data/scenes"), "--output"),
              n_train: int = typer.Option(4000, "--train"), n_val: int = typer.Option(300, "--val"),
              n_test: int = typer.Option(500, "--test"), seed: int = typer.Option(0, "--seed"),
              task: str = typer.Option("scenes", "--task", help="scenes (retrieval) or nlvr (image pairs + statements)"),
              image_size: int | None = typer.Option(None, "--image-size",
                                                    help="image side in pixels (default: the task's, scenes 64, nlvr 32)"),
              ) -> None:
    """Generate the seeded shapes-and-relations retrieval task in BLIP's annotation format."""
    from .data import scenes
    from .errors import UsageError
    from .files import output_dir
    from .models.inputs import check_number

    for option, n in (("--train", n_train), ("--val", n_val), ("--test", n_test)):
        check_number(n, option, lo=0, hi=1_000_000, integer=True, error=UsageError,
                     fix=f"a number of images from 0 to 1000000, e.g. {option} 100")
    check_number(seed, "--seed", lo=0, hi=2**32 - 1, integer=True, error=UsageError, fix="an integer seed >= 0")
    if image_size is not None:
        check_number(image_size, "--image-size", lo=8, hi=1024, integer=True, error=UsageError,
                     fix="a side in pixels from 8 to 1024, e.g. --image-size 64")
    size = {} if image_size is None else {"image_size": image_size}
    if task not in ("scenes", "nlvr"):
        raise UsageError(f"--task {task!r}: unknown; fix: scenes or nlvr")
    with output_dir(output, "--output"):
        if task == "nlvr":  # NLVR2-format pairs for BLIP NLVR2 (data/nlvr.py)
            from .data import nlvr
            root = nlvr.generate(output, n_train, n_val, n_test, seed, **size)
        else:
            root = scenes.generate(output, n_train, n_val, n_test, seed, **size)
    console.print(f"wrote {root} (train {n_train}, val {n_val}, test {n_test} images, seed {seed})")


@app.command()
def train(data: Path = typer.Option(..., "--data", help="dataset folder (*_train.json, *_val.json)"),
          output: Path = typer.Option(..., "--output", help="run folder: madtp.pt, model.safetensors, last.pt"),
          init: str = typer.Option("madtp-clip-deep", "--init", help=MODEL_HELP),
          reduce: float = typer.Option(0.0, "--reduce", help="fraction of GFLOPs to remove (0 = dense)"),
          epochs: int = typer.Option(5, "--epochs"), batch_size: int = typer.Option(64, "--batch-size"),
          lr: float = typer.Option(5e-4, "--lr"), weight_decay: float = typer.Option(0.2, "--wd"),
          mode: Mode = typer.Option(SERVING_DEFAULT, "--mode"), control_every: int = typer.Option(0, "--control-every"),
          max_steps: int = typer.Option(0, "--max-steps"),
          ramp: int = typer.Option(0, "--ramp", help="epochs over which the GFLOPs target falls linearly from dense "
                                   "to --reduce's (0: from the first step, as the reference)"),
          warmup: int = typer.Option(0, "--warmup", help="steps of linear learning-rate warm-up before the cosine"),
          pretrained: Optional[Path] = typer.Option(None, "--pretrained", help="BLIP NLVR2: a pre-trained BLIP "
                                                     "(retrieval) checkpoint to fine-tune from, as BLIP does"),
          distill: Optional[str] = typer.Option(None, "--distill", help="CLIP: a frozen teacher (e.g. the dense "
                                                "model --init came from) whose batch similarities the student matches"),
          distill_weight: float = typer.Option(1.0, "--distill-weight"),
          seed: int = typer.Option(0, "--seed"),
          resume: bool = typer.Option(False, "--resume"),
          device: str = typer.Option("cpu", "--device", help="cpu (gloo under torchrun) or cuda (cuda:LOCAL_RANK, "
                                     "NCCL under torchrun)"),
          tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="HF tokenizer dir or BPE .txt.gz")) -> None:
    """Dense training, or MADTP compression to a GFLOPs target (--reduce P): CLIP; BLIP retrieval
    (--init blip-retrieval-tiny or a BLIP checkpoint); BLIP NLVR2 (an NLVR2 data folder)."""
    from . import families
    from .data.nlvr import is_nlvr_dir
    from .train.blip_retrieval import is_blip
    from .train.loop import TrainConfig, train as train_loop

    common: dict[str, Any] = dict(
        data=str(data), output=str(output), reduce=reduce, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, mode=mode.value, control_every=control_every, max_steps=max_steps, warmup=warmup,
        ramp=ramp, pretrained=str(pretrained) if pretrained else None, distill=distill, distill_weight=distill_weight,
        seed=seed, resume=resume, tokenizer=str(tokenizer) if tokenizer else None, device=device)
    # the family: an NLVR2 folder trains BLIP NLVR2, a BLIP --init BLIP retrieval, anything else CLIP
    family = "blip-nlvr" if is_nlvr_dir(data) else "blip-retrieval" if is_blip(init) else "clip"
    if family == "blip-nlvr" and init == "madtp-clip-deep":  # --init left at its default
        init = "blip-nlvr-tiny"
    hooks = families.get(family).hook("training")
    cfg = TrainConfig(init=init, **common).validate()
    r = _run_training(lambda c, **kw: train_loop(c, hooks, **kw), cfg, output)
    summary = hooks.summary(r) if hooks.summary else ""
    console.print(f"done: {hooks.unit} {r['gflops_current']:.5f} (target {r['gflops_target']:.5f}, dense "
                  f"{r['gflops_dense']:.5f}), temperature {r['temperature']:.3f}{summary}")


@app.command("eval")
def eval_(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
          data: Path = typer.Option(..., "--data", help="dataset folder"),
          split: str = typer.Option("test", "--split"), batch_size: int = typer.Option(64, "--batch-size"),
          mode: Mode = typer.Option(SERVING_DEFAULT, "--mode"),
          temperature: Optional[float] = typer.Option(None, "--temperature"),
          tokenizer: Optional[Path] = typer.Option(None, "--tokenizer"),
          k: int = typer.Option(16, "--k", help="BLIP retrieval: candidates per query re-ranked by ITM"),
          method: str = typer.Option("madtp", "--method", help="madtp (the model as loaded), or a peer on "
                                     "the model's weights, dense: tome, topk or lowres (CLIP)"),
          match: Optional[str] = typer.Option(None, "--match", help="a peer's knob: the one whose mean image "
                                              "GFLOPs on this split equal this MADTP model's (within 2%)"),
          gallery: Optional[int] = typer.Option(None, "--gallery", help="CLIP: rank each query among "
                                                "consecutive folds of N images (COCO's 5-fold 1K protocol: "
                                                "1000 of 5,000); default: the whole split"),
          json_out: Optional[Path] = typer.Option(None, "--json")) -> None:
    """Retrieval recall@1/5/10 both ways (BLIP: by ITC and after ITM re-ranking) or NLVR2 accuracy,
    per-instance GFLOPs and kept tokens per layer. With --method tome|topk|lowres --match MODEL: a peer
    at MODEL's GFLOPs (its knob printed). With --gallery N: CLIP recall within galleries of N images."""
    import json

    from . import families, load
    from .errors import UsageError
    from .files import check_output_file, write_text_atomic
    from .models.inputs import check_batch_size, check_temperature

    check_batch_size(batch_size, "--batch-size", error=UsageError)
    if temperature is not None:
        check_temperature(temperature, "--temperature", error=UsageError)
    from .peers import METHODS

    if method not in METHODS:
        raise UsageError(f"--method {method}: unknown; fix: use one of {', '.join(METHODS)}")
    if json_out:
        check_output_file(json_out, "--json")
    # a peer runs on the model's weights with MADTP's pruning off (temperature 0)
    m = load(model, mode=mode.value, temperature=temperature if method == "madtp" else 0.0)
    family = families.of(m)
    family.require("eval", f"--model {model}")
    extra = {}
    if method != "madtp" or match is not None:  # evaluate() says what a peer needs (and --match without one)
        family.require("peers", f"--model {model} --method {method}")
        reference = None if match is None else load(match, mode=mode.value, temperature=temperature)
        if reference is not None:
            families.of(reference).require("peers", f"--match {match}")
        extra = {"method": method, "match": reference, "log": console.print}
    if gallery is not None:
        family.require("gallery", f"--gallery {gallery}")
        extra["gallery"] = gallery
    r = family.hook("evaluator")(m, data, split, batch_size, tokenizer=tokenizer, k=k, **extra)
    r["model"] = model
    if method != "madtp":
        r["match_model"] = match
    columns, rows, notes = family.hook("eval_report")(r)
    table = Table(title=f"{model} on {Path(r['split']).name} ({m.mode}, batch {batch_size}, T {m.temperature:g})")
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in notes:
        console.print(line)
    if json_out:
        write_text_atomic(json_out, json.dumps(r, indent=2))


@app.command()
def bench(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
          onnx: Optional[Path] = typer.Option(None, "--onnx", help="an exported pruned image .onnx to time"),
          batch_sizes: str = typer.Option("1,8,32", "--batch-sizes"),
          backend: Optional[str] = typer.Option(None, "--backend", help="comma list; default: all available"),
          variants: Optional[str] = typer.Option(None, "--variants", help="comma list of dense, reference, "
                                                 "invariant, packed, static, tome, topk, lowres, invariant-int8, "
                                                 "packed-int8, static-int8 (default: dense, reference, invariant, packed)"),
          capacity_quantile: float = typer.Option(DEFAULT_CAPACITY_QUANTILE, "--capacity-quantile",
                                                  help="the static variant's capacities"),
          temperature: Optional[float] = typer.Option(None, "--temperature"),
          data: Optional[Path] = typer.Option(None, "--data", help="dataset folder (default: generated scenes)"),
          warmup_s: float = typer.Option(1.0, "--warmup-s"), min_runs: int = typer.Option(10, "--min-runs"),
          pool: int = typer.Option(64, "--pool", help="distinct images the timed batches rotate through"),
          json_out: Optional[Path] = typer.Option(None, "--json"),
          markdown_out: Optional[Path] = typer.Option(None, "--markdown"),
          plot_out: Optional[Path] = typer.Option(None, "--plot")) -> None:
    """Latency, throughput, per-instance GFLOPs and memory: dense vs pruned, backend vs backend. A graph
    `madtp-deploy export` wrote to export/ for the same weights, temperature and mode is timed as it is."""
    import json

    from rich.progress import BarColumn, Progress, TextColumn

    from .benchmark import report as rep
    from .files import write_text_atomic
    from .benchmark.runner import BenchConfig, parse_backends, parse_batch_sizes, parse_variants, run_bench

    from .errors import UsageError
    from .files import check_output_file
    from .models.inputs import check_batch_size, check_number, check_temperature

    sizes = parse_batch_sizes(batch_sizes)
    for b in sizes:
        check_batch_size(b, "--batch-sizes", error=UsageError)
    check_number(warmup_s, "--warmup-s", lo=0.0, hi=3600.0, error=UsageError, fix="seconds from 0 to 3600, e.g. 1")
    check_number(min_runs, "--min-runs", lo=1, hi=1_000_000, integer=True, error=UsageError,
                 fix="at least one timed run per batch, e.g. --min-runs 10")
    check_number(pool, "--pool", lo=1, hi=10_000, integer=True, error=UsageError,
                 fix="distinct images to time, e.g. --pool 64")
    check_number(capacity_quantile, "--capacity-quantile", lo=0.0, hi=1.0, lo_open=True, error=UsageError,
                 fix="a quantile in (0, 1], e.g. 0.99")
    if temperature is not None:
        check_temperature(temperature, "--temperature", error=UsageError)
    for option, path in (("--json", json_out), ("--markdown", markdown_out), ("--plot", plot_out)):
        if path:
            check_output_file(path, option)
    if plot_out and plot_out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UsageError(f"--plot {plot_out}: format {plot_out.suffix or '(none)'} unsupported; fix: end the "
                         f"name in .png, .svg or .pdf")
    cfg = BenchConfig(model=model, onnx=str(onnx) if onnx else None, batch_sizes=sizes,
                      backends=parse_backends(backend), variants=parse_variants(variants), temperature=temperature,
                      capacity_quantile=capacity_quantile, data=str(data) if data else None, warmup_s=warmup_s,
                      min_runs=min_runs, pool=pool, reuse=("export",))
    with Progress(TextColumn("{task.description}"), BarColumn(), console=console, transient=True) as progress:
        r = run_bench(cfg, log=console.print, progress=progress)
    rep.validate_report(r)
    for table in rep.rich_tables(r, console.width):
        console.print(table)
    for line in rep.summary_lines(r):
        console.print(line, markup=False, soft_wrap=True)
    for name, why in r["unavailable_backends"].items():
        console.print(f"not run: {name}: {why}", markup=False)
    if json_out:
        write_text_atomic(json_out, json.dumps(r, indent=2))
    if markdown_out:
        write_text_atomic(markdown_out, rep.markdown(r))
    if plot_out:
        rep.plot(r, plot_out)


@app.command()
def calibrate(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
              onnx: Optional[Path] = typer.Option(None, "--onnx", help="an exported fp32 encoder .onnx (default: "
                                                  "export --model's encoders first, cached)"),
              encoders: str = typer.Option("image,text", "--encoders", help="image, text or image,text"),
              mode: Mode = typer.Option(SERVING_DEFAULT, "--mode", help="batch mode of the graph quantized "
                                        "(default packed: the served graph; invariant, reference)"),
              shapes: str = typer.Option("dynamic", "--shapes", help="dynamic, or static (the capacity graph for engines)"),
              temperature: Optional[float] = typer.Option(None, "--temperature", help="override the checkpoint's"),
              data: Optional[Path] = typer.Option(None, "--data", help="dataset folder (default: generated scenes)"),
              split: str = typer.Option("val", "--split", help="split the samples come from (not the one you "
                                        "evaluate on)"),
              calib_set: Optional[Path] = typer.Option(None, "--calib-set", help="an existing .npz set (keys = "
                                                       "graph input names)"),
              samples: int = typer.Option(128, "--samples"),
              method: str = typer.Option("minmax", "--method", help="minmax, entropy or percentile"),
              quantizer: str = typer.Option("ort", "--quantizer", help="ort, or modelopt (its own venv: "
                                            "`make modelopt-env`)"),
              precision: str = typer.Option("int8", "--precision", help="int8, or fp8 (modelopt only)"),
              quantize_pruning_path: bool = typer.Option(False, "--quantize-pruning-path",
                                                         help="quantize the score path too (comparison)"),
              float_copy: bool = typer.Option(True, "--float-copy/--no-float-copy",
                                              help="the pruning path reads float tensors, not shared Q/DQ copies"),
              score_minmax: bool = typer.Option(False, "--score-minmax", help="tensors entering the pruning "
                                                "path keep their full min/max range"),
              quantize_stem: bool = typer.Option(False, "--quantize-stem", help="quantize the patch embedding "
                                                 "too (default: float, it reads the pixels)"),
              float_feeders: bool = typer.Option(False, "--float-feeders", help="also keep in float the "
                                                 "attention in_proj MatMuls whose q and k make the scores"),
              per_channel: bool = typer.Option(False, "--per-channel"),
              seed: int = typer.Option(0, "--seed"),
              output: Path = typer.Option(Path("calibration"), "--output", help="output folder"),
              name: Optional[str] = typer.Option(None, "--name", help="suffix of the quantized file "
                                                 "(default: int8, int8-pp, ...)")) -> None:
    """Calibration set + manifest, and a static-quantized Q/DQ ONNX with the pruning path in float."""
    from .quant.quantize import QuantConfig
    from .quant.run import calibrate as run, parse_encoders

    cfg = QuantConfig(method=method, quantizer=quantizer, precision=precision,
                      quantize_pruning_path=quantize_pruning_path, float_copy=float_copy,
                      score_minmax=score_minmax, per_channel=per_channel, float_stem=not quantize_stem,
                      exclude_feeders=float_feeders)
    results = run(model=model, onnx=onnx, encoders=parse_encoders(encoders), mode=mode.value, shapes=shapes,
                  temperature=temperature,
                  data=data, split=split, calib_set=calib_set, samples=samples, seed=seed, output=output,
                  name=name, cfg=cfg, log=console.print)
    for r in results:
        q = r["info"]["quantization"]
        console.print(f"wrote {r['onnx']} ({len(q['quantized_nodes'])} nodes quantized, "
                      f"{len(q['excluded_nodes'])} excluded) and {r['sidecar'].name}; set {r['calib_set']}")


def _run_training(run, cfg, output: Path) -> dict:
    """A training run with a progress bar; a run that fails before writing leaves no output folder."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .files import output_dir

    with output_dir(output, "--output"), \
            Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=console,
                     disable=not console.is_terminal) as progress:
        return run(cfg, log=console.print, progress=progress)


from .serve import commands as _serve  # noqa: E402 - typer commands of madtp_deploy.serve (lazy inside)

app.command("serve-repo")(_serve.serve_repo)
app.command("serve")(_serve.serve)
app.command("serve-bench")(_serve.serve_bench)

from .embed import commands as _embed  # noqa: E402 - typer commands of madtp_deploy.embed (lazy inside)

app.command("embed")(_embed.embed)
app.command("search")(_embed.search)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
