"""Issue 21's gap, with its noise: each compressed run's recall@1 (CLIP, on a scenes dataset) or accuracy (BLIP
NLVR2, on an NLVR2 dataset) against its `--reduce 0` control on the same test queries, and over several such
pairs (seeds) the mean gap.

  .venv/bin/python scripts/gap.py --data data/scenes-t5k --gallery 500 --tag gap-deep \\
      --pairs 0=runs/deep/p0/madtp.pt:shipped,1=runs/deep/s1-p0/madtp.pt:runs/deep/s1-p0.7/madtp.pt
  .venv/bin/python scripts/gap.py --data data/nlvr-big64-t5k --levels --tag gap-nlvr-deep64 \
      --pairs 0.8=runs/blipdeep64/p0/madtp.pt:runs/blipdeep64/p0.8/madtp.pt

Every model runs as `madtp-deploy eval --mode invariant --batch-size 64` (its own decisions); `--gallery N` ranks
each query among N images (or their captions), in consecutive folds of the test split, so that 5,000 test images
measure the recall of a 500-image split with ten times the queries (COCO's 5-fold 1K protocol). Two noises are
reported apart: the test sampling (a paired bootstrap over the queries; all pairs rank the same queries, so
they are resampled jointly) and the training (the spread of the pairs' gaps: seeds, which share the test
set and so do not average its sampling away). -> docs/results-TAG.json and the table between
`<!-- TAG:begin/end -->` in docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import madtp_deploy
from madtp_deploy.data import dataset, nlvr
from madtp_deploy.evaluate import evaluate, paired_difference
from madtp_deploy.files import write_section, write_text_atomic
from madtp_deploy.train.blip_nlvr import evaluate as evaluate_nlvr
from madtp_deploy.train.blip_nlvr import tokenizer_for

R1 = (("txt_r1", "txt"), ("img_r1", "img"))  # (recall key, the ranks' key)
ACCURACY = (("accuracy", "pairs"),)  # NLVR2: the true answer's rank among the two, so hit@1 = correct
METRICS = {"scenes": R1, "nlvr": ACCURACY}  # by the record's task
COLUMN = {"txt_r1": "txt R@1", "img_r1": "img R@1", "accuracy": "accuracy"}


def gaps(pairs: list[tuple[str, dict, dict]], metrics=R1) -> dict:
    """{"pairs": [...], "mean": ...} from (label, control result, compressed result) with ranks (evaluate's
    want_ranks). Gaps are compressed - control, in points; "sd_test": paired bootstrap; "sd_seeds": the
    standard deviation of the pairs' gaps over sqrt(pairs)."""
    rows = []
    for label, c, x in pairs:
        rows.append({"pair": label, "removed": x["gflops_reduction"], "temperature": x["temperature"],
                     "control": {k: c[k] for k, _ in metrics}, "compressed": {k: x[k] for k, _ in metrics},
                     "gap": {k: dict(zip(("mean", "sd_test"), paired_difference(x["ranks"][q], c["ranks"][q])))
                             for k, q in metrics}})
    n = len(rows)
    mean = {"pairs": n, "removed": sum(r["removed"] for r in rows) / n,
            "control": {k: sum(r["control"][k] for r in rows) / n for k, _ in metrics},
            "compressed": {k: sum(r["compressed"][k] for r in rows) / n for k, _ in metrics}, "gap": {}}
    for k, q in metrics:
        m, sd_test = paired_difference([x["ranks"][q] for _, _, x in pairs], [c["ranks"][q] for _, c, _ in pairs])
        each = [r["gap"][k]["mean"] for r in rows]
        sd_seeds = math.sqrt(sum((g - m) ** 2 for g in each) / (n - 1) / n) if n > 1 else None
        both = math.hypot(sd_test, sd_seeds) if sd_seeds is not None else None
        mean["gap"][k] = {"mean": m, "sd_test": sd_test, "sd_seeds": sd_seeds, "sd": both}
    return {"pairs": rows, "mean": mean}


def table(record: dict) -> list[str]:
    """The markdown table: one row per pair, then their mean."""
    q, nlvr = record["queries"], record.get("task") == "nlvr"
    keys = [k for k, _ in METRICS[record.get("task", "scenes")]]
    what = (f"{q['pairs']} image pairs and their statements" if nlvr else
            f"{q['images']} images (txt R@1 queries), {q['captions']} captions (img R@1 queries), each ranked "
            f"within a gallery of {record['gallery']} images and their captions")
    names = " / ".join(COLUMN[k] for k in keys)
    lines = [f"Test split of `{record['data']}`: {what}. ± : the paired bootstrap's standard deviation over the "
             "test queries (2,000 resamples)" + ("" if record.get("levels") else "; for the mean, also the seeds' "
                                                  "(the pairs' spread / sqrt(pairs)) and both combined") + ".", "",
             f"| pair | control {names} | compressed {names} | removed (T) | "
             + " | ".join(f"Δ {COLUMN[k]}" for k in keys) + " |", "|---|---|---|---|" + "---|" * len(keys)]

    def both(v: dict) -> str:
        return " / ".join(f"{v[k]:.1f}" for k in keys)

    for r in record["pairs"]:
        lines.append(f"| {r['pair']} | {both(r['control'])} | {both(r['compressed'])} | "
                     f"{100 * r['removed']:.1f}% ({r['temperature']:.2f}) | "
                     + " | ".join(f"{r['gap'][k]['mean']:+.1f} ± {r['gap'][k]['sd_test']:.1f}" for k in keys) + " |")
    m = record["mean"]
    if m["pairs"] > 1 and not record.get("levels"):
        cells = [f"**{g['mean']:+.1f}** ± {g['sd_test']:.1f} (test), ± {g['sd_seeds']:.1f} (seeds), ± {g['sd']:.1f}"
                 for g in (m["gap"][k] for k in keys)]
        lines.append(f"| mean of {m['pairs']} | {both(m['control'])} | {both(m['compressed'])} | "
                     f"{100 * m['removed']:.1f}% | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a scenes or NLVR2 dataset (make-data [--task nlvr]; --test sets "
                    "its size)")
    ap.add_argument("--pairs", required=True, help="label=CONTROL:COMPRESSED,... (checkpoints or shipped names)")
    ap.add_argument("--gallery", type=int, help="images per gallery (a divisor of the split's; default: all)")
    ap.add_argument("--tag", required=True, help="docs/results-TAG.json and the TAG markers in docs/RESULTS.md")
    ap.add_argument("--levels", action="store_true", help="the pairs are different settings (e.g. --reduce "
                    "levels), not seeds of one: no mean row in the table")
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    given = []
    for item in a.pairs.split(","):
        label, _, both = item.partition("=")
        control, _, compressed = both.partition(":")
        if not (label and control and compressed):
            ap.error(f"--pairs: {item!r} is not LABEL=CONTROL:COMPRESSED; fix: e.g. 0=runs/deep/p0/madtp.pt:shipped")
        given.append((label, control, compressed))
    data, out = Path(a.data), Path(a.out)
    is_nlvr = nlvr.is_nlvr_dir(data)
    if is_nlvr and a.gallery:
        ap.error("--gallery: NLVR2 has no gallery (each pair is one query); fix: leave --gallery out")
    split = nlvr.load(data, "test") if is_nlvr else dataset.load(data, "test")
    task = "nlvr" if is_nlvr else "scenes"
    metrics = METRICS[task]
    pixels, results = {}, {}

    def run(ckpt: str) -> dict:
        if ckpt not in results:
            m = madtp_deploy.load(ckpt, mode="invariant")
            size = m.spec.image_size
            pixels.setdefault(size, split.pixels(size))
            if is_nlvr:
                results[ckpt] = evaluate_nlvr(m, split, tokenizer_for(data), batch_size=64, pixels=pixels[size],
                                              want_ranks=True)
            else:
                results[ckpt] = evaluate(m, split, dataset.tokenizer_for(data, m.spec), batch_size=64,
                                         pixels=pixels[size], want_ranks=True, gallery=a.gallery)
            print(f"{ckpt}: " + ", ".join(f"{COLUMN[k]} {results[ckpt][k]:.2f}" for k, _ in metrics), flush=True)
        return results[ckpt]

    pairs = [(label, run(control), run(compressed)) for label, control, compressed in given]
    queries = ({"pairs": len(split)} if is_nlvr else {"images": len(split.img2txt), "captions": len(split.txt2img)})
    record = {"data": a.data, "task": task, "pairs_given": a.pairs, "mode": "invariant",
              "batch_size": 64, "queries": queries, "gallery": None if is_nlvr else a.gallery or len(split.img2txt),
              "levels": a.levels, **gaps(pairs, metrics)}
    write_text_atomic(out / f"results-{a.tag}.json", json.dumps(record, indent=2))
    lines = table(record)
    print("\n".join(lines))
    write_section(out / "RESULTS.md", a.tag, "\n".join(lines))


if __name__ == "__main__":
    main()
