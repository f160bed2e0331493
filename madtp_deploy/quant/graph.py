"""Find the pruning path of an exported MADTP graph by data flow, and give it float inputs back.

The pruning decisions of a layer are its TopK nodes (which tokens survive, in which order) and its
integer keep counts (the `kept` output). Walking the graph backwards from them reaches every op that
decides: the scores SA / TA / CA and their attention probabilities, the threshold, the keep counts,
the masks and the index arithmetic. The walk does not enter the dense layers: it stops at a
MatMul / Gemm / Conv with a constant (weight) input (in_proj, out_proj, the MLP, ...), and it does
not follow the data input of Shape / Size (a shape is not a value). Two more groups join:

- **pruning-only nodes**: nodes whose every consumer is already on the path and whose outputs are
  no graph output (MAG's `q_map` projection and A = q·space_dictᵀ: they serve only the decision);
- **score-weighted MatMuls**: activation x activation MatMuls fed by the path (the package token,
  Σ TIS-weights · tokens).

Node names come from the exporter and are used only to report and exclude; no name is parsed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import onnx

WEIGHT_OPS = ("MatMul", "Gemm", "Conv")
SHAPE_ONLY = ("Shape", "Size")
INT_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
FLOAT = onnx.TensorProto.FLOAT
NON_FLOAT = (*INT_TYPES, onnx.TensorProto.BOOL)


@dataclass
class PruningPath:
    nodes: set[str]                                   # every node on the path (all op types)
    matmuls: list[str]                                # MatMul / Gemm on the path, graph order
    seeds: list[str]                                  # the TopK nodes and the keep-count producers
    roles: dict[str, str] = field(default_factory=dict)  # matmul -> "score" | "pruning-only" | "package"

    def to_dict(self) -> dict:
        return {"nodes": len(self.nodes), "matmuls": self.matmuls, "roles": self.roles, "seeds": self.seeds}


def _constant_tensors(g: onnx.GraphProto) -> set[str]:
    """Initializers and everything computed from constants only (Constant, folded Transposes...)."""
    const = {i.name for i in g.initializer}
    for n in g.node:  # nodes are topologically sorted in a valid ONNX graph
        if n.op_type == "Constant" or (n.input and all(i in const or i == "" for i in n.input)):
            const.update(n.output)
    return const


def _elem_types(g: onnx.GraphProto) -> dict[str, int]:
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def find_pruning_path(model: onnx.ModelProto) -> PruningPath:
    """The model should have been through shape inference (quant_pre_process does it): the walk
    that finds pruning-only nodes follows float tensors and needs their element types."""
    g = model.graph
    const = _constant_tensors(g)
    types = _elem_types(g)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def is_weight_op(n) -> bool:
        return n.op_type in WEIGHT_OPS and any(i in const for i in n.input[:2])

    def is_float(t: str) -> bool:  # unknown types count as float: the walk then keeps more in main
        return types.get(t, FLOAT) not in NON_FLOAT

    # 1. backwards from the decisions, not into the dense layers
    seeds = [n for n in g.node if n.op_type == "TopK"]
    seeds += [producer[o.name] for o in g.output
              if o.type.tensor_type.elem_type in INT_TYPES and o.name in producer]
    backward: set[str] = set()
    queue = deque(seeds)
    while queue:
        n = queue.popleft()
        if n.name in backward:
            continue
        backward.add(n.name)
        if n.op_type in SHAPE_ONLY:
            continue
        for i in n.input:
            p = producer.get(i)
            if p is None or i in const or p.name in backward or is_weight_op(p):
                continue
            queue.append(p)

    # 2. package MatMuls: activation x activation, fed by the path (TIS-weighted sums of tokens)
    derived = {o for n in g.node if n.name in backward for o in n.output if is_float(o)}
    for n in g.node:  # score values carried forward by elementwise / reshaping ops
        if n.name not in backward and n.op_type not in WEIGHT_OPS and any(i in derived for i in n.input):
            derived.update(o for o in n.output if is_float(o))
    package: set[str] = set()
    cut: set[tuple[str, str]] = set()  # (tensor, the MatMul reading it)
    for n in g.node:
        if n.op_type == "MatMul" and n.name not in backward and not is_weight_op(n):
            fed = [i for i in n.input if i in derived]
            if fed:
                package.add(n.name)
                cut.update((i, n.name) for i in fed)

    # 3. which nodes' float values reach a float graph output (other than as package weights)
    float_outputs = {o.name for o in g.output if is_float(o.name)}
    main: set[str] = set()
    for n in reversed(g.node):
        for o in n.output:
            if not is_float(o):
                continue
            if o in float_outputs or any(c.name in main and (o, c.name) not in cut
                                         for c in consumers.get(o, [])):
                main.add(n.name)
                break

    path = backward | package
    for n in g.node:
        if (n.name not in main and n.op_type != "Constant" and n.name not in path
                and all(o in consumers for o in n.output) and not all(i in const for i in n.input)):
            path.add(n.name)
    roles = {}
    for n in g.node:
        if n.op_type in ("MatMul", "Gemm") and n.name in path:
            roles[n.name] = ("score" if n.name in backward else "package" if n.name in package
                             else "pruning-only")
    matmuls = [n.name for n in g.node if n.name in roles]
    return PruningPath(path, matmuls, [n.name for n in seeds], roles)


def float_copy(model: onnx.ModelProto, path: set[str]) -> int:
    """Let the path read float tensors, not their Q/DQ copies. Returns the inputs rewired.

    A tensor that feeds a quantized node gets QuantizeLinear -> DequantizeLinear, and onnxruntime
    hands the DQ output to every consumer, float ones included (a shared pair). For each node on
    the path that reads such a DQ output, read the float tensor the Q node quantized instead.
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    init = {i.name for i in g.initializer}
    rewired = 0
    for n in g.node:
        if n.name not in path or n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, name in enumerate(n.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in init:
                continue
            n.input[k] = q.input[0]
            rewired += 1
    return rewired


def drop_unused_qdq(model: onnx.ModelProto) -> int:
    """Remove QuantizeLinear / DequantizeLinear nodes whose outputs nothing reads (what `float_copy`
    leaves when it rewires a pair's only consumer). Returns the nodes removed.

    They compute nothing, but onnxruntime still counts a dangling QuantizeLinear as a consumer: a Gemm
    whose output also feeds one is not fused into QGemm (its QDQ selector wants the output read by Q
    nodes only, or by no Q node at all) and runs in float on weights dequantized at every call. In the
    packed image graph that was every attention in_proj (a quarter of the GEMM work)."""
    g = model.graph
    removed = 0
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            return removed
        for n in dead:
            g.node.remove(n)
        removed += len(dead)


def quantized_path_inputs(model: onnx.ModelProto, path: set[str]) -> int:
    """How many inputs of path nodes read a DequantizeLinear output (0 = the path computes in float)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return sum(1 for n in model.graph.node if n.name in path
               for i in n.input if i in producer and producer[i].op_type == "DequantizeLinear")


def path_feeders(model: onnx.ModelProto, path: PruningPath) -> list[str]:
    """Dense MatMul / Gemm nodes (constant weights) not on the path whose outputs the path reads
    directly or through reshapes (the attention's in_proj: q and k make the scores)."""
    g = model.graph
    const = _constant_tensors(g)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in g.node:
        if n.name in path.nodes or n.op_type not in ("MatMul", "Gemm") or not any(i in const for i in n.input[:2]):
            continue
        if any(c.name in path.nodes for o in n.output for c in consumers.get(o, [])):
            out.append(n.name)
    return out


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """Conv / MatMul / Gemm nodes that read a graph input directly (the image tower's patch embedding).

    Its uint8 input (the pixels, one scale for all channels) moves layer-0 scores as much as the
    image's own 8-bit rounding does, for well under 1% of the FLOPs: keeping it in float is cheap.
    """
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type in WEIGHT_OPS and any(i in inputs for i in n.input)]
