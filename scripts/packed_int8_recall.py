"""Recall of the shipped model's packed INT8 graphs against their fp32 graphs (issue 23).

    .venv/bin/python scripts/packed_int8_recall.py [--data data/scenes] [--samples 128]

`calibrate`'s defaults (packed graphs, both encoders, onnxruntime static QDQ, minmax, the pruning path in
float) on the generated val split, then both graph pairs through onnxruntime on the test split: recall@1/5
both ways, per-instance GFLOPs and keep agreement. -> docs/bench/packed-int8-shipped.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from madtp_deploy import load
    from madtp_deploy.data import scenes
    from madtp_deploy.files import write_text_atomic
    from madtp_deploy.quant.compare import keep_agreement, retrieval, retrieval_inputs
    from madtp_deploy.quant.run import calibrate

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "scenes")
    ap.add_argument("--samples", type=int, default=128)
    a = ap.parse_args()
    if not a.data.is_dir():
        scenes.generate(a.data, n_train=4000, n_val=300, n_test=500, seed=0)  # = make-data's defaults
    graphs = {r["info"]["encoder"]: r for r in calibrate(model="shipped", data=a.data, samples=a.samples,
                                                          output=ROOT / "calibration")}
    spec = load("shipped").spec
    split, px, ids, mask = retrieval_inputs(spec, a.data, "test")
    out = {"model": "shipped", "data": "generated scenes (make-data defaults), test split",
           "mode": graphs["image"]["info"]["model"]["mode"], "samples": a.samples}
    kept = {}
    for precision, key in (("fp32", "fp32_onnx"), ("int8", "onnx")):
        r, img, txt = retrieval(spec, split, px, ids, mask, graphs["image"][key], graphs["text"][key])
        out[precision] = {k: round(float(v), 4) for k, v in r.items()}
        kept[precision] = (img["kept"], txt["kept"])
    out["keep_agreement"] = {"image": keep_agreement(kept["fp32"][0], kept["int8"][0]),
                             "text": keep_agreement(kept["fp32"][1], kept["int8"][1])}
    out["delta_r1_points"] = {q: round(out["int8"][q] - out["fp32"][q], 2) for q in ("txt_r1", "img_r1")}
    write_text_atomic(ROOT / "docs" / "bench" / "packed-int8-shipped.json", json.dumps(out, indent=2))
    print(json.dumps({k: out[k] for k in ("mode", "fp32", "int8", "delta_r1_points", "keep_agreement")}, indent=1))


if __name__ == "__main__":
    main()
