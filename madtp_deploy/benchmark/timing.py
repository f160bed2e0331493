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


def time_interleaved(fns: dict, batches: list, warmup_s: float, min_runs: int, min_time_s: float = 0.0):
    """Time several variants side by side: each call of one variant is followed by the others on the
    same batch (alternating who goes first), so drift in the machine's speed hits all of them alike.

    First every variant runs every batch once on its own (compilers see every shape; its peak RSS
    is read), then all warm up together for warmup_s, then >= min_runs rounds (and >= min_time_s).
    Returns {name: (latencies in seconds, outputs, peak RSS MB)}.
    """
    peaks = {}
    for name, fn in fns.items():
        reset_peak_rss()
        for b in batches:
            fn(b)
        peaks[name] = peak_rss_mb()
    i, t_end = 0, time.perf_counter() + warmup_s
    while time.perf_counter() < t_end:
        for fn in fns.values():
            fn(batches[i % len(batches)])
        i += 1
    lat: dict[str, list] = {k: [] for k in fns}
    outs: dict[str, list] = {k: [] for k in fns}
    n, started = 0, time.perf_counter()
    while n < min_runs or time.perf_counter() - started < min_time_s:
        b = batches[n % len(batches)]
        for k in (list(fns) if n % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter()
            out = fns[k](b)
            lat[k].append(time.perf_counter() - t0)
            outs[k].append(out)
        n += 1
    return {k: (np.array(lat[k]), outs[k], peaks[k]) for k in fns}


def stats(lat: np.ndarray) -> dict:
    ms = lat * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "std_ms": float(ms.std()),
            "runs": int(len(ms))}
