"""`embed` and `search`, as typer-annotated functions (the CLI registers them):

    app.command("embed")(commands.embed)
    app.command("search")(commands.search)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

MODEL_HELP = ("spec name, checkpoint file, HF directory or 'shipped' (exported here as a packed graph, cached), "
              "or an exported image graph: .onnx, .pt2 (AOTInductor) or .plan (TensorRT) with its .json sidecar")


def _progress_bar():
    """(total, already_done) -> advance(n): a rich progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    state = {}

    def start(total: int, done: int):
        bar = Progress(TextColumn("embed"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       console=Console(stderr=True), transient=True)
        bar.start()
        task = bar.add_task("embed", total=total, completed=done)
        state["bar"] = bar
        return lambda n: bar.advance(task, n)

    return start, state


def embed(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
          images: Path = typer.Option(..., "--images", help="a folder of images (recursive, sorted) or a text file of "
                                      "image paths, one a line (relative to the file's folder)"),
          output: Path = typer.Option(..., "--output", help="index folder: part-*.parquet shards (path, embedding, "
                                      "kept, gflops), errors.jsonl, index.json; rerun to resume"),
          batch_size: int = typer.Option(32, "--batch-size", help="images per graph run"),
          shard_size: int = typer.Option(1024, "--shard-size", help="images per Parquet shard (the resume unit)"),
          backend: Optional[str] = typer.Option(None, "--backend", help="ort (default), ort-cuda, aoti or trt "
                                                "(aoti/trt: pass --model with the .pt2 / .plan)"),
          temperature: Optional[float] = typer.Option(None, "--temperature", help="override the checkpoint's"),
          cache: Path = typer.Option(Path("export/.embed"), "--cache", help="export cache for --model SOURCE"),
          tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="the model's tokenizer (HF folder, BPE "
                                                   ".txt.gz or a vocab.txt folder), copied into the index for "
                                                   "text search; default: the generated scenes' vocabulary"),
          ray: Optional[str] = typer.Option(None, "--ray", help="run as a Ray Data pipeline: a cluster address "
                                            "(ray://host:10001 or host:6379), 'auto' (the cluster this node is in) "
                                            "or 'local' (start a one-node cluster here)"),
          ray_actors: int = typer.Option(2, "--ray-actors", help="Ray: graph actors"),
          ray_cpus: float = typer.Option(0.5, "--ray-cpus", help="Ray: CPUs per graph actor (fractional: leave "
                                         "room for the read and decode tasks)"),
          ray_gpus: float = typer.Option(0.0, "--ray-gpus", help="Ray: GPUs per graph actor (with --backend "
                                         "ort-cuda), e.g. 0.5 for two actors a GPU"),
          json_out: Optional[Path] = typer.Option(None, "--json", help="write the run's summary here")) -> None:
    """Embed an image collection with the packed image graph into Parquet shards; resumable; corrupt
    images are listed in errors.jsonl and skipped."""
    from ..errors import UsageError
    from ..files import check_output_file, write_text_atomic
    from ..models.inputs import check_number
    from .collection import embed_collection

    check_number(batch_size, "--batch-size", lo=1, hi=4096, integer=True, error=UsageError, fix="e.g. 32")
    check_number(shard_size, "--shard-size", lo=1, hi=10_000_000, integer=True, error=UsageError, fix="e.g. 1024")
    check_number(ray_actors, "--ray-actors", lo=1, hi=10_000, integer=True, error=UsageError, fix="e.g. 2")
    check_number(ray_cpus, "--ray-cpus", lo=0, hi=1024, lo_open=True, error=UsageError, fix="e.g. 0.5")
    check_number(ray_gpus, "--ray-gpus", lo=0, hi=64, error=UsageError, fix="0, or e.g. 0.5 with --backend ort-cuda")
    if json_out is not None:
        check_output_file(json_out, "--json")
    start, state = _progress_bar()
    try:
        summary = embed_collection(model, images, output, batch_size=batch_size, shard_size=shard_size,
                                   backend=backend, temperature=temperature, cache=cache, tokenizer=tokenizer,
                                   ray=ray, ray_actors=ray_actors, ray_cpus=ray_cpus, ray_gpus=ray_gpus,
                                   progress=start, log=lambda m: typer.echo(m, err=True))
    finally:
        if "bar" in state:
            state["bar"].stop()
    rate = f", {summary['images_per_s']:.0f} images/s" if summary["images_per_s"] else ""
    typer.echo(f"{summary['rows']} rows, {summary['errors']} errors (errors.jsonl) in {summary['shards']} shards -> "
          f"{summary['output']} ({summary['embedded_now']} embedded now{rate})")
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(summary, indent=2))


def search(index: Path = typer.Option(..., "--index", help="a folder `madtp-deploy embed` wrote"),
           text: Optional[str] = typer.Option(None, "--text", help="a caption to search by"),
           image: Optional[Path] = typer.Option(None, "--image", help="an image file to search by"),
           k: int = typer.Option(10, "--k", help="results"),
           engine: str = typer.Option("auto", "--engine", help="auto (FAISS when installed, else numpy), numpy, faiss"),
           json_out: Optional[Path] = typer.Option(None, "--json", help="write the results here")) -> None:
    """The top-k images of an embedded collection for a caption (--text) or an image (--image), by cosine."""
    from ..files import check_output_file, write_text_atomic
    from .search import search_index

    if json_out is not None:
        check_output_file(json_out, "--json")
    r = search_index(index, text=text, image=image, k=k, engine=engine)
    for hit in r["results"]:
        typer.echo(f"{hit['rank']:>3}  {hit['score']:.4f}  {hit['path']}")
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(r, indent=2))
