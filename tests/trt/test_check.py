"""The TensorRT-conformance checker: every rule fails on a hand-built graph that breaks it."""

import onnx
import pytest
from onnx import TensorProto, helper

from madtp_deploy.onnx.fold import fold_constants
from madtp_deploy.trt.check import check, report

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _model(nodes, inputs, outputs, inits=(), opset=20):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, dtype, shape=None):
    return helper.make_tensor_value_info(name, dtype, shape)


def _rules(model):
    return sorted({f.rule for f in check(model) if f.level == "fail"})


def _i64(name, values):
    return helper.make_tensor(name, I64, [len(values)], values)


def _clean():
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", F, ["batch", 4])], [_vi("y", F, None)])


def test_clean_graph_passes():
    assert check(_clean()) == []


@pytest.mark.parametrize("opset", [8, 25])
def test_opset_outside_range_fails(opset):
    m = _clean()
    m.opset_import[0].version = opset
    assert _rules(m) == ["opset"]


def test_custom_domain_and_unsupported_ops_fail():
    nodes = [helper.make_node("MyOp", ["x"], ["a"], domain="custom"), helper.make_node("Unique", ["x"], ["y"]),
             helper.make_node("Frobnicate", ["x"], ["z"])]
    m = _model(nodes, [_vi("x", F, [4])], [_vi("a", F), _vi("y", F), _vi("z", F)])
    m.opset_import.append(helper.make_opsetid("custom", 1))
    whys = {f.op: f.why for f in check(m) if f.rule == "op"}
    assert whys["MyOp"].startswith("custom domain 'custom'")
    assert whys["Unique"] == "not supported by TensorRT's ONNX parser"
    assert whys["Frobnicate"] == "not in TensorRT's operator table"


def _scatter(dtype):
    nodes = [helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=1)]
    return _model(nodes, [_vi("d", dtype, [2, 4]), _vi("i", I64, [2, 1]), _vi("u", dtype, [2, 1])],
                  [_vi("y", dtype, [2, 4])])


def test_scatter_elements_on_bool_fails_and_on_float_passes():
    assert _rules(_scatter(B)) == ["dtype"]
    assert "BOOL" in check(_scatter(B))[0].why
    assert check(_scatter(F)) == []


def test_dtype_of_intermediate_tensor_is_inferred():
    """The BOOL reaches ScatterElements through a Cast: found through shape inference, not value_info."""
    nodes = [helper.make_node("Cast", ["x"], ["d"], to=B),
             helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=1)]
    m = _model(nodes, [_vi("x", F, [2, 4]), _vi("i", I64, [2, 1]), _vi("u", B, [2, 1])], [_vi("y", B)])
    assert "dtype" in _rules(m)


def _slice_axes_from_reshape():
    """Slice whose axes come from Reshape(Constant), as the dynamo exporter writes them."""
    nodes = [helper.make_node("Constant", [], ["ax0"], value=_i64("ax0v", [1])),
             helper.make_node("Constant", [], ["shp"], value=_i64("shpv", [1])),
             helper.make_node("Reshape", ["ax0", "shp"], ["axes"]),
             helper.make_node("Slice", ["x", "st", "en", "axes"], ["y"])]
    return _model(nodes, [_vi("x", F, ["batch", 8])], [_vi("y", F)], [_i64("st", [1]), _i64("en", [5])])


def test_computed_slice_axes_fail_until_folded():
    m = _slice_axes_from_reshape()
    assert _rules(m) == ["initializer"]
    assert check(fold_constants(m)) == []


def test_reduce_axes_from_an_input_fail():
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["y"])]
    m = _model(nodes, [_vi("x", F, [2, 4]), _vi("axes", I64, [1])], [_vi("y", F)])
    assert "initializer" in _rules(m)


def test_topk_rules():
    def topk(sorted_, k):
        nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], sorted=sorted_)]
        return _model(nodes, [_vi("x", F, [1, 5000])], [_vi("v", F), _vi("i", I64)], [_i64("k", [k])])

    whys = sorted(f.why for f in check(topk(0, 4000)))
    assert whys == ["K=4000 > 3840, TensorRT's TopK limit", "sorted=0: TensorRT requires sorted=1"]
    assert check(topk(1, 10)) == []


def test_nonzero_makes_value_dependent_shapes():
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Transpose", ["nz"], ["y"])]
    m = _model(nodes, [_vi("x", F, [4])], [_vi("y", I64)])
    found = [f for f in check(m) if f.rule == "value-dependent"]
    assert len(found) == 1 and found[0].why.startswith("2 of 2 nodes")


def _reshape_to(shape_nodes):
    nodes = [*shape_nodes, helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    return _model(nodes, [_vi("x", F, ["batch", 4])], [_vi("y", F)])


def test_shape_computed_from_values_is_value_dependent_but_from_shapes_is_not():
    from_values = _reshape_to([helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
                               helper.make_node("Cast", ["mx"], ["k"], to=I64),
                               helper.make_node("Concat", ["k", "k"], ["shape"], axis=0)])
    from_shapes = _reshape_to([helper.make_node("Shape", ["x"], ["s"]),
                               helper.make_node("ReduceProd", ["s"], ["n"], keepdims=1),
                               helper.make_node("Concat", ["n", "n"], ["shape"], axis=0)])
    assert "value-dependent" in _rules(from_values)
    found = [f for f in check(from_values) if f.rule == "value-dependent"][0]
    assert found.why.startswith("2 of 5 nodes")  # the Reshape and the Relu after it
    assert "value-dependent" not in _rules(from_shapes)


def test_dynamic_export_reports_the_known_failures(dynamic_image):
    """The exporter's dynamic graph: computed Slice/ReduceL2 axes (until folded), value-dependent
    shapes (until the static export), BOOL ScatterElements exactly where the graph has them."""
    _, path = dynamic_image
    model = onnx.load(str(path))
    r = report(path)
    assert {"initializer", "value-dependent"} <= set(r["failed_rules"])
    assert {"Slice", "ReduceL2"} <= {f["op"] for f in r["findings"] if f["rule"] == "initializer"}
    consts = {i.name for i in model.graph.initializer} | {n.output[0] for n in model.graph.node
                                                         if n.op_type == "Constant"}
    axes_at = {"Slice": 3, "ReduceL2": 1, "ReduceSum": 1, "ReduceMax": 1, "ReduceMin": 1, "Squeeze": 1,
               "Unsqueeze": 1}
    computed_axes = [n for n in model.graph.node if n.op_type in axes_at and len(n.input) > axes_at[n.op_type]
                     and n.input[axes_at[n.op_type]] not in consts]
    assert len([f for f in r["findings"] if f["rule"] == "initializer"]) == len(computed_axes)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    bool_scatters = [n for n in model.graph.node if n.op_type == "ScatterElements" and types.get(n.input[0]) == B]
    dtype_fails = [f for f in r["findings"] if f["rule"] == "dtype"]
    assert len(dtype_fails) == len(bool_scatters)
    assert all(f["op"] == "ScatterElements" and "BOOL" in f["why"] for f in dtype_fails)
    folded = check(fold_constants(model))
    assert not [f for f in folded if f.rule == "initializer"]
    assert [f for f in folded if f.rule == "value-dependent"]


# -- the 10.15 table, the TensorRT 11 headers, and the parser's Squeeze/Range rules ---------------------------

def test_ops_added_in_tensorrt_10_15_pass_and_name_their_source():
    """Bug caught: a 10.1 table under a 9..24 opset range, failing RMSNormalization, RotaryEmbedding,
    Attention (opset 23) as 'not in TensorRT's operator table'."""
    nodes = [helper.make_node("RMSNormalization", ["x", "scale"], ["n"]),
             helper.make_node("RotaryEmbedding", ["n", "cos", "sin", "pos"], ["r"]),
             helper.make_node("Attention", ["r", "r", "r"], ["y"])]
    ins = [_vi("x", F, [1, 2, 4, 8]), _vi("scale", F, [8]), _vi("cos", F, [1, 4, 4]), _vi("sin", F, [1, 4, 4]),
           _vi("pos", I64, [1, 4])]
    m = _model(nodes, ins, [_vi("y", F)], opset=23)
    assert check(m) == []
    m.graph.node.append(helper.make_node("Frobnicate", ["y"], ["z"]))
    (f,) = check(m)
    assert "TensorRT 10.15" in f.source and "operators.md" in f.source


def test_rotary_position_ids_must_be_int64():
    nodes = [helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"])]
    ins = [_vi("x", F, [1, 2, 4, 8]), _vi("cos", F, [1, 4, 4]), _vi("sin", F, [1, 4, 4]),
           _vi("pos", TensorProto.INT32, [1, 4])]
    (f,) = check(_model(nodes, ins, [_vi("y", F)], opset=23))
    assert (f.level, f.rule) == ("fail", "dtype") and "position_ids" in f.why and "INT64" in f.why


def _unary(op, dtype, **kw):
    return _model([helper.make_node(op, ["x", *kw.pop("extra", [])], ["y"], **kw)], [_vi("x", dtype, [2, 4])],
                  [_vi("y", I64)], inits=kw.pop("inits", ()))


@pytest.mark.parametrize("op, dtype, extra", [("NonZero", B, {}), ("NonZero", TensorProto.INT32, {}),
                                              ("CumSum", I64, {"extra": ["ax"], "inits": [_i64("ax", [1])]}),
                                              ("CumSum", TensorProto.INT32, {"extra": ["ax"],
                                                                             "inits": [_i64("ax", [1])]})])
def test_types_the_tensorrt_11_headers_add_warn_with_both_sources(op, dtype, extra):
    """Bug caught: NonZero on BOOL and CumSum on INT64 failed on the 10.1 table although TensorRT 11's
    INonZeroLayer takes kBOOL and its cumulative layer kINT32/kINT64."""
    found = [f for f in check(_unary(op, dtype, **extra)) if f.rule == "dtype"]
    assert [f.level for f in found] == ["warn"], found
    assert "TensorRT 10.15" in found[0].why and "TensorRT 11.1" in found[0].why
    assert "NvInfer.h" in found[0].source and "operators.md" in found[0].source


@pytest.mark.parametrize("op, dtype, extra", [("NonZero", I64, {}),
                                              ("CumSum", B, {"extra": ["ax"], "inits": [_i64("ax", [1])]})])
def test_types_neither_source_lists_still_fail(op, dtype, extra):
    found = [f for f in check(_unary(op, dtype, **extra)) if f.rule == "dtype"]
    assert [f.level for f in found] == ["fail"], found


def _squeeze(shape, axes=None, opset=20):
    inputs, inits = ["x"], []
    if axes is not None:
        inputs.append("axes")
        inits.append(_i64("axes", axes))
    return _model([helper.make_node("Squeeze", inputs, ["y"])], [_vi("x", F, shape)], [_vi("y", F)], inits,
                  opset=opset)


def test_squeeze_without_axes_fails_on_a_dynamic_shape_only():
    """Bug caught: Squeeze without axes passed the checker; TensorRT's parser cannot infer which dims
    to drop from a dynamic shape."""
    (f,) = check(_squeeze(["batch", 1, 4]))
    assert (f.level, f.rule) == ("fail", "squeeze") and "dynamic" in f.why and "importSqueeze" in f.source
    assert check(_squeeze([2, 1, 4])) == []
    assert check(_squeeze(["batch", 1, 4], axes=[1])) == []
    old = _model([helper.make_node("Squeeze", ["x"], ["y"], axes=[1])], [_vi("x", F, ["b", 1])], [_vi("y", F)],
                 opset=12)
    assert check(old) == []  # opset < 13: axes as an attribute


def _range(dtypes, constant=True):
    names = ["start", "limit", "delta"]
    vals = [0, 5, 1]
    if constant:
        inits = [helper.make_tensor(n, t, [], [v]) for n, t, v in zip(names, dtypes, vals)]
        ins = []
    else:
        inits, ins = [], [_vi(n, t, []) for n, t in zip(names, dtypes)]
    return _model([helper.make_node("Range", names, ["y"])], ins, [_vi("y", dtypes[0])], inits)


def test_range_types_follow_the_parser():
    """Bug caught: Range on FP32 (or mixed) inputs passed unchecked."""
    (f,) = [f for f in check(_range([F, I64, F])) if f.rule == "range"]
    assert f.level == "fail" and "one type" in f.why
    assert [f for f in check(_range([F, F, F])) if f.rule == "range"] == []
    (f,) = [f for f in check(_range([F, F, F], constant=False)) if f.rule == "range"]
    assert f.level == "warn" and "FP32" in f.why and "start, limit, delta" in f.why
    (f,) = [f for f in check(_range([TensorProto.FLOAT16] * 3)) if f.rule == "range"]
    assert f.level == "warn" and "TensorRT 10.15" in f.why and "TensorRT 10.1" in f.source
    assert [f for f in check(_range([I64] * 3, constant=False)) if f.rule == "range"] == []


def test_every_finding_names_a_tensorrt_version():
    m = _slice_axes_from_reshape()
    m.opset_import[0].version = 25
    found = check(m)
    assert {f.rule for f in found} == {"opset", "initializer"}
    assert all("TensorRT 1" in f.source for f in found)
