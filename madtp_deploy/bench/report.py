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
            yield [r["backend"], r["variant"], str(r.get("batch", "-")), "error: " + r["error"][:60], "", "", "", "", ""]
            continue
        yield [r["backend"], r["variant"], str(r["batch"]), f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}",
               f"{r['throughput_per_s']:.1f}", f"{r['gflops_per_instance']['mean']:.4f}",
               f"{r['gflops_effective_per_instance']:.4f}", f"{r['over_floor']:.1f}x"]


HEADER = ["backend", "variant", "batch", "median ms", "p90 ms", "img/s", "GFLOPs/inst", "eff. GFLOPs", "x floor"]


def rich_table(report: dict):
    from rich.table import Table

    t = Table(title=f"{report['model']['source']} image encoder, mode {report['model']['mode']}, "
                    f"T {report['model']['temperature']:g}")
    for h in HEADER:
        t.add_column(h, justify="right")
    for row in _rows(report):
        t.add_row(*row)
    return t


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"Model `{report['model']['source']}` ({report['model']['spec']['name']}), image encoder, "
             f"mode `{report['model']['mode']}`, temperature {report['model']['temperature']:g}.",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, onnxruntime {m['onnxruntime']}; "
             f"GEMM rate " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in report["gemm_gflops"].items()) + ".", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    lines += ["", "| backend | batch | pruned speedup | GFLOPs ratio | speedup / GFLOPs ratio |", "|---|---|---|---|---|"]
    lines += [f"| {c['backend']} | {c['batch']} | {c['speedup']:.2f}x | {c['gflops_ratio']:.2f}x | "
              f"{c['speedup_over_gflops_ratio']:.2f} |" for c in report["comparisons"]]
    if report.get("unavailable_backends"):
        lines += ["", "Not run here: " + "; ".join(f"`{k}`: {v}" for k, v in report["unavailable_backends"].items())]
    if "machinery_share_ort" in report:
        ms = report["machinery_share_ort"]
        lines += ["", f"Pruning machinery share of the pruned ORT graph at batch {ms['batch']}: DTP (scores, "
                      f"threshold, top-K, gather, package) {100 * ms.get('dtp', 0):.1f}%, MAG map "
                      f"{100 * ms.get('mag', 0):.1f}%, masking {100 * ms.get('masking', 0):.1f}% ({ms['method']})."]
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
