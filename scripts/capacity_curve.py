"""The capacity curve: what fixed per-layer slot counts (static-shape graphs) cost and lose.

For each quantile q of the per-layer keep counts (fitted on calibration inputs that are not the
test split), on the shipped model and the generated scenes' test split (the recipe's dataset):
capacity GFLOPs against the instances' own, the share of instances that overflow some layer,
recall@1 against the exact (invariant) model, and onnxruntime latency at batch 8 of the static
image graph against the dynamic padded and packed ones (interleaved, one run). The ViT-B/16
geometry (random weights, the bench's temperature) gets the GFLOPs and overflow columns.

    python scripts/capacity_curve.py            # -> docs/bench/capacity.json, printed as markdown
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

import madtp_deploy
from madtp_deploy import capacity, flops
from madtp_deploy.data import dataset, scenes
from madtp_deploy.evaluate import evaluate
from madtp_deploy.files import temp_dir

ROOT = Path(__file__).resolve().parents[1]
QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def shipped_curve(root: Path, work: Path) -> dict:
    from madtp_deploy.benchmark import timing
    from madtp_deploy.files import weights_sha256
    from madtp_deploy.onnx.export import export_model
    from madtp_deploy.runtime import open_session

    m = madtp_deploy.load("shipped", mode="invariant")
    test = dataset.load(root, "test")
    tok = dataset.tokenizer_for(root, m.spec)
    exact = evaluate(m, test, tok, batch_size=64)
    own = exact["gflops_per_pair"]
    pixels = test.pixels(m.spec.image_size)
    rows = []
    sessions = {}
    for mode in ("invariant", "packed"):
        d = madtp_deploy.load("shipped", mode=mode)
        export_model(d, work, f"dyn-{mode}", source="shipped", validate=False, encoders=("image",), log=lambda *_: None)
        sessions[mode] = open_session(work / f"dyn-{mode}.image.onnx", spinning=False)
    for q in QUANTILES:
        mq = madtp_deploy.load("shipped", mode="invariant")
        profiles = capacity.fit_profiles(mq, ("image", "text"), q, root, 256, "shipped", weights_sha256(mq))
        capacity.apply(mq, profiles)
        r = evaluate(mq, test, tok, batch_size=64)
        with torch.inference_mode():
            over_img = torch.cat([mq.encode_image(pixels[i:i + 64]).overflow.any(1) for i in range(0, len(pixels), 64)])
        n_txt = len(test.captions)
        ids, mask = test.tokenize(tok)
        with torch.inference_mode():
            over_txt = torch.cat([mq.encode_text(ids[i:i + 64], mask[i:i + 64]).overflow.any(1)
                                  for i in range(0, n_txt, 64)])
        cap_img = flops.image_flops(mq.spec, capacity.capacity_kept(profiles["image"].capacity, 1), True).gflops[0]
        tin = torch.tensor([mq.spec.context_length])
        cap_txt = flops.text_flops(mq.spec, tin, capacity.capacity_kept(profiles["text"].capacity, 1), True).gflops[0]
        export_model(mq, work, f"static-{q}", source="shipped", validate=False, encoders=("image",),
                     log=lambda *_: None)
        sessions[f"static q={q}"] = open_session(work / f"static-{q}.image.onnx", spinning=False)
        rows.append({"quantile": q, "capacity_image": profiles["image"].capacity,
                     "capacity_text": profiles["text"].capacity,
                     "capacity_gflops_per_pair": float(cap_img + cap_txt), "own_gflops_per_pair": own,
                     "capacity_over_own": float(cap_img + cap_txt) / own,
                     "overflow_image": float(over_img.double().mean()), "overflow_text": float(over_txt.double().mean()),
                     "txt_r1": r["txt_r1"], "img_r1": r["img_r1"],
                     "d_txt_r1": r["txt_r1"] - exact["txt_r1"], "d_img_r1": r["img_r1"] - exact["img_r1"]})
        print(rows[-1], flush=True)
    batches = [pixels[i * 8:(i + 1) * 8].numpy() for i in range(8)]
    runners = {k: (lambda s: (lambda b: s.run({"pixels": b})["kept"]))(s) for k, s in sessions.items()}
    timed = timing.time_interleaved(runners, batches, warmup_s=1.0, min_runs=20)
    latency = {k: timing.stats(v[0])["median_ms"] for k, v in timed.items()}
    return {"exact": {k: exact[k] for k in ("txt_r1", "img_r1", "gflops_per_pair", "gflops_dense_per_pair")},
            "rows": rows, "ort_batch8_median_ms": latency}


def vitb_curve(ckpt: Path) -> dict:
    m = madtp_deploy.load(ckpt, mode="packed")
    inputs, prov = capacity.calibration_inputs(m, "image", None, 300)
    demand = capacity.measure_demand(m, "image", inputs)
    kept = []
    with torch.inference_mode():
        for i in range(0, 300, 32):
            kept.append(m.encode_image(inputs["pixels"][i:i + 32]).kept)
    own = float(flops.image_flops(m.spec, torch.cat(kept), True).gflops.mean())
    rows = []
    for q in QUANTILES:
        cap = capacity.quantile_capacity(demand, q)
        g = float(flops.image_flops(m.spec, capacity.capacity_kept(cap, 1), True).gflops[0])
        rows.append({"quantile": q, "capacity_image": cap, "capacity_over_own": g / own,
                     "overflow_image_in_sample": float((demand > torch.tensor(cap)).any(1).double().mean())})
    return {"checkpoint": str(ckpt), "temperature": m.temperature, "inputs": prov, "own_gflops": own, "rows": rows}


def markdown(rec: dict) -> str:
    s = rec["shipped"]
    lines = [f"Shipped model, generated scenes test split (exact invariant model: txt R@1 {s['exact']['txt_r1']:.1f}, "
             f"img R@1 {s['exact']['img_r1']:.1f}, {s['exact']['gflops_per_pair']:.4f} GFLOPs/pair). Capacities "
             f"fitted on the val split (256 images and captions).", "",
             "| quantile | image capacities | capacity / own GFLOPs | overflow (image / text) | txt R@1 (Δ) | "
             "img R@1 (Δ) | ORT batch 8 ms |", "|---|---|---|---|---|---|---|"]
    lat = s["ort_batch8_median_ms"]
    for r in s["rows"]:
        ms = lat[f"static q={r['quantile']}"]
        lines.append(f"| {r['quantile']} | {r['capacity_image']} | {r['capacity_over_own']:.2f}x | "
                     f"{100 * r['overflow_image']:.1f}% / {100 * r['overflow_text']:.1f}% | {r['txt_r1']:.1f} "
                     f"({r['d_txt_r1']:+.1f}) | {r['img_r1']:.1f} ({r['d_img_r1']:+.1f}) | {ms:.2f} |")
    lines.append(f"| dynamic padded (invariant) | - | - | - | - | - | {lat['invariant']:.2f} |")
    lines.append(f"| dynamic packed | - | - | - | - | - | {lat['packed']:.2f} |")
    v = rec["vitb"]
    lines += ["", f"ViT-B/16 geometry (`{v['checkpoint']}`, random weights, T {v['temperature']:g}), 300 generated "
                  f"images (in-sample: the capacities are fitted on the same images):", "",
              "| quantile | capacity / own GFLOPs | overflow |", "|---|---|---|"]
    for r in v["rows"]:
        lines.append(f"| {r['quantile']} | {r['capacity_over_own']:.2f}x | {100 * r['overflow_image_in_sample']:.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = ROOT / "docs" / "bench" / "capacity.json"
    if "--docs-only" not in sys.argv:
        with temp_dir("capacity-curve-") as tmp:
            root = scenes.generate(tmp / "scenes")  # the shipped model's recipe: defaults, seed 0
            rec = {"command": "python scripts/capacity_curve.py", "shipped": shipped_curve(root, tmp)}
        sys.path.insert(0, str(ROOT / "scripts"))
        from run_bench import geometry_checkpoint

        rec["vitb"] = vitb_curve(geometry_checkpoint("clip-vit-b16"))
        out.write_text(json.dumps(rec, indent=2) + "\n")
    print(markdown(json.loads(out.read_text())))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
