"""Static TensorRT-compatibility report of an ONNX graph. Needs no TensorRT.

Rules come from TensorRT's ONNX-parser documentation as summarised in shared/docs/deploy-facts.md
(TRT 11) and onnx-tensorrt's operators.md (TRT 10.0: opsets 9..20). None of this was checked against
a real TensorRT here: the report says what *would* fail according to the docs, and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import numpy_helper

TOPK_MAX_K = 3840
OPSET_RANGE = (9, 20)
UNSUPPORTED = {"Unique", "Compress", "StringNormalizer", "TfIdfVectorizer", "SequenceAt", "SequenceConstruct",
               "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "SplitToSequence",
               "ConcatFromSequence", "MaxUnpool", "MaxRoiPool", "Multinomial", "RandomNormal"}
DATA_DEPENDENT = {"NonZero", "NonMaxSuppression"}


@dataclass
class Finding:
    level: str   # "fail" | "warn" | "info"
    node: str
    op: str
    why: str


def check(path: Path) -> list[Finding]:
    model = onnx.load(str(path), load_external_data=False)
    out: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        out.append(Finding("warn", "-", "opset", f"opset {opset}: TensorRT 10.0 documents opsets "
                           f"{OPSET_RANGE[0]}..{OPSET_RANGE[1]}; newer ones may parse on TRT 11 (unverified)"))
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    for node in model.graph.node:
        name, op = node.name or node.output[0], node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.domain not in ("", "ai.onnx"):
            out.append(Finding("fail", name, op, f"custom domain {node.domain!r} needs a TensorRT plugin"))
        elif op in UNSUPPORTED:
            out.append(Finding("fail", name, op, "not supported by TensorRT's ONNX parser"))
        elif op == "TopK":
            if attrs.get("sorted", 1) != 1:
                out.append(Finding("fail", name, op, "sorted=0: TensorRT requires sorted=1"))
            k = node.input[1]
            if k in consts:
                kv = int(consts[k].reshape(-1)[0])
                if kv > TOPK_MAX_K:
                    out.append(Finding("fail", name, op, f"K={kv} > {TOPK_MAX_K}, TensorRT's TopK limit"))
            else:
                out.append(Finding("info", name, op, f"run-time K (data-dependent): accepted by the parser since "
                                   f"TRT 8.6; K must stay <= {TOPK_MAX_K} (tokens per layer bound it); "
                                   f"that a K computed from activations builds is unverified"))
        elif op in DATA_DEPENDENT:
            out.append(Finding("warn", name, op, "data-dependent output shape: needs an IOutputAllocator; "
                               "no CUDA graph capture"))
        elif op == "ScatterElements" and attrs.get("reduction", b"none") not in (b"none", "none"):
            out.append(Finding("warn", name, op, f"reduction={attrs['reduction']!r}: check TRT support"))
    return out


def report(path: Path) -> dict:
    findings = check(path)
    return {"file": str(path), "would_fail": sum(f.level == "fail" for f in findings),
            "warnings": sum(f.level == "warn" for f in findings),
            "findings": [f.__dict__ for f in findings],
            "source": "TensorRT ONNX-parser docs (deploy-facts.md, operators.md); not run against TensorRT"}
