"""`make peers` (scripts/peers.py): MADTP beside its peers on the same weights, images and runtime.

1. accuracy at equal GFLOPs on the test split: dense, MADTP (the shipped model, invariant: own
   decisions), each peer on the dense weights MADTP was compressed from and on MADTP's weights run
   dense, each peer's knob matched to MADTP's mean own-token image GFLOPs (peers.match); the R@1
   differences to MADTP with their paired-bootstrap noise; a curve of R@1 against image GFLOPs at a
   few budgets (MADTP's temperature scaled, the peers matched to each point) -> one plot;
2. speed at equal GFLOPs: `bench` with dense, packed and the three peers interleaved in one run.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluate import paired_difference
from ..files import write_text_atomic
from . import PEERS, match

R1 = ("txt_r1", "img_r1")


def _row(name: str, weights: str, r: dict) -> dict:
    keep = ("txt_r1", "txt_r5", "img_r1", "img_r5", "gflops_image_dense", "method", "knob", "match", "temperature")
    return {"name": name, "weights": weights, **{k: r.get(k) for k in keep},
            "gflops_image": r["gflops_image"]["mean"],
            "image_reduction": 1 - r["gflops_image"]["mean"] / r["gflops_image_dense"], "ranks": r["ranks"]}


def accuracy(data, madtp_source, dense_source=None, batch_size: int = 64, scales=(0.5, 1.0, 2.0), log=print) -> dict:
    """The table and the curve (see the module's docstring). `dense_source` None: the dense-weights
    rows are left out (said in the record)."""
    from ..api import load
    from ..data import dataset
    from ..evaluate import encode_all, evaluate

    split = dataset.load(Path(data), "test")
    madtp = load(madtp_source, mode="invariant")
    tok = dataset.tokenizer_for(Path(data), madtp.spec)
    pixels = split.pixels(madtp.spec.image_size)
    ids, mask = split.tokenize(tok)
    weights = {"madtp": load(madtp_source, mode="invariant", temperature=0.0)}
    if dense_source is not None:
        weights["dense"] = load(dense_source, mode="invariant", temperature=0.0)
    texts = {}
    for w, m in weights.items():  # the peers' text tower: their model's, dense; encoded once per weights
        _, _, *texts[w] = encode_all(m, pixels[:1], ids, mask, batch_size)

    def run(model, w, **kw):
        return evaluate(model, split, tok, batch_size, pixels, want_ranks=True, texts=texts.get(w), **kw)

    rows = []
    for w, m in weights.items():
        rows.append(_row(f"dense ({w} weights)", w, run(m, w)))
        log(f"{rows[-1]['name']}: R@1 {rows[-1]['txt_r1']:.1f} / {rows[-1]['img_r1']:.1f}")
    t0 = madtp.temperature
    curve = []
    for scale in scales:
        madtp.temperature = t0 * scale
        ref = _row(f"madtp T {madtp.temperature:g}", "madtp", run(madtp, None))
        target = ref["gflops_image"]
        point = [ref]
        for w, m in weights.items():
            for method in PEERS:
                mt = match(method, m, target)
                r = _row(f"{method} ({w} weights)", w, run(m, w, method=method, knob=mt.knob))
                r["match"] = {"target_gflops_image": target, "error": mt.error, "within_tolerance": mt.within}
                point.append(r)
        for r in point:
            r["vs_madtp_r1"] = {q: paired_difference(r["ranks"][q[:3]], ref["ranks"][q[:3]]) for q in R1}
            log(f"  T x{scale:g} {r['name']:<24} {r.get('knob') or '':<28} GFLOPs {r['gflops_image']:.5f} "
                f"R@1 {r['txt_r1']:.1f} / {r['img_r1']:.1f}")
        curve.append({"scale": scale, "rows": point})
    madtp.temperature = t0
    table = rows + next(p["rows"] for p in curve if p["scale"] == 1.0)
    for r in rows:
        r["vs_madtp_r1"] = {q: paired_difference(r["ranks"][q[:3]], table[len(rows)]["ranks"][q[:3]]) for q in R1}
    return {"data": str(data), "split": "test", "images": len(split.images), "captions": len(split.captions),
            "madtp": str(madtp_source), "dense": None if dense_source is None else str(dense_source),
            "dense_note": None if dense_source else "dense weights not given: those rows are missing",
            "batch_size": batch_size, "table": table, "curve": curve,
            "noise": "vs_madtp_r1: (R@1 difference to MADTP in points, paired bootstrap std over the same "
                     "queries, 2000 resamples); ahead by more than the noise: difference > 2 std"}


def table_markdown(acc: dict) -> str:
    head = "| model | weights | knob | image GFLOPs | removed | txt R@1 | txt R@5 | img R@1 | img R@5 | R@1 vs MADTP (txt / img, ±1σ) |"
    out = [head, "|" + "---|" * 10]
    for r in acc["table"]:
        d = r.get("vs_madtp_r1") or {}
        vs = " / ".join(f"{d[q][0]:+.1f} ±{d[q][1]:.1f}" for q in R1) if d and not r["name"].startswith("madtp") else "-"
        knob = r.get("knob") or (f"T {r['temperature']:g}" if r["temperature"] else "-")
        if r.get("match") and not r["match"]["within_tolerance"]:
            knob += f" ({100 * r['match']['error']:+.1f}% GFLOPs)"
        out.append(f"| {r['name']} | {r['weights']} | {knob} | {r['gflops_image']:.4f} | {100 * r['image_reduction']:.0f}% "
                   f"| {r['txt_r1']:.1f} | {r['txt_r5']:.1f} | {r['img_r1']:.1f} | {r['img_r5']:.1f} | {vs} |")
    return "\n".join(out) + "\n"


def plot(acc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list] = {}
    for p in acc["curve"]:
        for r in p["rows"]:
            key = "madtp (shipped)" if r["name"].startswith("madtp") else r["name"]
            series.setdefault(key, []).append((r["gflops_image"], (r["txt_r1"] + r["img_r1"]) / 2))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in series.items():
        pts.sort()
        ax.plot(*zip(*pts), marker="o", lw=2.5 if name.startswith("madtp") else 1.2,
                ls="-" if "dense weights" in name or name.startswith("madtp") else "--", label=name)
    for r in acc["table"]:
        if r["name"].startswith("dense"):
            ax.plot([r["gflops_image"]], [(r["txt_r1"] + r["img_r1"]) / 2], "k*", ms=12)
            ax.annotate(r["name"], (r["gflops_image"], (r["txt_r1"] + r["img_r1"]) / 2), fontsize=7)
    ax.set_xlabel("image encoder GFLOPs per image (2 per multiply-add)")
    ax.set_ylabel("mean R@1 (text and image retrieval), %")
    ax.set_title(f"MADTP vs peers at equal GFLOPs ({acc['images']} test images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def bench(model: str, out: Path, batch_sizes=(1, 8, 32), min_runs: int = 5, pool: int = 32, log=print) -> dict:
    """dense, packed and the peers (matched to packed's own GFLOPs) on onnxruntime, interleaved."""
    from ..benchmark.runner import BenchConfig, run_bench

    cfg = BenchConfig(model=str(model), batch_sizes=list(batch_sizes), backends=["ort"],
                      variants=["dense", "packed", "tome", "topk", "lowres"], warmup_s=0.5, min_runs=min_runs,
                      pool=pool, profile=False)
    r = run_bench(cfg, log=log)
    r["peers_summary"] = latency_summary(r)
    write_text_atomic(out, json.dumps(r, indent=2))
    return r


def latency_summary(r: dict) -> list[dict]:
    """Per batch: each variant's median ms, own GFLOPs, and packed's latency over each peer's."""
    out = []
    for b in r["config"]["batch_sizes"]:
        rows = {x["variant"]: x for x in r["results"] if x.get("batch") == b and "error" not in x}
        if "packed" not in rows:
            continue
        out.append({"batch": b, **{v: {"median_ms": x["median_ms"], "gflops_own": x["gflops_own_per_instance"]}
                                   for v, x in rows.items()},
                    "packed_over": {v: rows["packed"]["median_ms"] / rows[v]["median_ms"]
                                    for v in ("dense",) + tuple(PEERS) if v in rows}})
    return out


def summary_markdown(r: dict) -> str:
    lines = ["| batch | dense ms | packed ms | ToMe ms | top-k ms | low-res ms | packed / ToMe | packed / top-k | packed / low-res |",
             "|" + "---|" * 9]
    for s in r["peers_summary"]:
        ms = [f"{s[v]['median_ms']:.2f}" if v in s else "-" for v in ("dense", "packed", "tome", "topk", "lowres")]
        ratio = [f"{s['packed_over'][v]:.2f}x" if v in s["packed_over"] else "-" for v in ("tome", "topk", "lowres")]
        lines.append(f"| {s['batch']} | " + " | ".join(ms + ratio) + " |")
    return "\n".join(lines) + "\n"
