"""Static TensorRT-conformance report of an ONNX graph. Needs no TensorRT; it can and does fail.

Rules, each a function over the graph that returns findings; every finding names its source and
TensorRT version (operators.RULE_SOURCES):
- opset: TensorRT 10.15's parser documents opsets 9..24 (onnx-tensorrt docs/operators.md);
  outside that range -> fail.
- ops: custom domains, ops the parser rejects, ops missing from its table -> fail.
- dtypes: the main input's data type must be among the op's supported types (10.15 operators.md;
  e.g. ScatterElements takes FP32/FP16/BF16/INT32/INT64 data, not BOOL) -> fail. Where the
  TensorRT 11.1 headers document more types than that table (NonZero on BOOL/INT32, CumSum on
  INT32/INT64) the newer header wins -> warn, naming both sources. RotaryEmbedding's
  position_ids must be INT64 -> fail.
- squeeze: Squeeze without axes on an input whose shape is not fully static: the parser cannot
  infer which dims to drop (importSqueeze) -> fail.
- range: Range's start/limit/delta of different types -> fail; of a type the parser does not take
  (it takes INT32/INT64/FP32, the 10.15 table also lists FP16/BF16) -> warn with both sources;
  FP32 inputs computed at run time (the element count is then computed in float on TensorRT's
  shape path, unverified) -> warn.
- initializers: Slice/Reduce*/Squeeze/Unsqueeze/Pad axes, CumSum axis, OneHot depth must be
  initializers (or Constant outputs); a computed tensor there -> fail. Constant-fold first
  (madtp_deploy.onnx.fold) to turn `Reshape(Constant)` chains into initializers.
- TopK: sorted must be 1, a constant K must be <= 3840 -> fail; a run-time K -> info.
- value-dependent shapes: nodes whose output shape depends on tensor *values* (NonZero, a TopK K
  or Reshape/Slice/Expand shape computed from activations, and everything downstream whose shape
  is not statically known). TensorRT's fused transformer kernels have refused them
  (NVIDIA/TensorRT#3903) and such engines cannot be captured in CUDA graphs -> one fail finding
  with the count. The analysis is a dependency walk (values vs shapes vs constants) refined by
  onnx shape inference; onnxruntime's symbolic_shape_infer was tried and crashed on these graphs.

The operator table is onnx-tensorrt's 10.15 docs (madtp_deploy/trt/operators.py). Nothing here was
run against a real TensorRT: the report says what the documentation says would fail, and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import onnx
from onnx import TensorProto

from . import operators as ops

OPSET_RANGE = ops.OPSET_RANGE
TOPK_MAX_K = 3840
STANDARD_DOMAINS = ("", "ai.onnx")

# ONNX elem type -> the names operators.md uses
DTYPE_NAMES = {TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16",
               TensorProto.DOUBLE: "DOUBLE", TensorProto.INT32: "INT32", TensorProto.INT64: "INT64",
               TensorProto.INT8: "INT8", TensorProto.UINT8: "UINT8", TensorProto.BOOL: "BOOL",
               TensorProto.INT4: "INT4", TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.FLOAT8E5M2: "FP8",
               TensorProto.FLOAT4E2M1: "FP4", TensorProto.INT16: "INT16",
               TensorProto.UINT16: "UINT16", TensorProto.UINT32: "UINT32", TensorProto.UINT64: "UINT64",
               TensorProto.STRING: "STRING"}

# inputs that set an output's shape by their values (index per op); ops whose output shape always does
SHAPE_INPUTS = {"Reshape": (1,), "Expand": (1,), "Slice": (1, 2, 3, 4), "TopK": (1,), "Range": (0, 1, 2),
                "ConstantOfShape": (0,), "Tile": (1,), "Pad": (1, 3), "Unsqueeze": (1,), "Squeeze": (1,),
                "Resize": (2, 3), "Upsample": (1,), "OneHot": (1,), "Split": (1,), "CenterCropPad": (1,)}
SHAPE_INPUTS |= {op: (1,) for op in ops.SUPPORTED if op.startswith("Reduce")}
ALWAYS_VALUE_DEPENDENT = frozenset({"NonZero", "Unique", "NonMaxSuppression", "Compress"})
CONST, SHAPE, DATA = 0, 1, 2  # what a tensor's values depend on


@dataclass
class Finding:
    level: str   # "fail" | "warn" | "info"
    rule: str    # opset | op | dtype | initializer | topk | squeeze | range | value-dependent
    node: str
    op: str
    why: str
    source: str = ""  # the document (and TensorRT version) the rule comes from


class _Graph:
    """The model plus what the rules need: constants, element types, statically known shapes."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.nodes = list(model.graph.node)
        self.initializers = {i.name for i in model.graph.initializer}
        self.constant_outputs = {n.output[0] for n in self.nodes if n.op_type == "Constant"}
        self.const_values = {i.name: i for i in model.graph.initializer}
        for n in self.nodes:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.const_values[n.output[0]] = a.t
        bare = onnx.ModelProto()
        bare.CopyFrom(model)
        del bare.graph.value_info[:]  # the exporter's own value_info names unbacked symbols (u0 + 1)
        try:
            inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=False)
        except Exception:  # noqa: BLE001 - inference is a refinement only
            inferred = bare
        self.types, self.shapes = {}, {}
        for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
            tt = vi.type.tensor_type
            if tt.elem_type:
                self.types[vi.name] = tt.elem_type
            if tt.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else
                                        (d.dim_param or None) for d in tt.shape.dim]
        for i in model.graph.initializer:
            self.types[i.name] = i.data_type
        for name, t in self.const_values.items():
            self.types.setdefault(name, t.data_type)
        self.input_dims = {d for i in model.graph.input for d in (self.shapes.get(i.name) or [])
                           if isinstance(d, str)}

    def is_constant(self, name: str) -> bool:
        return name in self.initializers or name in self.constant_outputs

    def shape_known(self, name: str) -> bool:
        """True if onnx shape inference gives every dim as a number or a graph input's dim name."""
        shape = self.shapes.get(name)
        return shape is not None and all(isinstance(d, int) or d in self.input_dims for d in shape)


def _name(node) -> str:
    return node.name or (node.output[0] if node.output else "?")


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def check_opset(g: _Graph) -> list[Finding]:
    opset = next((o.version for o in g.model.opset_import if o.domain in STANDARD_DOMAINS), None)
    if opset is not None and OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        return []
    return [Finding("fail", "opset", "-", "opset", f"opset {opset}: TensorRT's parser documents opsets "
                    f"{OPSET_RANGE[0]}..{OPSET_RANGE[1]}; fix: export with --opset in that range")]


def check_ops(g: _Graph) -> list[Finding]:
    out = []
    for n in g.nodes:
        if n.domain not in STANDARD_DOMAINS:
            out.append(Finding("fail", "op", _name(n), n.op_type,
                               f"custom domain {n.domain!r}: needs a TensorRT plugin of that name"))
        elif n.op_type in ops.UNSUPPORTED:
            out.append(Finding("fail", "op", _name(n), n.op_type, "not supported by TensorRT's ONNX parser"))
        elif n.op_type not in ops.SUPPORTED:
            out.append(Finding("fail", "op", _name(n), n.op_type, "not in TensorRT's operator table"))
    return out


def _dtype(g: _Graph, name: str) -> str | None:
    """The operators.md name of a tensor's element type, None if unknown."""
    if not name or name not in g.types:
        return None
    return DTYPE_NAMES.get(g.types[name], str(g.types[name]))


def check_dtypes(g: _Graph) -> list[Finding]:
    out = []
    for n in g.nodes:
        allowed = ops.SUPPORTED.get(n.op_type)
        if allowed is None or n.domain not in STANDARD_DOMAINS:
            continue
        for idx, (want, what) in ops.REQUIRED_TYPES.get(n.op_type, {}).items():
            got = _dtype(g, n.input[idx]) if idx < len(n.input) else None
            if got is not None and got != want:
                out.append(Finding("fail", "dtype", _name(n), n.op_type, f"`{what}` (input {idx}, {n.input[idx]}) is "
                                   f"{got}; TensorRT requires {want}; fix: cast it to {want}"))
        idx = ops.TYPED_INPUT.get(n.op_type, 0)
        dtype = _dtype(g, n.input[idx]) if idx < len(n.input) and n.op_type not in ops.UNTYPED else None
        if dtype is None or dtype in allowed.split():
            continue
        header_types, where = ops.HEADER_TYPES.get(n.op_type, ("", ""))
        if dtype in header_types.split():
            out.append(Finding("warn", "dtype", _name(n), n.op_type,
                               f"input {idx} ({n.input[idx]}) is {dtype}: {ops.DOCS} lists only "
                               f"{allowed.replace(' ', '/')} for {n.op_type}, {ops.HEADERS} ({where}) takes it; "
                               f"the newer header is followed, unverified on a real TensorRT",
                               f"{ops.HEADERS} over {ops.DOCS}"))
        else:
            out.append(Finding("fail", "dtype", _name(n), n.op_type,
                               f"input {idx} ({n.input[idx]}) is {dtype}; TensorRT supports {allowed.replace(' ', '/')}"
                               f" for {n.op_type}; fix: cast to a supported type around it"))
    return out


def check_initializer_inputs(g: _Graph) -> list[Finding]:
    out = []
    for n in g.nodes:
        for idx, what in ops.INITIALIZER_INPUTS.get(n.op_type, {}).items():
            if idx < len(n.input) and n.input[idx] and not g.is_constant(n.input[idx]):
                out.append(Finding("fail", "initializer", _name(n), n.op_type,
                                   f"`{what}` (input {idx}, {n.input[idx]}) is computed, TensorRT needs an "
                                   f"initializer; fix: constant-fold the graph (madtp_deploy.onnx.fold)"))
    return out


def check_topk(g: _Graph) -> list[Finding]:
    out = []
    for n in g.nodes:
        if n.op_type != "TopK":
            continue
        if _attrs(n).get("sorted", 1) != 1:
            out.append(Finding("fail", "topk", _name(n), "TopK", "sorted=0: TensorRT requires sorted=1"))
        k = n.input[1] if len(n.input) > 1 else ""
        if k in g.const_values:
            kv = int(onnx.numpy_helper.to_array(g.const_values[k]).reshape(-1)[0])
            if kv > TOPK_MAX_K:
                out.append(Finding("fail", "topk", _name(n), "TopK", f"K={kv} > {TOPK_MAX_K}, TensorRT's TopK limit"))
        elif k:
            out.append(Finding("info", "topk", _name(n), "TopK", f"run-time K: parsed since TRT 8.6 (K <= "
                               f"{TOPK_MAX_K}); whether a K computed from activations builds is unverified"))
    return out


def _squeeze_axes_given(g: _Graph, n) -> bool:
    opset = next((o.version for o in g.model.opset_import if o.domain in STANDARD_DOMAINS), 13)
    if opset >= 13:
        return len(n.input) > 1 and bool(n.input[1])
    return bool(_attrs(n).get("axes"))


def check_squeeze(g: _Graph) -> list[Finding]:
    """Squeeze without axes drops every dim of size 1: the parser needs the input's shape fully static."""
    out = []
    for n in g.nodes:
        if n.op_type != "Squeeze" or n.domain not in STANDARD_DOMAINS or _squeeze_axes_given(g, n):
            continue
        shape = g.shapes.get(n.input[0])
        if shape is None or not all(isinstance(d, int) and d > 0 for d in shape):
            seen = "unknown to onnx shape inference" if shape is None else str(shape)
            out.append(Finding("fail", "squeeze", _name(n), "Squeeze",
                               f"no axes, and the input's shape is {seen}: TensorRT's parser cannot infer squeeze "
                               f"dimensions from a dynamic shape; fix: export with explicit axes (squeeze(dim=...))"))
    return out


def check_range(g: _Graph) -> list[Finding]:
    out = []
    for n in g.nodes:
        if n.op_type != "Range" or n.domain not in STANDARD_DOMAINS:
            continue
        types = [_dtype(g, i) for i in n.input[:3]]
        if None in types:
            continue
        if len(set(types)) > 1:
            out.append(Finding("fail", "range", _name(n), "Range", f"start/limit/delta are {'/'.join(map(str, types))}: "
                               f"TensorRT's parser requires one type; fix: cast them to one type"))
        elif types[0] not in ops.RANGE_PARSER_TYPES:
            out.append(Finding("warn", "range", _name(n), "Range",
                               f"inputs are {types[0]}: {ops.DOCS} lists it for Range, but {ops.PARSER} accepts only "
                               f"{'/'.join(ops.RANGE_PARSER_TYPES)}; fix: compute the range in INT64 and cast",
                               f"{ops.PARSER} vs {ops.DOCS}"))
        elif types[0] == "FP32" and not all(g.is_constant(i) for i in n.input[:3]):
            computed = [i for i in n.input[:3] if not g.is_constant(i)]
            out.append(Finding("warn", "range", _name(n), "Range",
                               f"FP32 inputs computed at run time ({', '.join(computed)}): the parser turns them into "
                               f"float shape tensors and computes the element count in FP32 (importRange); whether "
                               f"the builder accepts that is unverified; fix: compute the range in INT64 and cast"))
    return out


def value_dependent_nodes(g: _Graph) -> list[str]:
    """Names of the nodes whose output shapes depend on tensor values, in graph order."""
    level = {name: CONST for name in g.const_values}
    level |= {i.name: DATA for i in g.model.graph.input}
    vd: set[str] = set()
    hits = []
    for n in g.nodes:
        ins = [i for i in n.input if i]
        if n.op_type == "Constant":
            lv = CONST
        elif n.op_type in ("Shape", "Size"):
            lv = DATA if any(i in vd for i in ins) else min(SHAPE, max((level.get(i, DATA) for i in ins), default=CONST))
        else:
            lv = max((level.get(i, DATA) for i in ins), default=CONST)
        shape_inputs = [n.input[i] for i in SHAPE_INPUTS.get(n.op_type, ()) if i < len(n.input) and n.input[i]]
        dependent = (n.op_type in ALWAYS_VALUE_DEPENDENT or any(i in vd for i in ins)
                     or any(level.get(i, DATA) == DATA for i in shape_inputs))
        hit = False
        for o in n.output:
            level[o] = lv
            if dependent and not (n.op_type not in ALWAYS_VALUE_DEPENDENT and g.shape_known(o)):
                vd.add(o)
                hit = True
        if hit:
            hits.append(_name(n))
    return hits


def check_value_dependent(g: _Graph) -> list[Finding]:
    names = value_dependent_nodes(g)
    if not names:
        return []
    return [Finding("fail", "value-dependent", ", ".join(names[:3]) + (" ..." if len(names) > 3 else ""), "-",
                    f"{len(names)} of {len(g.nodes)} nodes have value-dependent output shapes: TensorRT's fused "
                    f"transformer kernels refuse them (NVIDIA/TensorRT#3903), they need an IOutputAllocator and "
                    f"no CUDA graph capture; fix: export with static shapes (fixed slot capacities)")]


RULES = (check_opset, check_ops, check_dtypes, check_initializer_inputs, check_topk, check_squeeze, check_range,
         check_value_dependent)


def check(path_or_model) -> list[Finding]:
    """All rules over an ONNX file (or ModelProto), in rule order."""
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else \
        onnx.load(str(path_or_model), load_external_data=False)
    g = _Graph(model)
    return [f if f.source else replace(f, source=ops.RULE_SOURCES[f.rule]) for rule in RULES for f in rule(g)]


def report(path: Path) -> dict:
    findings = check(path)
    rules = sorted({f.rule for f in findings if f.level == "fail"})
    return {"file": str(path), "would_fail": sum(f.level == "fail" for f in findings),
            "warnings": sum(f.level == "warn" for f in findings), "failed_rules": rules,
            "findings": [asdict(f) for f in findings],
            "source": f"{ops.DOCS} (table, opsets {OPSET_RANGE[0]}..{OPSET_RANGE[1]}), {ops.HEADERS}, {ops.PARSER}; "
                      f"not run against TensorRT",
            "rule_sources": dict(ops.RULE_SOURCES)}
