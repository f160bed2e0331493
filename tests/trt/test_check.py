import onnx
import pytest
from onnx import TensorProto, helper

from madtp_deploy.trt.check import check


def _topk_model(tmp_path, sorted_, k):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5000])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, None)
    i = helper.make_tensor_value_info("i", TensorProto.INT64, None)
    kc = helper.make_tensor("k", TensorProto.INT64, [1], [k])
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], sorted=sorted_, name="topk")
    g = helper.make_graph([node], "g", [x], [v, i], initializer=[kc])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), path)
    return path


def test_topk_rules(tmp_path):
    levels = {f.why.split(":")[0]: f.level for f in check(_topk_model(tmp_path, 0, 4000))}
    assert levels == {"sorted=0": "fail", "K=4000 > 3840, TensorRT's TopK limit": "fail"}
    assert check(_topk_model(tmp_path, 1, 10)) == []


def test_trt_runtime_skips_without_tensorrt():
    pytest.importorskip("tensorrt", reason="TensorRT is not installable here (NVIDIA's package index unreachable)")
