"""What the public API's input checks cost: `check_pixels` / `check_text` against the shipped
model's own batch-8 call, timed side by side (best of N; the checks are a fixed cost per call).

    python scripts/input_checks.py
"""

from __future__ import annotations

import time

import torch

import madtp_deploy
from madtp_deploy.models.inputs import check_pixels, check_text
from madtp_deploy.onnx.io import sample_images, sample_text


def best(fn, n: int) -> float:
    out = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def main() -> None:
    m = madtp_deploy.load("shipped", mode="packed")
    s = m.spec
    (px,) = sample_images(s, 8, seed=0)
    ids, mask = sample_text(s, 8, seed=0)
    with torch.inference_mode():
        m.encode_image(px), m.encode_text(ids, mask)
        rows = []
        for _ in range(5):  # interleaved rounds: the model call and the check under the same load
            rows.append((best(lambda: m.encode_image(px), 5), best(lambda: check_pixels(s, px), 50),
                         best(lambda: m.encode_text(ids, mask), 5), best(lambda: check_text(s, ids, mask), 50)))
    img, cp, txt, ct = (min(r[i] for r in rows) for i in range(4))
    print(f"shipped model, batch 8, packed, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"encode_image {img * 1e3:.2f} ms, check_pixels {cp * 1e6:.1f} us ({100 * cp / img:.2f}% of the call)")
    print(f"encode_text  {txt * 1e3:.2f} ms, check_text   {ct * 1e6:.1f} us ({100 * ct / txt:.2f}% of the call)")


if __name__ == "__main__":
    main()
