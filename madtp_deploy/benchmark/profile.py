"""How much of the pruned graph's time the pruning machinery takes, from onnxruntime's node profile.

Every exported node carries its PyTorch stack trace (metadata 'pkg.torch.onnx.stack_trace'), so a
node is attributed to DTP (pruning/dtp.py, pruning/step.py: scores, threshold, top-K, gather,
package merge), to MAG (pruning/mag.py and the q_map), to masking (the attention-bias build), or
to the transformer itself.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import onnx

from ..files import temp_dir


LAYOUT_CALLS = ("models/layout.py", "lay.rows(", "lay.unrows(", "lay.mag_rows(", "lay.mag_tokens(", "make_layout(")


def _category(trace: str) -> str:
    # the exporter keeps the frames of `forward` functions: models/tower.py's driver names each stage
    # on a line of its own (one statement per step, layout moves apart)
    if any(k in trace for k in LAYOUT_CALLS):  # packing and unpacking rows (models/layout.py)
        return "layout"
    if "pruning/dtp.py" in trace or "pruning/step.py" in trace or "prune_step(" in trace or "_prune(" in trace:
        return "dtp"
    if "pruning/mag.py" in trace or "q_map" in trace or "token_attention_map(" in trace or "_mag(" in trace:
        return "mag"
    if "_bias(" in trace:
        return "masking"

    return "model"


def node_categories(path: Path) -> dict[str, str]:
    m = onnx.load(str(path), load_external_data=False)
    out = {}
    for n in m.graph.node:
        meta = {p.key: p.value for p in n.metadata_props}
        out[n.name] = _category(meta.get("pkg.torch.onnx.stack_trace", ""))
    return out


def machinery_share(path: Path, feeds: list[dict], runs: int = 20) -> dict:
    import onnxruntime as ort

    cats = node_categories(path)
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.log_severity_level = 3
    # keep node names: fusions would merge machinery and model nodes and blur the attribution
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with temp_dir("ortprof-") as d:  # the profile (MBs of JSON) is read here, then removed
        opts.profile_file_prefix = os.path.join(d, "prof")
        s = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        for i in range(runs):
            s.run(None, feeds[i % len(feeds)])
        events = json.loads(Path(s.end_profiling()).read_text())
    total: defaultdict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            total[cats.get(node, "model")] += e["dur"]
    all_us = sum(total.values()) or 1.0
    return {k: v / all_us for k, v in sorted(total.items())} | {
        "method": "onnxruntime node profile (ORT_ENABLE_BASIC so nodes keep their names), kernel time "
                  "attributed by each node's PyTorch stack trace"}
