"""The three serving commands, as typer-annotated functions (the CLI registers them):

    app.command("serve-repo")(commands.serve_repo)
    app.command("serve")(commands.serve)
    app.command("serve-bench")(commands.serve_bench)
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

MODEL_HELP = "spec name, checkpoint file, HF directory, or 'shipped'"
CACHE_HELP = "export cache: graphs with the same weights, temperature and mode are reused (what `bench` uses)"


def _ints(text: str, option: str, lo: int, hi: int, example: str) -> list[int]:
    from ..errors import UsageError
    from ..models.inputs import parse_ints

    return parse_ints(text, option, lo, hi, example, error=UsageError)


def _plans(items: list[str] | None) -> dict:
    from ..errors import UsageError

    out = {}
    for item in items or []:
        enc, sep, path = item.partition("=")
        if not sep or not enc or not path:
            raise UsageError(f"--plan {item!r}: expected ENCODER=FILE; fix: e.g. --plan image=engines/x.plan")
        out[enc] = Path(path)
    return out


def _write(model, output, variants, temperature, tokenizer, plans, max_batch, instances, preferred, queue_delay_us,
           cache, log, encoders=None):
    from ..models.inputs import check_number, check_temperature
    from ..errors import UsageError
    from .repository import parse_variants, write_repository

    check_number(max_batch, "--max-batch", lo=1, hi=4096, integer=True, error=UsageError,
                 fix="the largest batch the server forms, 1 to 4096 (default 64)")
    check_number(instances, "--instances", lo=1, hi=64, integer=True, error=UsageError,
                 fix="model instances per graph, e.g. 1 (one per 2 cores)")
    check_number(queue_delay_us, "--queue-delay-us", lo=0, hi=10_000_000, integer=True, error=UsageError,
                 fix="microseconds a request may wait for a batch, e.g. 2000")
    if temperature is not None:
        check_temperature(temperature, "--temperature", error=UsageError)
    sizes = _ints(preferred, "--preferred-batch-sizes", 1, max_batch, "4,8,16,32")
    return write_repository(model, output, variants=parse_variants(variants), temperature=temperature,
                            tokenizer=tokenizer, plans=_plans(plans), max_batch=max_batch, instances=instances,
                            preferred=tuple(sizes), queue_delay_us=queue_delay_us,
                            cache=cache if max_batch == 64 else None, encoders=encoders, log=log)


def serve_repo(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
               output: Path = typer.Option(Path("export/triton"), "--output", help="repository folder (replaced)"),
               variants: str = typer.Option("packed", "--variants", help="comma list of packed (served), invariant "
                                            "(padded), dense: one python model per graph and variant"),
               temperature: Optional[float] = typer.Option(None, "--temperature", help="override the checkpoint's"),
               tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="CLIP: HF tokenizer folder or "
                                                        "OpenAI BPE .txt.gz; BLIP: folder with vocab.txt (default: "
                                                        "the shipped model's vocabulary)"),
               plan: Optional[List[str]] = typer.Option(None, "--plan", help="ENCODER=FILE: a TensorRT engine "
                                                         "(`export --shapes static` + `build`) for the tensorrt_plan "
                                                         "variant; repeatable"),
               max_batch: int = typer.Option(64, "--max-batch", help="largest batch the server forms"),
               instances: int = typer.Option(1, "--instances", help="model instances per graph"),
               preferred: str = typer.Option("4,8,16,32", "--preferred-batch-sizes"),
               queue_delay_us: int = typer.Option(2000, "--queue-delay-us", help="dynamic batcher's queue delay"),
               cache: Path = typer.Option(Path("export/.bench"), "--cache", help=CACHE_HELP)) -> None:
    """Write a Triton Inference Server model repository: python-backend models taking encoded images and
    UTF-8 captions (served here), and the GPU variants (onnxruntime, tensorrt_plan; not loaded here)."""
    m = _write(model, output, variants, temperature, tokenizer, plan, max_batch, instances, preferred,
               queue_delay_us, cache, typer.echo)
    typer.echo(f"wrote {output}: served here: {', '.join(m['load'])}; GPU only: {', '.join(m['gpu_only'])}")


def serve(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
          repository: Optional[Path] = typer.Option(None, "--repository", help="serve this repository (from "
                                                    "serve-repo) instead of writing one"),
          temperature: Optional[float] = typer.Option(None, "--temperature", help="override the checkpoint's"),
          tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="as serve-repo's"),
          http_port: Optional[int] = typer.Option(None, "--http-port", help="default: a free port"),
          grpc_port: Optional[int] = typer.Option(None, "--grpc-port", help="default: a free port"),
          metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="default: a free port"),
          venv: Optional[Path] = typer.Option(None, "--venv", help="serving venv (default: .venv-serve, from "
                                              "`make serve-env`, or $MADTP_SERVE_VENV)"),
          cache: Path = typer.Option(Path("export/.bench"), "--cache", help=CACHE_HELP)) -> None:
    """Serve a model with Triton Inference Server on 127.0.0.1 until Ctrl-C / SIGTERM; nothing is left
    behind (server process, shared memory, temp folders)."""
    import signal
    import time

    from ..errors import UsageError
    from ..files import temp_dir
    from .server import TritonServer, find_triton, default_venv

    for option, port in (("--http-port", http_port), ("--grpc-port", grpc_port), ("--metrics-port", metrics_port)):
        if port is not None and not 1 <= port <= 65535:
            raise UsageError(f"{option} {port}: not a TCP port; fix: 1..65535, or leave it out for a free one")
    find_triton(venv or default_venv())  # fail before exporting anything
    stop = {"signal": None}

    def handler(signum, _frame):
        stop["signal"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with temp_dir("madtp-serve-repo-") as tmp:
            if repository is None:
                repository = tmp / "repository"
                _write(model, repository, "packed", temperature, tokenizer, None, 64, 1, "4,8,16,32", 2000, cache,
                       typer.echo)
            server = TritonServer(repository, venv=venv, http_port=http_port, grpc_port=grpc_port,
                                  metrics_port=metrics_port)
            try:
                server.start()
                typer.echo(f"serving {', '.join(server.models)} from {repository}\n  gRPC    {server.grpc_url}\n"
                           f"  HTTP    {server.http_url}\n  metrics {server.metrics_url}\n  temp    {server.workdir}\n"
                           f"Ctrl-C (or SIGTERM) stops it")
                while stop["signal"] is None and server.process.poll() is None:
                    time.sleep(0.2)
                if stop["signal"] is None:
                    raise UsageError(f"tritonserver exited with code {server.process.returncode} ({server.log_tail(5)}); "
                                     f"fix: see its log")
            finally:
                rc = server.stop()
            typer.echo(f"stopped (tritonserver exit code {rc})")
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def serve_bench(model: str = typer.Option("shipped", "--model", help=MODEL_HELP),
                temperature: Optional[float] = typer.Option(None, "--temperature", help="override the checkpoint's"),
                repository: Optional[Path] = typer.Option(None, "--repository", help="a repository serve-repo wrote "
                                                          "with --variants dense,invariant,packed (default: write one "
                                                          "to a temp folder)"),
                concurrency: str = typer.Option("1,4,16,64", "--concurrency", help="comma list of clients in flight"),
                requests: int = typer.Option(64, "--requests", help="requests per variant and concurrency"),
                images_per_request: int = typer.Option(1, "--images-per-request"),
                max_seconds: float = typer.Option(60.0, "--max-seconds", help="time bound per variant and "
                                                  "concurrency (requests not sent by then are counted)"),
                pool: int = typer.Option(32, "--pool", help="distinct generated images"),
                venv: Optional[Path] = typer.Option(None, "--venv", help="serving venv (default: .venv-serve)"),
                cache: Path = typer.Option(Path("export/.bench"), "--cache", help=CACHE_HELP),
                json_out: Optional[Path] = typer.Option(None, "--json"),
                markdown_out: Optional[Path] = typer.Option(None, "--markdown")) -> None:
    """Load test on one Triton server: dense, padded invariant and packed image graphs side by side;
    throughput, p50/p90/p99 latency, the server's batch sizes, GFLOPs, and answers against batch 1."""
    import signal

    from ..errors import UsageError
    from ..files import check_output_file
    from ..models.inputs import check_number
    from .server import default_venv, find_triton

    levels = _ints(concurrency, "--concurrency", 1, 1024, "1,4,16,64")
    check_number(requests, "--requests", lo=1, hi=1_000_000, integer=True, error=UsageError, fix="e.g. 64")
    check_number(images_per_request, "--images-per-request", lo=1, hi=64, integer=True, error=UsageError,
                 fix="1 to 64 (the server's max batch)")
    check_number(max_seconds, "--max-seconds", lo=0.0, hi=86400.0, lo_open=True, error=UsageError, fix="e.g. 60")
    check_number(pool, "--pool", lo=1, hi=10_000, integer=True, error=UsageError, fix="e.g. 32")
    for option, path in (("--json", json_out), ("--markdown", markdown_out)):
        if path:
            check_output_file(path, option)
    find_triton(venv or default_venv())

    def interrupt(signum, _frame):  # SIGTERM too (and SIGINT where a shell ignored it): stop the server first
        raise KeyboardInterrupt(signum)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _serve_bench(model, temperature, repository, levels, requests, images_per_request, max_seconds, pool, venv,
                     cache, json_out, markdown_out)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _serve_bench(model, temperature, repository, levels, requests, images_per_request, max_seconds, pool, venv, cache,
                 json_out, markdown_out) -> None:
    import json

    from ..files import temp_dir, write_text_atomic
    from .bench import markdown, run_serve_bench

    with temp_dir("madtp-serve-bench-") as tmp:
        if repository is None:
            repository = tmp / "repository"
            _write(model, repository, "dense,invariant,packed", temperature, None, None, 64, 1, "4,8,16,32", 2000,
                   cache, typer.echo, encoders=("image",))
        r = run_serve_bench(repository, concurrency=levels, requests=requests, images_per_request=images_per_request,
                            max_seconds=max_seconds, pool=pool, venv=venv, log=typer.echo)
    typer.echo(markdown(r))
    if json_out:
        write_text_atomic(json_out, json.dumps(r, indent=2))
    if markdown_out:
        write_text_atomic(markdown_out, markdown(r))
