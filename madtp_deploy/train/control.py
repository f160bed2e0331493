"""The temperature controller, scale-free.

The reference (compress_retrieval_clip_dtp.py) moves T after each epoch by a step picked from the
absolute gap |current - target| in GFLOPs (50/30/20/10/5/2 GFLOPs -> 0.5/0.3/0.2/0.1/0.05/0.02,
else 0.01) for a 395.7-GFLOPs model. Those gaps are 12.6/7.6/5.1/2.5/1.3/0.5 % of the dense count;
we use the same table on the gap relative to the dense GFLOPs, so any model size steps alike.
Larger T prunes more.
"""

from __future__ import annotations

STEPS = ((0.126, 0.5), (0.076, 0.3), (0.051, 0.2), (0.025, 0.1), (0.013, 0.05), (0.005, 0.02))
MIN_T = 0.01


def next_temperature(t: float, current: float, target: float, dense: float) -> float:
    gap = (current - target) / dense
    step = next((s for g, s in STEPS if abs(gap) > g), 0.01)
    return max(MIN_T, t + step if gap > 0 else t - step)


def ramp_target(dense: float, target: float, step: int, ramp_steps: int) -> float:
    """The GFLOPs target at `step` when it falls linearly from `dense` to `target` over `ramp_steps` (0: the
    final target from the first step, as the reference)."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return target
    return dense + (target - dense) * step / ramp_steps


def search_temperature(measure, t: float, target: float, dense: float, tol: float = 0.013,
                       max_iter: int = 25) -> tuple[float, float]:
    """The reference's calculate_temperature: step T with the controller until `measure(t)` (GFLOPs
    at temperature t) is within `tol` of the target, relative to the dense count. Returns (T, GFLOPs)."""
    cur = measure(t)
    for _ in range(max_iter):
        if abs(cur - target) / dense <= tol:
            break
        t = next_temperature(t, cur, target, dense)
        cur = measure(t)
    return t, cur
