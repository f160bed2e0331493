"""The accuracy-GFLOPs study behind docs/RESULTS.md.

  .venv/bin/python scripts/study.py --data DATA --runs dense=RUN,0.3=RUN,... --ablate 0.5 --out docs/

1. recall@1 against per-instance GFLOPs for each compression run (invariant mode, batch 64), plus
   the same checkpoint in reference (max-keep) mode at batch 64 to show the batch inflation;
2. at equal GFLOPs on the --ablate run's weights, MADTP against three post-hoc policies (no
   retraining): CA-only with a fixed threshold, SA-only, random keep. Each policy's one knob is
   bisected until its mean GFLOPs/pair is within 1% of MADTP's.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import madtp_deploy
from madtp_deploy import ablations
from madtp_deploy.data import dataset
from madtp_deploy.evaluate import evaluate


def _eval(model, split, tok, pixels):
    return evaluate(model, split, tok, batch_size=64, pixels=pixels)


def _match(model, split, tok, pixels, make, lo, hi, target, more_is_fewer, log_space=False, iters=14):
    """Bisect a policy knob so that GFLOPs/pair ~= target (within 1%)."""
    best = None
    for _ in range(iters):
        mid = math.sqrt(lo * hi) if log_space else (lo + hi) / 2
        model.score_fn = make(mid)
        r = _eval(model, split, tok, pixels)
        g = r["gflops_per_pair"]
        if best is None or abs(g - target) < abs(best[1]["gflops_per_pair"] - target):
            best = (mid, r)
        if abs(g - target) / target < 0.01:
            break
        too_many = g > target
        if too_many == more_is_fewer:
            lo = mid
        else:
            hi = mid
    model.score_fn = None
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", required=True, help="label=checkpoint,... (label 'dense' or the reduce fraction)")
    ap.add_argument("--ablate", default="0.5")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    runs = dict(kv.split("=", 1) for kv in args.runs.split(","))
    split = dataset.load(Path(args.data), "test")
    out = Path(args.out)
    rows, pixels = [], None
    for label, ckpt in runs.items():
        m = madtp_deploy.load(ckpt, mode="invariant")
        tok = dataset.tokenizer_for(Path(args.data), m.spec)
        pixels = split.pixels(m.spec.image_size) if pixels is None else pixels
        r = _eval(m, split, tok, pixels)
        ref = _eval(madtp_deploy.load(ckpt, mode="reference"), split, tok, pixels) if m.temperature > 0 else r
        rows.append({"run": label, "checkpoint": ckpt, "temperature": m.temperature, "invariant": r,
                     "reference_b64": ref})
        print(f"{label}: txt_r1 {r['txt_r1']:.1f} img_r1 {r['img_r1']:.1f} GFLOPs/pair {r['gflops_per_pair']:.4f} "
              f"({100 * r['gflops_reduction']:.1f}% removed); reference mode b64 {ref['gflops_per_pair']:.4f}")
    abl = []
    m = madtp_deploy.load(runs[args.ablate], mode="invariant")
    tok = dataset.tokenizer_for(Path(args.data), m.spec)
    madtp = _eval(m, split, tok, pixels)
    target = madtp["gflops_per_pair"]
    abl.append({"policy": "MADTP (TIS = SA+TA+CA, alignment threshold)", "knob": m.temperature, "result": madtp})
    for name, make, lo, hi, fewer, log_space in (
            ("CA only, fixed threshold (no alignment guidance)", ablations.ca_fixed, 0.0, 8.0, True, False),
            ("SA only (alignment threshold kept)", ablations.sa_only, 0.05, 100.0, True, True),
            ("random keep", ablations.random_keep, 0.0, 1.0, False, False)):
        knob, r = _match(m, split, tok, pixels, make, lo, hi, target, fewer, log_space)
        abl.append({"policy": name, "knob": knob, "result": r})
        print(f"{name}: knob {knob:.4f} GFLOPs/pair {r['gflops_per_pair']:.4f} txt_r1 {r['txt_r1']:.1f} "
              f"img_r1 {r['img_r1']:.1f}")
    record = {"data": args.data, "runs": rows, "ablations": abl, "ablation_weights": runs[args.ablate]}
    (out / "results.json").write_text(json.dumps(record, indent=2))
    _plot(record, out / "results.png")
    _markdown(record, out / "RESULTS.md")


def _markdown(record, path):
    """Regenerate the measured tables between the markers of docs/RESULTS.md."""
    lines = ["| run | T | txt R@1 | txt R@5 | img R@1 | img R@5 | GFLOPs/pair (per instance) | removed | "
             "reference mode, batch 64: GFLOPs/pair | kept image tokens per layer |", "|" + "---|" * 10]
    for r in record["runs"]:
        i, ref = r["invariant"], r["reference_b64"]
        lines.append(f"| {r['run']} | {r['temperature']:.2f} | {i['txt_r1']:.1f} | {i['txt_r5']:.1f} | "
                     f"{i['img_r1']:.1f} | {i['img_r5']:.1f} | {i['gflops_per_pair']:.4f} | "
                     f"{100 * i['gflops_reduction']:.1f}% | {ref['gflops_per_pair']:.4f} | "
                     f"{', '.join(f'{v:.1f}' for v in i['kept_image_per_layer'])} |")
    lines += ["", f"Ablations at equal GFLOPs on `{record['ablation_weights']}` (post-hoc, same weights):", "",
              "| policy | knob | GFLOPs/pair | txt R@1 | img R@1 | txt R@5 | img R@5 |", "|---|---|---|---|---|---|---|"]
    for a in record["ablations"]:
        r = a["result"]
        lines.append(f"| {a['policy']} | {a['knob']:.4g} | {r['gflops_per_pair']:.4f} | {r['txt_r1']:.1f} | "
                     f"{r['img_r1']:.1f} | {r['txt_r5']:.1f} | {r['img_r5']:.1f} |")
    text = path.read_text()
    start, end = "<!-- study:begin -->", "<!-- study:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)


def _plot(record, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    pts = sorted(record["runs"], key=lambda r: r["invariant"]["gflops_per_pair"])
    for key, label in (("txt_r1", "image->text R@1"), ("img_r1", "text->image R@1")):
        ax.plot([r["invariant"]["gflops_per_pair"] for r in pts], [r["invariant"][key] for r in pts], marker="o",
                label=f"MADTP {label}")
    for a in record["ablations"][1:]:
        ax.scatter([a["result"]["gflops_per_pair"]], [(a["result"]["txt_r1"] + a["result"]["img_r1"]) / 2],
                   marker="x", label=f"{a['policy'][:28]} (mean R@1)")
    ax.set(xlabel="GFLOPs per image-caption pair (per instance)", ylabel="recall@1 (%)",
           title="generated scenes test split")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
