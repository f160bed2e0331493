"""`madtp-deploy bench`: every backend x batch size x {dense, pruned}, measured in one run."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..capacity import DEFAULT_QUANTILE
from ..errors import RuntimeBackendError, UsageError
from ..files import read_json, temp_dir
from ..models.clip import MadtpCLIP
from ..files import weights_sha256
from ..onnx.export import cached_export
from ..onnx.io import encoder_io
from ..runtime.sessions import available_backends
from .. import families
from . import gemm, profile, timing
from .records import comparisons, machine_info

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
    variants: list[str] | None = None      # None: dense, reference, invariant, packed
    temperature: float | None = None
    capacity_quantile: float = DEFAULT_QUANTILE  # the static variant's capacities
    data: str | None = None
    warmup_s: float = 1.0
    min_runs: int = 10
    min_time_s: float = 0.0
    pool: int = 64                          # distinct real images the timed batches rotate through
    profile: bool = True
    cache: str = "export/.bench"
    reuse: tuple[str, ...] = ()             # folders whose matching graphs (`madtp-deploy export`'s) are timed as they are


def parse_batch_sizes(text: str) -> list[int]:
    from ..models.inputs import MAX_BATCH, parse_ints

    return parse_ints(text, "--batch-sizes", 1, MAX_BATCH, "1,8,32", error=UsageError)


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

    if data is None:  # the PNGs live only as long as it takes to read them
        with temp_dir("bench-scenes-") as root:
            scenes.generate(root, n_train=0, n_val=0, n_test=n, seed=123)
            split = dataset.load(root, "test")
            return split.pixels(model.spec.image_size, range(min(n, len(split.images))))
    split = dataset.load(Path(data), "test")
    return split.pixels(model.spec.image_size, range(min(n, len(split.images))))


def _torch_runner(model: MadtpCLIP, compiled: bool):
    fn = model.encode_image
    if compiled:
        fn = torch.compile(model.encode_image, dynamic=True)

    def run(pixels):
        import torch._dynamo as dynamo

        # keep .item() keep counts inside the graph, for this call only (not the process's setting)
        with dynamo.config.patch(capture_scalar_outputs=compiled), torch.inference_mode():
            e = fn(pixels)
        return e.kept.numpy()
    return run


def _ort_runner(path: Path):
    from ..runtime import open_session

    # sessions take turns (dense, pruned variants): without this, idle threads spin on the cores
    s = open_session(path, backend="ort", spinning=False)
    name = s.input_names[0]  # the image graph's one input, as its IO contract names it

    def run(pixels):
        return s.run({name: pixels.numpy()})["kept"]
    return run


PRUNED_VARIANTS = ("reference", "invariant", "packed", "static")
DEFAULT_VARIANTS = ("dense", "reference", "invariant", "packed")
# a pruned variant's graph quantized (onnxruntime static INT8, the pruning path in float): ort only
INT8 = "-int8"
INT8_VARIANTS = ("invariant-int8", "packed-int8", "static-int8")
INT8_SAMPLES = 32  # calibration images (val split of --data, or generated scenes no bench times)
# issue 20: the peers (madtp_deploy.peers) on the dense weights, matched to the pruned model's own GFLOPs
PEER_VARIANTS = ("tome", "topk", "lowres")


def parse_variants(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ("dense",) + PRUNED_VARIANTS + INT8_VARIANTS + PEER_VARIANTS]
    if bad or "dense" not in names or len(names) < 2 or not set(names) & set(PRUNED_VARIANTS + INT8_VARIANTS):
        raise UsageError(f"--variants {text!r}: need dense and at least one of {', '.join(PRUNED_VARIANTS)}"
                         f"{' (unknown: ' + ', '.join(bad) + ')' if bad else ''}; fix: e.g. dense,invariant,packed")
    return names


def _load_variants(cfg: BenchConfig, log) -> tuple[dict, dict, str]:
    """{variant: eager model}, {variant: given ONNX path}, and the source, for the configuration."""
    from ..api import load
    from ..capacity import fit_profiles, apply

    source, temperature, given = cfg.model, cfg.temperature, {}
    variants = list(cfg.variants or DEFAULT_VARIANTS)
    side = None
    if cfg.onnx:  # the eager and dense variants come from the model the ONNX was exported from
        if not Path(cfg.onnx).is_file():
            raise RuntimeBackendError(f"{cfg.onnx}: no such ONNX file; fix: run `madtp-deploy export` first")
        side = read_json(Path(cfg.onnx).with_suffix(".json"), RuntimeBackendError, "sidecar missing",
                         "export with `madtp-deploy export`, which writes it")
        from ..onnx.validate import check_sidecar_matches

        check_sidecar_matches(Path(cfg.onnx), Path(cfg.onnx).with_suffix(".json"), side)  # an ONNX, and this one
        m = side["model"]
        source, temperature = m["source"], m["temperature"]
        variant = ("static" if m.get("capacity") else m["mode"]) + (INT8 if side.get("quantization") else "")
        variants, given = ["dense", variant], {variant: Path(cfg.onnx)}
    models = {"dense": load(source, mode="invariant", temperature=0.0)}
    family = families.of(models["dense"])
    family.require("bench", f"--model {source}")
    if cfg.variants is None:  # the defaults this family benches
        variants = [v for v in variants if v in family.bench_variants]
    bad = [v for v in variants if v not in family.bench_variants]
    if bad:
        raise UsageError(f"--variants {','.join(bad)}: {family.title} models bench {', '.join(family.bench_variants)}; "
                         f"fix: e.g. --variants {','.join(v for v in family.bench_variants if v != 'static')}")
    for v in [v for v in variants[1:] if v not in PEER_VARIANTS]:
        base = v.removesuffix(INT8)  # an INT8 variant: its fp32 variant's model, the graph quantized
        models[v] = load(source, mode="invariant" if base == "static" else base, temperature=temperature)
        if models[v].temperature <= 0:
            raise UsageError(f"{source}: temperature is 0 (a dense model): nothing to compare; fix: pass "
                             f"--temperature T or a MADTP checkpoint")
    static = [v for v in ("static", "static" + INT8) if v in models]
    if static:
        first = models[static[0]]
        if side is not None:
            first.capacity = {"image": tuple(side["model"]["capacity"])}
        else:
            profiles = fit_profiles(first, ("image",), cfg.capacity_quantile, None, 256, str(source),
                                    weights_sha256(first))
            apply(first, profiles)
            log(f"static: capacities {profiles['image'].capacity} (quantile {cfg.capacity_quantile:g})")
        for v in static[1:]:
            models[v].capacity = dict(first.capacity)
    if set(variants) & set(PEER_VARIANTS):  # matched on the bench's images (the same pool run_image_bench reads)
        from ..peers.bench import matched_peers

        images = bench_images(models["dense"], cfg.data, cfg.pool)
        models.update(matched_peers([v for v in variants if v in PEER_VARIANTS], models, images, log))
    return models, given, str(source)


def image_gflops(spec, kept: torch.Tensor, pruning: bool) -> torch.Tensor:
    """Per-image GFLOPs of the image encoder from kept counts [B, layers], by the spec's family."""
    return families.of(spec).hook("image_gflops")(spec, kept, pruning)


def _packed_gflops(spec, kept: torch.Tensor) -> torch.Tensor:
    return families.of(spec).hook("packed_image_gflops")(spec, kept)


def _effective(variant: str, spec, kept: list[np.ndarray], capacity=None) -> torch.Tensor:
    """Per-instance GFLOPs of what each timed batch computes, in this layout."""
    if variant == "packed":
        return torch.cat([_packed_gflops(spec, torch.from_numpy(o)) for o in kept])
    if variant == "static":
        from ..capacity import capacity_kept

        return image_gflops(spec, capacity_kept(list(capacity), sum(len(o) for o in kept)), True)
    padded = torch.cat([torch.from_numpy(o).max(0, keepdim=True).values.expand(len(o), -1) for o in kept])
    return image_gflops(spec, padded, variant != "dense")


def _graph_nodes(path: Path) -> dict:
    """Node counts of an exported graph, as written and after onnxruntime's optimizations."""
    import onnx
    import onnxruntime as ort

    with temp_dir("ort-opt-") as d:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(d / "opt.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        after = len(onnx.load(str(d / "opt.onnx"), load_external_data=False).graph.node)
    return {"nodes": len(onnx.load(str(path), load_external_data=False).graph.node), "nodes_ort": after}


def run_bench(cfg: BenchConfig, log=print, progress=None) -> dict:
    """Every backend x batch size x variant of the model, in one run: the family's bench runner."""
    reasons = available_backends()
    reasons["torch-compile"] = None
    wanted = cfg.backends or [b for b in BENCH_BACKENDS if reasons.get(b) is None and b not in OPT_IN]
    unavailable = {b: reasons[b] for b in BENCH_BACKENDS if reasons.get(b)}
    if cfg.backends:
        for b in cfg.backends:
            if reasons.get(b):
                raise RuntimeBackendError(f"--backend {b}: unavailable: {reasons[b]}")
    models, given, source = _load_variants(cfg, log)
    pruned = next(m for v, m in models.items() if v != "dense")
    weights_hash = weights_sha256(pruned)  # every variant has the same weights
    run = families.of(pruned).hook("bench")
    return run(cfg, models, given, source, wanted, unavailable, weights_hash, log=log, progress=progress)


def run_image_bench(cfg: BenchConfig, models: dict, given: dict, source: str, wanted: list, unavailable: dict,
                    weights_hash: str, log=print, progress=None) -> dict:
    """The image encoder's bench (CLIP, BLIP retrieval): real images, every variant's own ONNX graph."""
    pruned = next(m for v, m in models.items() if v != "dense")
    spec = pruned.spec
    images = bench_images(pruned, cfg.data, cfg.pool)
    log(f"bench {spec.name}: T {pruned.temperature:g}, variants {', '.join(models)}, {len(images)} real images, "
        f"backends {', '.join(wanted)}" + (f"; unavailable: {', '.join(unavailable)}" if unavailable else ""))

    rates = {"torch": gemm.torch_gemm_gflops()}
    if any(b.startswith("ort") for b in wanted):
        rates["ort"] = gemm.ort_gemm_gflops()
    cache = Path(cfg.cache)
    onnx_paths, graphs = {}, {}
    if "ort" in wanted:
        cache.mkdir(parents=True, exist_ok=True)
        for v, m in models.items():
            onnx_paths[v] = given.get(v) or cached_export(m, cache, v.removesuffix(INT8), source="bench",
                                                          weights_hash=weights_hash, reuse=cfg.reuse)["image"]
            if v.endswith(INT8) and v not in given:
                onnx_paths[v] = _int8_graph(onnx_paths[v], spec, cfg, cache, log)
            graphs[v] = _graph_nodes(onnx_paths[v])
        layers = spec.vision_layers
        for v in graphs:
            if v != "dense":
                graphs[v]["nodes_per_pruned_layer"] = (graphs[v]["nodes"] - graphs["dense"]["nodes"]) / layers
                graphs[v]["nodes_ort_per_pruned_layer"] = (graphs[v]["nodes_ort"] - graphs["dense"]["nodes_ort"]) / layers

    results, compile_notes = [], {}
    total = len(wanted) * len(cfg.batch_sizes) * len(models)
    task = progress.add_task("bench", total=total) if progress else None
    for backend in wanted:
        runners = {}
        for variant, model in models.items():
            try:
                t0 = time.perf_counter()
                if variant.endswith(INT8) and backend != "ort":
                    raise RuntimeBackendError(f"{variant}: a Q/DQ ONNX graph, timed on --backend ort only")
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
            own = _own_gflops(models, timed, batches)
            for variant, (lat, outs, peak) in timed.items():
                model = models[variant]
                kept = torch.from_numpy(np.concatenate(outs))
                per = model.image_gflops(kept) if variant in PEER_VARIANTS else image_gflops(spec, kept, variant != "dense")
                capacity = (getattr(model, "capacity", None) or {}).get("image")
                eff = per if variant in PEER_VARIANTS else _effective(variant.removesuffix(INT8), spec, outs, capacity)
                # an INT8 graph's own decisions are its kept counts (batch-independent), not fp32's
                own_v = per if variant in ("dense", f"invariant{INT8}", f"packed{INT8}") + PEER_VARIANTS \
                    else own[: len(per)]
                st = timing.stats(lat)
                rate = rates["ort" if backend.startswith("ort") else "torch"]
                floor_ms = float(eff.mean()) * b / rate * 1e3
                results.append({
                    "backend": backend, "variant": variant, "batch": b, **st,
                    "throughput_per_s": b / (st["median_ms"] / 1e3),
                    "gflops_per_instance": {"mean": float(per.mean()), "min": float(per.min()), "max": float(per.max())},
                    "gflops_own_per_instance": float(own_v.mean()),
                    "gflops_effective_per_instance": float(eff.mean()),
                    "eff_over_own": float(eff.mean() / own_v.mean()),
                    "kept_per_layer": [float(v) for v in kept.double().mean(0)],
                    "peak_rss_mb": peak,
                    "floor_ms": floor_ms, "over_floor": st["median_ms"] / floor_ms if floor_ms else None,
                })
            if progress:
                progress.update(task, advance=len(models), description=f"{backend} b{b}")
    report = {
        "schema": "madtp-deploy/bench/2",
        "config": asdict(cfg),
        "machine": machine_info(),
        "model": {"source": source, "spec": spec.to_dict(), "temperature": pruned.temperature,
                  "variants": list(models), "weights_sha256": weights_hash,
                  "capacity": list(models["static"].capacity["image"]) if "static" in models else None},
        "encoder": "image",
        "gemm_gflops": rates,
        "unavailable_backends": unavailable,
        "graphs": graphs,
        "results": results,
        "comparisons": comparisons(results, wanted, cfg.batch_sizes),
        "notes": {"torch-compile": compile_notes,
                  "gflops": "2 FLOPs per multiply-add. per_instance: from the kept counts each variant reports "
                            "(reference: the batch's max-keep); own: from each instance's own (batch-1, invariant) "
                            "decisions; effective: what the batch computes (padded variants: the batch's largest "
                            "count per layer; packed: own tokens for per-token work, attention padded; static: "
                            "the capacities)"},
    }
    if cfg.profile and "ort" in wanted:
        b = 8 if 8 in cfg.batch_sizes else cfg.batch_sizes[0]
        name = encoder_io(pruned, "image").input_names[0]
        feeds = [{name: images[(i * b + np.arange(b)) % len(images)].numpy()} for i in range(4)]
        report["machinery_share_ort"] = {v: {"batch": b, **profile.machinery_share(onnx_paths[v], feeds)}
                                         for v in models if v != "dense" and v not in PEER_VARIANTS}
    return report


def _int8_graph(fp32: Path, spec, cfg: BenchConfig, cache: Path, log) -> Path:
    """The INT8 graph of a variant's fp32 export: calibrated on INT8_SAMPLES images that no bench
    times (the val split of --data, or generated scenes, seed 7), cached beside the fp32 graphs."""
    from ..data import dataset, scenes
    from ..quant.calibset import build_set
    from ..quant.run import cached_int8

    with temp_dir("bench-calib-") as root:
        if cfg.data is None:
            scenes.generate(root, n_train=0, n_val=INT8_SAMPLES, n_test=0, seed=7)
        data = Path(cfg.data) if cfg.data else root
        n = min(INT8_SAMPLES, len(dataset.load(data, "val").images))
        arrays, _ = build_set("image", spec, data, "val", n, seed=0)
    where = f"{n} val images of {cfg.data or 'generated scenes (seed 7)'}"
    return cached_int8(fp32, arrays, where, cache, log=log)


def _own_gflops(models: dict, timed: dict, batches: list) -> torch.Tensor:
    """Per-instance GFLOPs of each instance's own decisions, over the timed calls in order."""
    exact = next((v for v in ("invariant", "packed") if v in timed), None)
    if exact is not None:
        kept = np.concatenate(timed[exact][1])
    else:  # reference or static only: ask the eager invariant model, call by call
        m = next(m for v, m in models.items() if v != "dense")
        saved_mode, saved_cap = m.mode, getattr(m, "capacity", None)
        m.mode, m.capacity = "invariant", None
        try:
            with torch.inference_mode():
                n = len(timed[next(iter(timed))][1])
                kept = np.concatenate([m.encode_image(batches[i % len(batches)]).kept.numpy() for i in range(n)])
        finally:
            m.mode, m.capacity = saved_mode, saved_cap
    return image_gflops(next(iter(models.values())).spec, torch.from_numpy(kept), True)
