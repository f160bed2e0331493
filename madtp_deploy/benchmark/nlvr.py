"""`madtp-deploy bench` for a BLIP NLVR2 model: dense vs reference (max-keep) vs padded invariant vs
packed, on the whole NLVR2 graph (two images and a statement -> logits), eager and onnxruntime, interleaved.

Inputs come from the NLVR2 IO contract's generator (onnx/io.py: structured image pairs, statements of
varied length: they prune differently); timing depends on the keep counts. GFLOPs per instance
(one image pair and its statement) from `flops_blip.nlvr_flops`, 2 FLOPs per multiply-add.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import flops_blip
from ..errors import UsageError
from . import timing

NLVR_VARIANTS = ("dense", "reference", "invariant", "packed")
OUTPUTS = ("logits", "kept_image", "kept_text")


def _gflops(spec, outs: list[tuple], inputs: list[dict], pruning: bool, layout: str = "own") -> torch.Tensor:
    """Per-instance GFLOPs over the timed calls. `layout`: "own" (each instance's own tokens),
    "padded" (what a padded batch computes: every layer at the batch's largest count) or "packed"
    (own tokens, attention padded: flops_blip.packed_nlvr_flops)."""
    out = []
    for (_, ki, kt), x in zip(outs, inputs):
        ki, kt = torch.from_numpy(ki), torch.from_numpy(kt)
        tin = torch.from_numpy(np.asarray(x["attention_mask"])).sum(1)
        if layout == "packed":
            out.append(flops_blip.packed_nlvr_flops(spec, ki, tin, kt).gflops)
            continue
        if layout == "padded":
            ki = ki.amax(0, keepdim=True).expand_as(ki)
            kt = kt.amax(0, keepdim=True).expand_as(kt)
            tin = tin.amax().expand_as(tin)
        out.append(flops_blip.nlvr_flops(spec, ki, tin, kt, pruning).gflops)
    return torch.cat(out)


def run_nlvr_bench(cfg, models: dict, given: dict, source: str, wanted: list[str], unavailable: dict,
                   weights_hash: str, log=print, progress=None) -> dict:
    """The whole NLVR2 graph's bench on torch and onnxruntime (the backends it has)."""
    from ..onnx.export import cached_export
    from ..onnx.io import encoder_io
    from ..runtime import open_session
    from .records import comparisons, machine_info

    spec = models["dense"].spec
    io = encoder_io(spec, "nlvr")
    results = []
    names = io.input_names
    cache = Path(cfg.cache)
    if cfg.backends:
        for backend in cfg.backends:
            if backend not in ("torch", "ort"):
                raise UsageError(f"--backend {backend}: BLIP NLVR2 benches on torch and ort; fix: --backend torch,ort")
    wanted = [b for b in wanted if b in ("torch", "ort")]
    log(f"bench {spec.name} (NLVR2): T {models[next(v for v in models if v != 'dense')].temperature:g}, variants "
        f"{', '.join(models)}, backends {', '.join(wanted)}")
    for backend in wanted:
        runners = {}
        for v, m in models.items():
            if backend == "torch":
                w = io.wrapper(m).eval()

                def run(x, w=w):
                    with torch.inference_mode():
                        return tuple(t.numpy() for t in w(*(torch.from_numpy(x[k]) for k in names)))
            else:
                path = cached_export(m, cache, f"nlvr-{v}", ("nlvr",), source="bench", weights_hash=weights_hash)
                s = open_session(path["nlvr"], backend="ort", spinning=False)

                def run(x, s=s):
                    out = s.run(x)
                    return tuple(out[n] for n in OUTPUTS)
            runners[v] = run
        for b in cfg.batch_sizes:
            batches = [{k: t.numpy() for k, t in io.example(spec, b, seed=i).items()}
                       for i in range(max(1, min(4, cfg.pool // b)))]
            timed = timing.time_interleaved(runners, batches, cfg.warmup_s, cfg.min_runs, cfg.min_time_s)
            calls = [batches[i % len(batches)] for i in range(len(next(iter(timed.values()))[1]))]
            exact = next((v for v in ("invariant", "packed") if v in timed), next(iter(timed)))
            own = _gflops(spec, timed[exact][1], calls, True)
            for v, (lat, outs, peak) in timed.items():
                pruning = v != "dense"
                per = _gflops(spec, outs, calls, pruning)
                eff = _gflops(spec, outs, calls, pruning, "packed" if v == "packed" else "padded")
                own_v = per if v == "dense" else own
                st = timing.stats(lat)
                results.append({
                    "backend": backend, "variant": v, "batch": b, **st,
                    "throughput_per_s": b / (st["median_ms"] / 1e3),
                    "gflops_per_instance": {"mean": float(per.mean()), "min": float(per.min()), "max": float(per.max())},
                    "gflops_own_per_instance": float(own_v.mean()),
                    "gflops_effective_per_instance": float(eff.mean()),
                    "eff_over_own": float(eff.mean() / own_v.mean()),
                    "kept_per_layer": [float(x) for x in np.concatenate([o[1] for o in outs])[:, 0].mean(0)],
                    "peak_rss_mb": peak, "floor_ms": 0.0, "over_floor": 0.0,
                })
    return {
        "schema": "madtp-deploy/bench/2", "config": asdict(cfg), "machine": machine_info(),
        "model": {"source": source, "spec": spec.to_dict(),
                  "temperature": models[next(v for v in models if v != "dense")].temperature,
                  "variants": list(models), "weights_sha256": weights_hash, "capacity": None},
        "encoder": "nlvr", "gemm_gflops": {}, "unavailable_backends": {}, "graphs": {},
        "results": results, "comparisons": comparisons(results, wanted, cfg.batch_sizes),
        "notes": {"gflops": "one NLVR2 instance (two images, the statement, cls_head); inputs from the NLVR2 IO "
                            "contract's generator; kept_per_layer: image 0's; floor not measured for NLVR2"},
    }
