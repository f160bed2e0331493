"""`make peers`: MADTP beside ToMe, static top-k and low resolution (issue 20), into docs/.

-> docs/bench/peers-accuracy.json (+ .md table), docs/peers.png (R@1 vs GFLOPs), docs/bench/peers-shipped.json
and docs/bench/peers-vit-b16.json (onnxruntime, batch 1, 8, 32; dense, packed and the peers interleaved).
The logic is madtp_deploy/peers/report.py. `--only accuracy|shipped|vit-b16` runs one part.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from madtp_deploy.api import SHIPPED_NAMES
    from madtp_deploy.files import write_text_atomic
    from madtp_deploy.peers import report

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / "data" / "scenes"), help="the scenes dataset (make-data)")
    ap.add_argument("--only", choices=("accuracy", "shipped", "vit-b16"))
    ap.add_argument("--min-runs", type=int, default=5)
    a = ap.parse_args()
    out = ROOT / "docs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    if a.only in (None, "accuracy"):
        if not Path(a.data).is_dir():
            from madtp_deploy.data import scenes

            scenes.generate(Path(a.data), n_train=4000, n_val=300, n_test=500, seed=0)  # = make-data's defaults
        dense = SHIPPED_NAMES["shipped-dense"]
        acc = report.accuracy(a.data, "shipped", dense if dense.is_file() else None)
        for key in ("data", "dense"):  # records name files relative to the repository
            if acc.get(key) and Path(acc[key]).resolve().is_relative_to(ROOT):
                acc[key] = str(Path(acc[key]).resolve().relative_to(ROOT))
        import json

        write_text_atomic(out / "peers-accuracy.json", json.dumps(acc, indent=2))
        write_text_atomic(out / "peers-accuracy.md", report.table_markdown(acc))
        report.plot(acc, ROOT / "docs" / "peers.png")
        print(report.table_markdown(acc))
    if a.only in (None, "shipped"):
        r = report.bench("shipped", out / "peers-shipped.json", min_runs=a.min_runs)
        print(report.summary_markdown(r))
    if a.only in (None, "vit-b16"):
        spec = importlib.util.spec_from_file_location("run_bench", ROOT / "scripts" / "run_bench.py")
        run_bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run_bench)
        ckpt = run_bench.geometry_checkpoint("clip-vit-b16")  # seeded random weights, T for 50% of the GFLOPs
        r = report.bench(ckpt, out / "peers-vit-b16.json", min_runs=a.min_runs, pool=16)
        print(report.summary_markdown(r))


if __name__ == "__main__":
    sys.exit(main())
