"""fp32 against quantized graphs: keep-count agreement, retrieval recall, per-instance GFLOPs, latency."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .. import flops


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # two sessions take turns: idle pool threads would otherwise spin on the cores the other one needs
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_all(sess, arrays: dict[str, np.ndarray], batch: int = 64) -> dict[str, np.ndarray]:
    names = [i.name for i in sess.get_inputs()]
    outs = [o.name for o in sess.get_outputs()]
    n = len(arrays[names[0]])
    parts = [sess.run(outs, {k: arrays[k][i:i + batch] for k in names}) for i in range(0, n, batch)]
    return {o: np.concatenate([p[j] for p in parts]) for j, o in enumerate(outs)}


def keep_agreement(ref: np.ndarray, other: np.ndarray) -> dict:
    """Share of (instance, layer) keep counts equal to the reference's, and how far the rest moved."""
    ref, other = np.asarray(ref), np.asarray(other)
    eq = ref == other
    return {"equal_share": float(eq.mean()), "instances_all_equal": float(eq.all(1).mean()),
            "pairs": int(eq.size), "mean_abs_diff": float(np.abs(ref - other).mean()),
            "mean_kept_ref": [float(v) for v in ref.mean(0)], "mean_kept": [float(v) for v in other.mean(0)]}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).mean())


def retrieval_inputs(spec, data: Path, split: str = "test"):
    """(split, pixels, input_ids, attention_mask) of a dataset split, as the graphs take them."""
    from ..data import dataset

    s = dataset.load(Path(data), split)
    ids, mask = dataset.tokenizer_for(Path(data), spec)(s.captions, where=str(s.annotation))
    return s, s.pixels(spec.image_size).numpy(), ids.numpy(), mask.numpy()


def retrieval(spec, split, pixels, ids, mask, image_onnx: Path, text_onnx: Path) -> tuple[dict, dict, dict]:
    """Recall@1/5/10 both ways with onnxruntime encoders, per-instance GFLOPs, kept counts."""
    from ..evaluate import recalls

    img = run_all(session(image_onnx), {"pixels": pixels})
    txt = run_all(session(text_onnx), {"input_ids": ids, "attention_mask": mask})
    r = recalls(torch.from_numpy(img["embeds"]), torch.from_numpy(txt["embeds"]), split)
    fi = flops.image_flops(spec, torch.from_numpy(img["kept"]), True).gflops
    ft = flops.text_flops(spec, torch.from_numpy(mask.sum(1)), torch.from_numpy(txt["kept"]), True).gflops
    r.update({"gflops_image": float(fi.mean()), "gflops_text": float(ft.mean()),
              "gflops_pair": float(fi.mean() + ft.mean())})  # one image + one caption
    return r, img, txt


def image_gflops(spec, kept: np.ndarray) -> float:
    return float(flops.image_flops(spec, torch.from_numpy(kept), True).gflops.mean())


def time_interleaved(paths: dict[str, Path], batches: dict[int, list[np.ndarray]], rounds: int,
                     warmup: int = 1, log=print) -> dict:
    """Median ms per (variant, batch): one call of each variant in turn, `rounds` times, so that a
    shared CPU slows every variant alike and the ratios hold."""
    sessions = {k: session(p) for k, p in paths.items()}
    out = {}
    for b, feeds in batches.items():
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for r in range(warmup + rounds):
            for k, s in sessions.items():
                x = feeds[r % len(feeds)]
                t0 = time.perf_counter()
                s.run(None, {"pixels": x})
                if r >= warmup:
                    times[k].append((time.perf_counter() - t0) * 1e3)
        out[b] = {k: {"median_ms": float(np.median(v)), "p10_ms": float(np.percentile(v, 10)),
                      "p90_ms": float(np.percentile(v, 90)), "runs": len(v)} for k, v in times.items()}
        log(f"  batch {b}: " + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in out[b].items()))
    return out
