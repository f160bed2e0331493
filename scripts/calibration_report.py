"""`make calibration-report`: INT8 (and ModelOpt INT8 / FP8) against fp32 on the shipped model and
the ViT-B/16 geometry, recorded in docs/bench/calibration.json and the "Calibration" sections of
docs/RESULTS.md and docs/BENCHMARKS.md. The work is madtp_deploy.quant.report.

Usage: scripts/calibration_report.py [--shipped-only | --vitb-only | --docs-only | --latency | --noise]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from madtp_deploy.quant.report import main  # noqa: E402

FLAGS = ("--shipped-only", "--vitb-only", "--docs-only", "--latency", "--noise")

if __name__ == "__main__":
    bad = [a for a in sys.argv[1:] if a not in FLAGS]
    if bad:
        sys.exit(f"calibration_report.py: unknown option(s) {' '.join(bad)}; fix: one of {', '.join(FLAGS)}")
    main(set(sys.argv[1:]), ROOT)
