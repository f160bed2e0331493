"""`madtp-deploy serve-bench`: a bounded load test of the served image graph on ONE server: dense,
padded invariant and packed side by side, at each concurrency, with real generated images.

Per (variant, concurrency): throughput, p50/p90/p99 latency (client side, tritonclient asyncio gRPC),
the batch sizes the server formed (statistics API, before/after deltas) and the per-image GFLOPs the
server returned. Then: every served answer at the largest concurrency against local onnxruntime
batch-1 answers of the same graph file, and the in-process packed session timed at the batch size the
server formed (decode + preprocess + run, as the server does), after the server has stopped.
"""

from __future__ import annotations

import os
import statistics as stats_
import time
from pathlib import Path

import numpy as np

from ..files import temp_dir
from .client import b64, run_in_venv
from .repository import model_name
from .server import TritonServer

PERF_ANALYZER = ("not run: PyPI's perf-analyzer 2.60 needs glibc 2.38 (this machine has 2.36); on a GPU machine "
                 "or in NGC's tritonserver SDK image run `perf_analyzer -m image --concurrency-range 1:64:4 "
                 "--input-data <json with IMAGE bytes>`")


def _percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _batches(stats: dict, name: str) -> dict[int, int]:
    """{batch size: executions} of one model from the statistics API."""
    for m in stats["model_stats"]:
        if m["name"] == name:
            return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in m.get("batch_stats", [])}
    return {}


def _delta(after: dict, before: dict) -> dict[int, int]:
    return {b: n - before.get(b, 0) for b, n in sorted(after.items()) if n - before.get(b, 0) > 0}


def bench_pngs(size: int, n: int, seed: int = 123) -> list[bytes]:
    """n encoded PNGs of the generated scenes at the model's size (real images, varied keep counts)."""
    from ..data import scenes

    with temp_dir("serve-bench-scenes-") as root:
        scenes.generate(root, n_train=0, n_val=0, n_test=n, seed=seed, image_size=size)
        return [p.read_bytes() for p in sorted((root / "images").glob("*.png"))][:n]


def local_answers(onnx: Path, spec, pngs: list[bytes]) -> dict:
    """Batch-1 onnxruntime answers of a graph file for each image (the served answers' reference)."""
    from ..runtime import open_session
    from .handler import DEFAULT_LIMITS, decode_image

    s = open_session(onnx, "ort")
    out = [s.run({"pixels": decode_image(p, spec.image_size, "image", DEFAULT_LIMITS)[None]}) for p in pngs]
    return {"embeds": np.concatenate([o["embeds"] for o in out]), "kept": np.concatenate([o["kept"] for o in out])}


def in_process(onnx: Path, spec, pngs: list[bytes], batch: int, seconds: float) -> dict:
    """The packed session in this process at `batch` images per call: decode + preprocess + run."""
    from ..runtime import open_session
    from .handler import DEFAULT_LIMITS, decode_image

    s = open_session(onnx, "ort")
    batch = max(1, min(batch, len(pngs)))
    calls, images, t0, i = 0, 0, time.perf_counter(), 0
    run_only = 0.0
    while time.perf_counter() - t0 < seconds or calls < 3:
        chunk = [pngs[(i + k) % len(pngs)] for k in range(batch)]
        i += batch
        px = np.stack([decode_image(p, spec.image_size, "image", DEFAULT_LIMITS) for p in chunk])
        t1 = time.perf_counter()
        s.run({"pixels": px})
        run_only += time.perf_counter() - t1
        calls, images = calls + 1, images + batch
    wall = time.perf_counter() - t0
    return {"batch": batch, "calls": calls, "images": images, "throughput_per_s": images / wall,
            "session_only_throughput_per_s": images / run_only}


def run_serve_bench(repository: Path, *, concurrency=(1, 4, 16, 64), requests: int = 64, images_per_request: int = 1,
                    max_seconds: float = 60.0, pool: int = 32, venv=None, log=print) -> dict:
    """The load test on a repository serve-repo wrote with the variants to compare (image graph)."""
    import json

    from ..benchmark.runner import machine_info
    from ..specs import spec_from_dict

    repository = Path(repository)
    manifest = json.loads((repository / "repository.json").read_text())
    variants = [v for v in ("dense", "invariant", "packed") if model_name("image", v) in manifest["load"]]
    names = {v: model_name("image", v) for v in variants}
    side = json.loads((repository / model_name("image", "packed", "onnx") / "1" / "model.json").read_text())
    spec = spec_from_dict(side["model"]["spec"])
    pngs = bench_pngs(spec.image_size, pool)
    reqs = [[pngs[(r * images_per_request + k) % len(pngs)] for k in range(images_per_request)]
            for r in range(requests)]
    job_requests = [{"IMAGE": b64(r)} for r in reqs]
    results, answers = [], {}
    load_start = os.getloadavg()[0]
    log(f"serve-bench {spec.name}: variants {', '.join(variants)}, concurrency {list(concurrency)}, {requests} "
        f"requests of {images_per_request} image(s), {len(pngs)} distinct images")
    with TritonServer(repository, models=list(names.values()), venv=venv) as server:
        for ci, c in enumerate(concurrency):
            order = variants if ci % 2 == 0 else variants[::-1]  # drift hits every variant alike
            for v in order:
                before = _batches(server.statistics(), names[v])
                out = run_in_venv({"url": server.grpc_url, "model": names[v], "concurrency": c,
                                   "max_seconds": max_seconds, "requests": job_requests,
                                   "keep_outputs": c == max(concurrency)}, venv=venv)
                batches = _delta(_batches(server.statistics(), names[v]), before)
                ok = [r for r in out["results"] if r["error"] is None]
                lat = [1000 * r["latency_s"] for r in ok]
                n_img = len(ok) * images_per_request
                executed = sum(batches.values())
                row = {"variant": v, "concurrency": c, "requests_sent": sum(r["latency_s"] is not None
                                                                            for r in out["results"]),
                       "requests_ok": len(ok), "errors": len(out["results"]) - len(ok),
                       "first_error": next((r["error"] for r in out["results"] if r["error"]), None),
                       "wall_s": out["wall_s"], "throughput_per_s": n_img / out["wall_s"],
                       "latency_ms": {"p50": _percentile(lat, 50), "p90": _percentile(lat, 90),
                                      "p99": _percentile(lat, 99), "mean": stats_.fmean(lat) if lat else None},
                       "server_batches": {str(b): n for b, n in batches.items()},
                       "mean_server_batch": (sum(b * n for b, n in batches.items()) / executed) if executed else None}
                if c == max(concurrency):
                    answers[v] = out["results"]
                    row["gflops_per_image"] = float(np.mean([g[0] for r in ok for g in r["outputs"]["GFLOPS"]]))
                results.append(row)
                log(f"  {v:>9} c={c:<3} {row['throughput_per_s']:8.1f} img/s  p50 {row['latency_ms']['p50']:8.1f} ms"
                    f"  p99 {row['latency_ms']['p99']:8.1f} ms  mean server batch "
                    f"{row['mean_server_batch'] or 0:.1f}  errors {row['errors']}")
    # after the server stopped: the reference answers and the in-process session (no CPU shared)
    check = {}
    for v in variants:
        onnx = repository / model_name("image", v, "onnx") / "1" / "model.onnx"
        ref = local_answers(onnx, spec, pngs)
        worst, kept_equal, n = 0.0, True, 0
        for r, imgs in zip(answers[v], reqs):
            if r["error"] is not None:
                continue
            idx = [pngs.index(p) for p in imgs]
            worst = max(worst, float(np.abs(np.asarray(r["outputs"]["EMBEDS"]) - ref["embeds"][idx]).max()))
            kept_equal &= bool((np.asarray(r["outputs"]["KEPT"]) == ref["kept"][idx]).all())
            n += 1
        check[v] = {"requests": n, "max_abs_embeds_diff": worst, "kept_equal": kept_equal,
                    "passed": n == len(reqs) and worst <= 1e-4 and kept_equal}
    c16 = 16 if 16 in concurrency else max(concurrency)
    packed16 = next(r for r in results if r["variant"] == "packed" and r["concurrency"] == c16)
    formed = round(packed16["mean_server_batch"] or 1)
    packed_onnx = repository / model_name("image", "packed", "onnx") / "1" / "model.onnx"
    local = in_process(packed_onnx, spec, pngs, formed, seconds=min(10.0, max_seconds))
    log(f"  in-process packed at batch {formed}: {local['throughput_per_s']:.1f} img/s (decode + run), "
        f"{local['session_only_throughput_per_s']:.1f} img/s (run only)")
    at = {r["variant"]: r for r in results if r["concurrency"] == c16}
    comparisons = {"concurrency": c16,
                   "packed_over_dense_throughput": at["packed"]["throughput_per_s"] / at["dense"]["throughput_per_s"]
                   if "dense" in at else None,
                   "packed_over_invariant_throughput": at["packed"]["throughput_per_s"]
                   / at["invariant"]["throughput_per_s"] if "invariant" in at else None,
                   "packed_p99_over_dense_p99": at["packed"]["latency_ms"]["p99"] / at["dense"]["latency_ms"]["p99"]
                   if "dense" in at else None,
                   "served_over_in_process": at["packed"]["throughput_per_s"] / local["throughput_per_s"]}
    machine = dict(machine_info(), load_average_1m={"start": load_start, "end": os.getloadavg()[0]})
    return {"kind": "serve-bench", "machine": machine, "repository": str(repository),
            "model": {"source": manifest["source"], "spec": spec.name, "temperature": manifest["temperature"]},
            "config": {"concurrency": list(concurrency), "requests": requests,
                       "images_per_request": images_per_request, "max_seconds": max_seconds, "pool": len(pngs),
                       "client": "tritonclient.grpc.aio", "server": "tritonserver 2.51 (nvidia-pytriton 0.7.0 wheel),"
                       " python backend, onnxruntime CPU"},
            "results": results, "correctness": check, "in_process": local, "comparisons": comparisons,
            "perf_analyzer": PERF_ANALYZER}


def markdown(r: dict) -> str:
    lines = [f"serve-bench {r['model']['spec']} ({r['model']['source']}, T {r['model']['temperature']:g}): "
             f"{r['config']['requests']} requests x {r['config']['images_per_request']} image(s), "
             f"{r['machine']['cores']} cores ({r['machine']['cpu']}), load average {r['machine']['load_average_1m']['start']:.1f}"
             f" at the start, {r['machine']['load_average_1m']['end']:.1f} at the end.", "",
             "| variant | concurrency | img/s | p50 ms | p90 ms | p99 ms | mean server batch | GFLOPs/img | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in r["results"]:
        gf = f"{x['gflops_per_image']:.4f}" if "gflops_per_image" in x else "-"
        lines.append(f"| {x['variant']} | {x['concurrency']} | {x['throughput_per_s']:.1f} | {x['latency_ms']['p50']:.1f}"
                     f" | {x['latency_ms']['p90']:.1f} | {x['latency_ms']['p99']:.1f} | "
                     f"{x['mean_server_batch'] or 0:.1f} | {gf} | {x['errors']} |")
    c, loc = r["comparisons"], r["in_process"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines += ["", f"At concurrency {c['concurrency']}: packed / dense throughput {fmt(c['packed_over_dense_throughput'])}, "
              f"packed / padded invariant {fmt(c['packed_over_invariant_throughput'])}, packed p99 / dense p99 "
              f"{fmt(c['packed_p99_over_dense_p99'])}; served / in-process packed at batch {loc['batch']} "
              f"{fmt(c['served_over_in_process'])} (in-process {loc['throughput_per_s']:.1f} img/s with decoding, "
              f"{loc['session_only_throughput_per_s']:.1f} img/s session only).",
              "Answers at the largest concurrency against local onnxruntime batch 1: " + "; ".join(
                  f"{v}: {x['requests']} requests, max |EMBEDS diff| {x['max_abs_embeds_diff']:.2e}, KEPT "
                  f"{'equal' if x['kept_equal'] else 'DIFFERENT'}" for v, x in r["correctness"].items()) + ".",
              f"perf_analyzer: {r['perf_analyzer']}."]
    return "\n".join(lines) + "\n"
