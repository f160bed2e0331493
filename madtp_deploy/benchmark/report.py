"""Bench reports: a rich table, markdown, a PNG plot, and schema validation of the JSON record."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic

SCHEMA = Path(__file__).with_name("schema.json")


def validate_report(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


def _rows(report: dict):
    for r in report["results"]:
        if "error" in r:
            yield [r["backend"], r["variant"], str(r.get("batch", "-")), "error: " + r["error"][:60]] + [""] * 6
            continue
        yield [r["backend"], r["variant"], str(r["batch"]), f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}",
               f"{r['throughput_per_s']:.1f}", f"{r['gflops_own_per_instance']:.4f}",
               f"{r['gflops_effective_per_instance']:.4f}", f"{r['eff_over_own']:.2f}",
               f"{r['over_floor']:.1f}x" if r["floor_ms"] else "-"]  # no floor measured (NLVR2)


HEADER = ["backend", "variant", "batch", "median ms", "p90 ms", "img/s", "GFLOPs/inst (own tokens)",
          "eff. GFLOPs/inst", "eff / own", "x floor"]


def _header(report: dict) -> list[str]:
    """An NLVR2 instance is an image pair and its statement."""
    return [("pairs/s" if h == "img/s" else h) for h in HEADER] if report.get("encoder") == "nlvr" else HEADER
CMP_HEADER = ["backend", "batch", "variant", "speedup vs dense", "own-tokens GFLOPs ratio", "eff. GFLOPs ratio",
              "eff / own", "speedup / own ratio", "speedup / eff. ratio", "vs padded invariant"]


def _cmp_rows(report: dict):
    for c in report["comparisons"]:
        vs = c.get("speedup_vs_invariant")
        yield [c["backend"], str(c["batch"]), c["variant"], f"{c['speedup']:.2f}x", f"{c['own_gflops_ratio']:.2f}x",
               f"{c['gflops_ratio']:.2f}x", f"{c['eff_over_own']:.2f}", f"{c['speedup_over_own_ratio']:.2f}",
               f"{c['speedup_over_gflops_ratio']:.2f}", f"{vs:.2f}x" if vs else "-"]


def _title(report: dict) -> str:
    m = report["model"]
    what = "NLVR2 graph (two images and a statement)" if report.get("encoder") == "nlvr" else "image encoder"
    return f"{m['source']} ({m['spec']['name']}) {what}, T {m['temperature']:g}, variants {', '.join(m['variants'])}"


KEY_COLUMNS = 3  # backend, variant, batch: repeated in every part of a table split to fit


def rich_tables(report: dict, width: int = 200) -> list:
    """The results as rich tables whose numbers are never cut: each column is at least as wide as its
    longest value (headers fold at their spaces), and a console too narrow for all the columns gets
    the table in parts, each repeating backend, variant and batch."""
    from rich.table import Table

    header, rows = _header(report), list(_rows(report))
    widths = [max([len(r[i]) for r in rows] + [max(len(w) for w in h.split())]) for i, h in enumerate(header)]
    cost = [w + 3 for w in widths]  # a cell's padding and border
    parts, current = [], list(range(KEY_COLUMNS))
    for i in range(KEY_COLUMNS, len(header)):
        if len(current) > KEY_COLUMNS and sum(cost[j] for j in current) + cost[i] + 1 > width:
            parts.append(current)
            current = list(range(KEY_COLUMNS))
        current.append(i)
    parts.append(current)
    tables = []
    for k, cols in enumerate(parts):
        title = _title(report) + (f" ({k + 1}/{len(parts)})" if len(parts) > 1 else "")
        t = Table(title=title)
        for i in cols:
            t.add_column(header[i], justify="right", min_width=widths[i], overflow="fold")
        for r in rows:
            t.add_row(*(r[i] for i in cols))
        tables.append(t)
    return tables


def rich_table(report: dict):
    return rich_tables(report)[0]


def speed_words(speedup: float) -> str:
    """2.5 -> '2.50x faster', 0.33 -> '3.03x slower': a ratio below 1 is never called faster."""
    return f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"


def summary_lines(report: dict) -> list[str]:
    """One line per comparison with dense, in words."""
    out = []
    for c in report["comparisons"]:
        own = c["own_gflops_ratio"]
        out.append(f"{c['backend']:>14} batch {c['batch']:>3} {c['variant']:>9}: {speed_words(c['speedup'])} than "
                   f"dense at {f'{own:.2f}x fewer' if own >= 1 else f'{1 / own:.2f}x more'} own-token GFLOPs "
                   f"({c['speedup_over_own_ratio']:.2f} of that ratio; the batch computes {c['eff_over_own']:.2f}x "
                   f"its instances' own GFLOPs)")
    return out


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [_title(report) + ".",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, onnxruntime {m['onnxruntime']}; "
             "GEMM rate " + (", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in report["gemm_gflops"].items())
                             or "not measured") + ".", "",
             "| " + " | ".join(_header(report)) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    lines += ["", "| " + " | ".join(CMP_HEADER) + " |", "|" + "---|" * len(CMP_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _cmp_rows(report)]
    if report.get("graphs"):
        lines += ["", "| graph | ONNX nodes | after onnxruntime's optimizations | nodes per pruned layer (written / ORT) |",
                  "|---|---|---|---|"]
        for v, g in report["graphs"].items():
            per = (f"{g['nodes_per_pruned_layer']:.1f} / {g['nodes_ort_per_pruned_layer']:.1f}"
                   if "nodes_per_pruned_layer" in g else "-")
            lines.append(f"| {v} | {g['nodes']} | {g['nodes_ort']} | {per} |")
    if report.get("unavailable_backends"):
        lines += ["", "Not run here: " + "; ".join(f"`{k}`: {v}" for k, v in report["unavailable_backends"].items())]
    for v, ms in report.get("machinery_share_ort", {}).items():
        lines += ["", f"Pruning machinery share of the `{v}` ORT graph at batch {ms['batch']}: DTP (scores, "
                      f"threshold, top-K, gather, package) {100 * ms.get('dtp', 0):.1f}%, MAG map "
                      f"{100 * ms.get('mag', 0):.1f}%, masking {100 * ms.get('masking', 0):.1f}%, layout (pack / "
                      f"unpack) {100 * ms.get('layout', 0):.1f}% ({ms['method']})."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ok = [r for r in report["results"] if "error" not in r]
    for key in sorted({(r["backend"], r["variant"]) for r in ok}):
        rs = sorted((r for r in ok if (r["backend"], r["variant"]) == key), key=lambda r: r["batch"])
        a.plot([r["batch"] for r in rs], [r["median_ms"] / r["batch"] for r in rs], marker="o", label=" ".join(key))
        b.plot([r["batch"] for r in rs], [r["gflops_effective_per_instance"] for r in rs], marker="o", label=" ".join(key))
    a.set(xscale="log", yscale="log", xlabel="batch size", ylabel="median ms per image", title="latency per image")
    b.set(xscale="log", xlabel="batch size", ylabel="GFLOPs per image (padded batch)", title="effective GFLOPs")
    a.legend(fontsize=7)
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
