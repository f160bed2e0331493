"""`madtp-deploy bench`: every backend x batch size x {dense, pruned}, measured in one run."""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import flops
from ..errors import RuntimeBackendError, UsageError
from ..files import read_json
from ..models.clip import MadtpCLIP
from ..onnx.io import encoder_io
from ..runtime.sessions import available_backends
from . import gemm, profile, timing

BENCH_BACKENDS = ("torch", "torch-compile", "ort", "ort-cuda", "trt")
# torch.compile is the peer a PyTorch user tries first; it recompiles for new shapes, which makes it
# slow to measure, so it runs when asked for (`make bench` does) rather than by default.
OPT_IN = ("torch-compile",)


@dataclass
class BenchConfig:
    model: str = "shipped"
    onnx: str | None = None
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    backends: list[str] | None = None      # None: every backend available here
    mode: str = "reference"
    temperature: float | None = None
    data: str | None = None
    warmup_s: float = 1.0
    min_runs: int = 10
    min_time_s: float = 0.0
    pool: int = 64                          # distinct real images the timed batches rotate through
    profile: bool = True
    cache: str = "export/.bench"


def parse_batch_sizes(text: str) -> list[int]:
    parts = text.split(",")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--batch-sizes {text!r}: not a comma-separated list of integers; fix: e.g. 1,8,32") from None
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"--batch-sizes {text!r}: sizes must be >= 1; fix: e.g. 1,8,32")
    return sizes


def parse_backends(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",")]
    bad = [n for n in names if n not in BENCH_BACKENDS]
    if bad or not names:
        raise UsageError(f"--backend {text!r}: unknown backend(s) {', '.join(bad)}; fix: choose from "
                         f"{', '.join(BENCH_BACKENDS)}")
    return names


def bench_images(model: MadtpCLIP, data: str | None, n: int) -> torch.Tensor:
    """Real inputs: the dataset's test images, or the generated scenes (written to a temp folder)."""
    from ..data import dataset, scenes

    if data is None:
        root = Path(tempfile.mkdtemp(prefix="bench-scenes-"))
        scenes.generate(root, n_train=0, n_val=0, n_test=n, seed=123)
        data = root
    split = dataset.load(Path(data), "test")
    return split.pixels(model.spec.image_size, range(min(n, len(split.images))))


def _export_cached(model: MadtpCLIP, cache: Path, label: str, weights_hash: str) -> Path:
    """The image encoder's ONNX (the only one the bench times), keyed on weights, settings and code."""
    from ..onnx.export import export_model

    code = b"".join(f.read_bytes() for f in sorted(Path(__file__).parents[1].glob("**/*.py")))  # stale-proof
    key = hashlib.sha256(f"{weights_hash}-{model.temperature}-{model.mode}".encode() + code).hexdigest()[:16]
    path = cache / f"{label}-{key}.image.onnx"
    if not path.exists():
        export_model(model, cache, f"{label}-{key}", source="bench", validate=False, log=lambda *_: None,
                     encoders=("image",), weights_hash=weights_hash)
    return path


def _torch_runner(model: MadtpCLIP, compiled: bool):
    fn = model.encode_image
    if compiled:
        import torch._dynamo as dynamo

        dynamo.config.capture_scalar_outputs = True  # keep .item() keep counts inside the graph
        fn = torch.compile(model.encode_image, dynamic=True)

    def run(pixels):
        with torch.inference_mode():
            e = fn(pixels)
        return e.kept.numpy()
    return run


def _ort_runner(path: Path):
    from ..runtime import open_session

    # two sessions take turns (dense, pruned): without this, the idle one's threads spin on the cores
    s = open_session(path, backend="ort", spinning=False)

    name = s.input_names[0]  # the image graph's one input, as its IO contract names it

    def run(pixels):
        return s.run({name: pixels.numpy()})["kept"]
    return run


def machine_info() -> dict:
    import onnxruntime

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def run_bench(cfg: BenchConfig, log=print, progress=None) -> dict:
    from ..api import load
    from ..onnx.export import weights_sha256

    reasons = available_backends()
    reasons["torch-compile"] = None
    wanted = cfg.backends or [b for b in BENCH_BACKENDS if reasons.get(b) is None and b not in OPT_IN]
    unavailable = {b: reasons[b] for b in BENCH_BACKENDS if reasons.get(b)}
    if cfg.backends:
        for b in cfg.backends:
            if reasons.get(b):
                raise RuntimeBackendError(f"--backend {b}: unavailable: {reasons[b]}")
    source, mode, temperature = cfg.model, cfg.mode, cfg.temperature
    if cfg.onnx:  # the eager and dense variants come from the model the ONNX was exported from
        if not Path(cfg.onnx).is_file():
            raise RuntimeBackendError(f"{cfg.onnx}: no such ONNX file; fix: run `madtp-deploy export` first")
        side = read_json(Path(cfg.onnx).with_suffix(".json"), RuntimeBackendError, "sidecar missing",
                         "export with `madtp-deploy export`, which writes it")["model"]
        source, mode, temperature = side["source"], side["mode"], side["temperature"]

    pruned = load(source, mode=mode, temperature=temperature)
    if pruned.temperature <= 0:
        raise UsageError(f"{source}: temperature is 0 (a dense model): nothing to compare; fix: pass "
                         f"--temperature T or a MADTP checkpoint")
    dense = load(source, mode=mode, temperature=0.0)
    weights_hash = weights_sha256(pruned)  # dense has the same weights
    images = bench_images(pruned, cfg.data, cfg.pool)
    log(f"bench {pruned.spec.name}: T {pruned.temperature:g}, mode {mode}, {len(images)} real images, "
        f"backends {', '.join(wanted)}" + (f"; unavailable: {', '.join(unavailable)}" if unavailable else ""))

    rates = {"torch": gemm.torch_gemm_gflops()}
    if any(b.startswith("ort") for b in wanted):
        rates["ort"] = gemm.ort_gemm_gflops()
    cache = Path(cfg.cache)
    cache.mkdir(parents=True, exist_ok=True)
    onnx_paths = {}
    if "ort" in wanted:
        onnx_paths["pruned"] = Path(cfg.onnx) if cfg.onnx else _export_cached(pruned, cache, "pruned", weights_hash)
        onnx_paths["dense"] = _export_cached(dense, cache, "dense", weights_hash)

    results, compile_notes = [], {}
    total = len(wanted) * len(cfg.batch_sizes) * 2
    task = progress.add_task("bench", total=total) if progress else None
    models = {"dense": dense, "pruned": pruned}
    for backend in wanted:
        runners = {}
        for variant, model in models.items():
            try:
                t0 = time.perf_counter()
                if backend in ("torch", "torch-compile"):
                    runners[variant] = _torch_runner(model, compiled=backend == "torch-compile")
                    if backend == "torch-compile":
                        runners[variant](images[:1])
                        compile_notes[variant] = f"first call (compile) {time.perf_counter() - t0:.1f} s"
                elif backend == "ort":
                    runners[variant] = _ort_runner(onnx_paths[variant])
                else:
                    raise RuntimeBackendError(f"{backend}: no runner on this machine")
            except Exception as exc:  # noqa: BLE001 - record why a peer does not work, keep going
                results.append({"backend": backend, "variant": variant, "error": f"{type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"})
        for b in cfg.batch_sizes:
            batches = [images[(i * b + np.arange(b)) % len(images)] for i in range(max(1, min(8, len(images) // b)))]
            try:
                timed = timing.time_interleaved(runners, batches, cfg.warmup_s, cfg.min_runs, cfg.min_time_s)
            except Exception as exc:  # noqa: BLE001
                results += [{"backend": backend, "variant": v, "batch": b,
                             "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"} for v in runners]
                continue
            for variant, (lat, outs, peak) in timed.items():
                model = models[variant]
                kept = torch.from_numpy(np.concatenate(outs))
                on = variant == "pruned"
                per = flops.image_flops(model.spec, kept, on).gflops
                padded = torch.cat([torch.from_numpy(o).max(0, keepdim=True).values.expand(len(o), -1) for o in outs])
                eff = flops.image_flops(model.spec, padded, on).gflops
                st = timing.stats(lat)
                rate = rates["ort" if backend.startswith("ort") else "torch"]
                floor_ms = float(eff.mean()) * b / rate * 1e3
                results.append({
                    "backend": backend, "variant": variant, "batch": b, **st,
                    "throughput_per_s": b / (st["median_ms"] / 1e3),
                    "gflops_per_instance": {"mean": float(per.mean()), "min": float(per.min()), "max": float(per.max())},
                    "gflops_effective_per_instance": float(eff.mean()),
                    "kept_per_layer": [float(v) for v in kept.double().mean(0)],
                    "peak_rss_mb": peak,
                    "floor_ms": floor_ms, "over_floor": st["median_ms"] / floor_ms if floor_ms else None,
                })
            if progress:
                progress.update(task, advance=2, description=f"{backend} b{b}")
    comparisons = []
    for backend in wanted:
        for b in cfg.batch_sizes:
            d = next((r for r in results if r["backend"] == backend and r.get("batch") == b
                      and r["variant"] == "dense" and "error" not in r), None)
            p = next((r for r in results if r["backend"] == backend and r.get("batch") == b
                      and r["variant"] == "pruned" and "error" not in r), None)
            if d and p:
                speedup = d["median_ms"] / p["median_ms"]
                ratio = d["gflops_per_instance"]["mean"] / p["gflops_effective_per_instance"]
                comparisons.append({"backend": backend, "batch": b, "speedup": speedup, "gflops_ratio": ratio,
                                    "speedup_over_gflops_ratio": speedup / ratio})
    report = {
        "schema": "madtp-deploy/bench/1",
        "config": asdict(cfg),
        "machine": machine_info(),
        "model": {"source": source, "spec": pruned.spec.to_dict(), "temperature": pruned.temperature,
                  "mode": mode, "weights_sha256": weights_hash},
        "encoder": "image",
        "gemm_gflops": rates,
        "unavailable_backends": unavailable,
        "results": results,
        "comparisons": comparisons,
        "notes": {"torch-compile": compile_notes,
                  "gflops": "2 FLOPs per multiply-add; per_instance from each instance's kept counts, effective "
                            "= what the padded batch computes (max kept per layer)"},
    }
    if cfg.profile and "pruned" in onnx_paths:
        b = 8 if 8 in cfg.batch_sizes else cfg.batch_sizes[0]
        name = encoder_io(pruned, "image").input_names[0]
        feeds = [{name: images[(i * b + np.arange(b)) % len(images)].numpy()} for i in range(4)]
        report["machinery_share_ort"] = {"batch": b, **profile.machinery_share(onnx_paths["pruned"], feeds)}
    return report
