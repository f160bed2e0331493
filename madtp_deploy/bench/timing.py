"""Timing primitives: warm-up by time, then at least N runs; statistics; peak RSS per configuration."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM (peak RSS) so each configuration gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def time_runs(fn, batches: list, warmup_s: float, min_runs: int, min_time_s: float = 0.0):
    """Call fn(batch) rotating over `batches`: warm up for warmup_s, then time >= min_runs calls
    (and >= min_time_s). Returns (latencies in seconds, outputs of the timed calls)."""
    for b in batches:  # every batch once (compilers see every shape before timing), then by time
        fn(b)
    i, t_end = 0, time.perf_counter() + warmup_s
    while time.perf_counter() < t_end:
        fn(batches[i % len(batches)])
        i += 1
    lat, outs, started = [], [], time.perf_counter()
    while len(lat) < min_runs or time.perf_counter() - started < min_time_s:
        b = batches[len(lat) % len(batches)]
        t0 = time.perf_counter()
        out = fn(b)
        lat.append(time.perf_counter() - t0)
        outs.append(out)
    return np.array(lat), outs


def stats(lat: np.ndarray) -> dict:
    ms = lat * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "std_ms": float(ms.std()),
            "runs": int(len(ms))}
