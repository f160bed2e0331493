"""What every bench record holds besides its rows: the machine, and each variant against dense."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


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


def comparisons(results: list, backends: list, batch_sizes: list) -> list:
    """Every pruned variant against dense (and packed against padded invariant) on one backend and batch."""
    out = []
    for backend in backends:
        for b in batch_sizes:
            ok = {r["variant"]: r for r in results
                  if r["backend"] == backend and r.get("batch") == b and "error" not in r}
            d = ok.get("dense")
            if d is None:
                continue
            dense_gf = d["gflops_per_instance"]["mean"]
            for v, r in ok.items():
                if v == "dense":
                    continue
                speedup = d["median_ms"] / r["median_ms"]
                own_ratio = dense_gf / r["gflops_own_per_instance"]
                eff_ratio = dense_gf / r["gflops_effective_per_instance"]
                row = {"backend": backend, "batch": b, "variant": v, "speedup": speedup,
                       "own_gflops_ratio": own_ratio, "gflops_ratio": eff_ratio, "eff_over_own": r["eff_over_own"],
                       "speedup_over_own_ratio": speedup / own_ratio, "speedup_over_gflops_ratio": speedup / eff_ratio}
                if v == "packed" and "invariant" in ok:
                    row["speedup_vs_invariant"] = ok["invariant"]["median_ms"] / r["median_ms"]
                out.append(row)
    return out
