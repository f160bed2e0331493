"""The accuracy-GFLOPs study behind docs/RESULTS.md.

  .venv/bin/python scripts/study.py --data DATA --runs dense=RUN,0.3=RUN,... --ablate 0.5 --out docs/
  .venv/bin/python scripts/study.py --data DATA --runs ... --ablate none --ref-batch 32 --tag deep   # issue 21

1. recall@1 against per-instance GFLOPs for each compression run (invariant mode, batch 64), plus
   the same checkpoint in reference (max-keep) mode at batch --ref-batch to show the batch inflation;
2. at equal GFLOPs on the --ablate run's weights, MADTP against three post-hoc policies (no
   retraining): CA-only with a fixed threshold, SA-only, random keep. Each policy's one knob is
   bisected until its mean GFLOPs/pair is within 1% of MADTP's.

--tag T writes docs/results-T.json / .png and the table between `<!-- study-T:begin/end -->` in RESULTS.md.
--task nlvr: the same for BLIP NLVR2 checkpoints on an NLVR2 folder (accuracy instead of recall, GFLOPs per
instance: an image pair and its statement; no ablations).
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
from madtp_deploy.files import write_section

# per task: (result key, column header) of the headline metrics, the GFLOPs key, what one instance is
TASKS = {"clip": ([("txt_r1", "txt R@1"), ("img_r1", "img R@1")], "gflops_per_pair", "image-caption pair"),
         "nlvr": ([("accuracy", "accuracy")], "gflops", "image pair and statement")}


def _eval(model, split, tok, pixels, batch_size=64):
    return evaluate(model, split, tok, batch_size=batch_size, pixels=pixels)


def _loader(task: str, data: Path):
    """(split, pixels(size), run(model, batch_size) -> result) for the task's test split: the images are
    read once per size, whatever the number of checkpoints and modes evaluated."""
    if task == "nlvr":
        from madtp_deploy.data import nlvr
        from madtp_deploy.train import blip_nlvr

        split, evaluate_fn, tokenizer = nlvr.load(data, "test"), blip_nlvr.evaluate, blip_nlvr.tokenizer_for
    else:
        split, evaluate_fn, tokenizer = dataset.load(data, "test"), evaluate, dataset.tokenizer_for
    cache: dict = {}

    def pixels(size: int):
        if size not in cache:
            cache[size] = split.pixels(size)
        return cache[size]

    def run(model, batch_size: int) -> dict:
        px = pixels(model.spec.image_size)
        tok = tokenizer(data) if task == "nlvr" else tokenizer(data, model.spec)
        return evaluate_fn(model, split, tok, batch_size=batch_size, pixels=px)
    return split, pixels, run


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
    ap.add_argument("--ablate", default="0.5", help="the run whose weights the ablations use; 'none': skip them")
    ap.add_argument("--ref-batch", type=int, default=64, help="batch size of the reference (max-keep) column")
    ap.add_argument("--tag", default="", help="results-TAG.json/.png and the study-TAG markers")
    ap.add_argument("--compare", help="another study's record (docs/results.json): a table of the reduce levels both "
                                      "ran, each against its own --reduce 0 control (what depth buys)")
    ap.add_argument("--compare-heads", help="'A,B': the two columns' names in that table (default: each study's "
                                           "layers and image tokens)")
    ap.add_argument("--task", choices=sorted(TASKS), default="clip", help="clip retrieval or BLIP NLVR2")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    stem, marker = (f"results-{args.tag}", f"study-{args.tag}") if args.tag else ("results", "study")
    runs = dict(kv.split("=", 1) for kv in args.runs.split(","))
    split, pixels, run = _loader(args.task, Path(args.data))
    metrics, gkey, _ = TASKS[args.task]
    out = Path(args.out)
    rows = []
    for label, ckpt in runs.items():
        r = run(madtp_deploy.load(ckpt, mode="invariant"), 64)
        ref = run(madtp_deploy.load(ckpt, mode="reference"), args.ref_batch) if r["temperature"] > 0 else r
        rows.append({"run": label, "checkpoint": ckpt, "temperature": r["temperature"], "invariant": r,
                     "reference": ref, "reference_batch": args.ref_batch})
        print(f"{label}: " + " ".join(f"{k} {r[k]:.1f}" for k, _ in metrics) + f" GFLOPs {r[gkey]:.4f} "
              f"({100 * r['gflops_reduction']:.1f}% removed); reference mode b{args.ref_batch} {ref[gkey]:.4f}")
    record = {"data": args.data, "task": args.task, "runs": rows, "ablations": [], "ablation_weights": None}
    if args.ablate != "none":
        if args.task != "clip":
            raise SystemExit("study.py: --ablate runs on CLIP only; fix: --ablate none")
        record.update(ablations=_ablations(runs[args.ablate], split, pixels, args.data),
                      ablation_weights=runs[args.ablate])
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    _plot(record, out / f"{stem}.png")
    other = (args.compare, json.loads(Path(args.compare).read_text())) if args.compare else None
    heads = args.compare_heads.split(",", 1) if args.compare_heads else None
    _markdown(record, out / "RESULTS.md", marker, other, heads)


def _ablations(ckpt, split, pixels_of, data):
    abl = []
    m = madtp_deploy.load(ckpt, mode="invariant")
    tok = dataset.tokenizer_for(Path(data), m.spec)
    pixels = pixels_of(m.spec.image_size)
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
    return abl


def _pct(fraction: float) -> str:
    return f"{round(100 * fraction, 1) + 0.0:.1f}%"  # + 0.0: no "-0.0%" for a dense model's -4e-16


def _kept(values):
    return ", ".join(f"{v:.1f}" for v in values)


def _by_reduce(record) -> dict[float, dict]:
    """Each run's invariant result by its --reduce level ('dense' left out; '0' / '0.0' is the control)."""
    return {float(r["run"]): r["invariant"] for r in record["runs"] if r["run"] != "dense"}


def _depth_table(record, other, heads=None) -> list[str]:
    """The reduce levels both studies ran: GFLOPs removed and the headline metrics against each one's own control."""
    name, rec = other
    metrics = TASKS[record.get("task", "clip")][0]
    a, b = _by_reduce(rec), _by_reduce(record)
    # each geometry by its layers and its image tokens (the dense run's first layer keeps every one)
    kept = [r["runs"][0]["invariant"]["kept_image_per_layer"] for r in (rec, record)]
    head = heads or [f"{len(k)} + {len(k)} layers, {k[0]:.0f} image tokens" for k in kept]
    what = " / ".join(h.split(" ")[0] for _, h in metrics) + (" R@1" if "R@1" in metrics[0][1] else "")
    title = "The same" if heads else "What the geometry buys: the same"
    lines = ["", f"{title} `--reduce`, each model against its own `--reduce 0` control "
                 f"({name} beside this study):", "",
             f"| --reduce | removed, {head[0]} | removed, {head[1]} | Δ {what}, {head[0]} | "
             f"Δ {what}, {head[1]} |", "|---|---|---|---|---|"]
    for p in sorted(set(a) & set(b) - {0.0}):
        cells = [_pct(x[p]["gflops_reduction"]) for x in (a, b)]
        cells += [" / ".join(f"{x[p][k] - x[0.0][k]:+.1f}" for k, _ in metrics) for x in (a, b)]
        lines.append(f"| {p:g} | " + " | ".join(cells) + " |")
    return lines


def _markdown(record, path, marker, other=None, heads=None):
    """Regenerate the measured tables between the markers of docs/RESULTS.md."""
    rb = record["runs"][0]["reference_batch"]
    task = record.get("task", "clip")
    metrics, gkey, _ = TASKS[task]
    if task == "clip":
        cols = [("txt_r1", "txt R@1"), ("txt_r5", "txt R@5"), ("img_r1", "img R@1"), ("img_r5", "img R@5")]
        gcol = "GFLOPs/pair (per instance)"
    else:
        cols, gcol = metrics, "GFLOPs/instance"
    ref_head = " / ".join(h.split(" ")[0] for _, h in metrics) + (" R@1" if task == "clip" else "")
    lines = ["| run | T | " + " | ".join(h for _, h in cols) + f" | {gcol} | removed | "
             f"max-keep, batch {rb}: {ref_head}, removed | kept image tokens per layer | "
             "kept text tokens per layer |", "|" + "---|" * (7 + len(cols))]
    for r in record["runs"]:
        i, ref = r["invariant"], r["reference"]
        lines.append(f"| {r['run']} | {r['temperature']:.2f} | " + " | ".join(f"{i[k]:.1f}" for k, _ in cols) +
                     f" | {i[gkey]:.4f} | {_pct(i['gflops_reduction'])} | "
                     + " / ".join(f"{ref[k]:.1f}" for k, _ in metrics) + f", {_pct(ref['gflops_reduction'])} | "
                     f"{_kept(i['kept_image_per_layer'])} | {_kept(i['kept_text_per_layer'])} |")
    if other:
        lines += _depth_table(record, other, heads)
    if record["ablations"]:
        lines += ["", f"Ablations at equal GFLOPs on `{record['ablation_weights']}` (post-hoc, same weights):", "",
                  "| policy | knob | GFLOPs/pair | txt R@1 | img R@1 | txt R@5 | img R@5 |",
                  "|---|---|---|---|---|---|---|"]
    for a in record["ablations"]:
        r = a["result"]
        lines.append(f"| {a['policy']} | {a['knob']:.4g} | {r['gflops_per_pair']:.4f} | {r['txt_r1']:.1f} | "
                     f"{r['img_r1']:.1f} | {r['txt_r5']:.1f} | {r['img_r5']:.1f} |")
    write_section(path, marker, "\n".join(lines))


def _plot(record, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, _, instance = TASKS[record.get("task", "clip")]
    names = {"txt_r1": "image->text R@1", "img_r1": "text->image R@1", "accuracy": "accuracy"}
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = sorted(record["runs"], key=lambda r: r["invariant"]["gflops_reduction"])
    for mode, style in (("invariant", "-o"), ("reference", ":s")):
        for (key, _), colour in zip(metrics, ("C0", "C1")):
            name = "per instance" if mode == "invariant" else f"max-keep, batch {pts[0]['reference_batch']}"
            ax.plot([100 * r[mode]["gflops_reduction"] for r in pts], [r[mode][key] for r in pts], style,
                    color=colour, label=f"MADTP {names[key]} ({name})")
    for r in pts:
        ax.annotate(r["run"], (100 * r["invariant"]["gflops_reduction"], r["invariant"][metrics[0][0]]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    for a in record["ablations"][1:]:
        ax.scatter([100 * a["result"]["gflops_reduction"]], [(a["result"]["txt_r1"] + a["result"]["img_r1"]) / 2],
                   marker="x", label=f"{a['policy'][:28]} (mean R@1)")
    ax.set(xlabel=f"GFLOPs per {instance} removed (%)",
           ylabel="recall@1 (%)" if metrics[0][0] != "accuracy" else "accuracy (%)",
           title="generated scenes test split" if metrics[0][0] != "accuracy" else "generated NLVR2 test split")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
