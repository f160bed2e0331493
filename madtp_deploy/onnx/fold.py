"""Constant folding of exported graphs with onnx-graphsurgeon (what `polygraphy surgeon sanitize
--fold-constants` runs), so that TensorRT's parser sees axes and shapes as initializers.

The dynamo exporter writes `Reshape(Constant)` chains for Slice/Reduce axes; TensorRT's parser
wants those inputs as initializers (onnx-tensorrt docs/operators.md). Folding evaluates every
subgraph that depends only on constants (and shapes that are known statically) with onnxruntime,
replaces it by an initializer, and removes what is left unused. The graph's outputs are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from ..errors import ExportError
from ..files import atomic


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A new model with every constant subgraph folded into initializers (outputs unchanged)."""
    import onnx_graphsurgeon as gs
    import onnxruntime as ort

    from onnx_graphsurgeon.logger import G_LOGGER

    ort.set_default_logger_severity(3)  # "cannot constant fold CastLike" notes from its own folder
    # its warnings ("foldable nodes that produce large outputs": the transposed weights, which replace
    # the originals) go to stdout, into the CLI's output; errors still surface as exceptions
    G_LOGGER.severity = G_LOGGER.ERROR
    graph = gs.import_onnx(model)
    graph.fold_constants(fold_shapes=True, error_ok=False).cleanup().toposort()
    folded = gs.export_onnx(graph)
    folded.ir_version = model.ir_version
    del folded.opset_import[:]
    folded.opset_import.extend(model.opset_import)
    folded.producer_name, folded.producer_version = model.producer_name, model.producer_version
    # onnx-graphsurgeon drops node metadata; keep the exporter's stack traces (the bench's profile
    # attributes kernel time to the pruning machinery by them)
    meta = {n.name: n.metadata_props for n in model.graph.node if n.name and n.metadata_props}
    for n in folded.graph.node:
        if n.name in meta:
            n.metadata_props.extend(meta[n.name])
    return folded


def fold_file(src: Path, dst: Path | None = None) -> dict:
    """Fold `src` into `dst` (default: in place, atomically); returns node counts before and after."""
    src = Path(src)
    dst = Path(dst) if dst is not None else src
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # noqa: BLE001 - protobuf/IO errors
        raise ExportError(f"{src}: cannot read the ONNX file ({exc}); fix: re-export") from exc
    try:
        folded = fold_constants(model)
    except Exception as exc:  # noqa: BLE001 - onnx-graphsurgeon/onnxruntime evaluation errors
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{src}: constant folding failed ({first}); fix: export without folding and "
                          f"report the graph") from exc
    with atomic(dst) as tmp:
        onnx.save(folded, str(tmp))
    return {"nodes_before": len(model.graph.node), "nodes_after": len(folded.graph.node),
            "folder": "onnx_graphsurgeon.Graph.fold_constants"}
