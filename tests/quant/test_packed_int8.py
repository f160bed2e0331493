"""INT8 of the served graph (issue 23): `calibrate` quantizes the packed graph by default, its static-shape
form on request, and the packed INT8 graph keeps fp32's decisions and embeddings."""

import json

import numpy as np
import onnx
import pytest

import madtp_deploy
from madtp_deploy.errors import CalibrationError
from madtp_deploy.quant import calibset, compare
from madtp_deploy.quant.run import cached_int8, calibrate

TINY = "clip-tiny-test"
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def packed(scenes_dir, tmp_path_factory):
    """`calibrate` with no mode: the tiny model's image encoder, 12 val images."""
    out = tmp_path_factory.mktemp("packed-int8")
    return calibrate(model=TINY, temperature=1.0, encoders=("image",), data=scenes_dir, samples=12, output=out,
                     **QUIET)[0]


@pytest.fixture(scope="module")
def test_pixels(scenes_dir):
    spec = madtp_deploy.load(TINY).spec
    return calibset.build_set("image", spec, scenes_dir, "test", 24, seed=0)[0]


def test_default_mode_quantizes_the_packed_graph(packed):
    """Bug caught: `calibrate` without a mode quantizing the padded invariant graph (the old default)."""
    side = json.loads(packed["sidecar"].read_text())
    assert side["model"]["mode"] == "packed" and side["model"].get("capacity") is None
    assert json.loads(packed["fp32_onnx"].with_suffix(".json").read_text())["model"]["mode"] == "packed"
    assert packed["onnx"].name == "clip-tiny-test.image.int8.onnx"
    assert side["quantization"]["pruning_path"] == "float"


def test_packed_int8_keeps_fp32_decisions_and_embeddings(packed, test_pixels):
    """Bugs caught: the pack/unpack gathers or the pruning path quantized (keep counts move, the
    embeddings drift), a shared Q/DQ pair left on the path; and a batch-dependent INT8 graph."""
    q = packed["info"]["quantization"]
    layers = madtp_deploy.load(TINY).spec.vision_layers
    roles = list(q["path_matmul_roles"].values())
    # the packed graph's path is the padded one's: per layer QK, attn·V, P·TIS; q_map, A; the package sum
    assert (roles.count("score"), roles.count("pruning-only"), roles.count("package")) == (3 * layers, 2 * layers, layers)
    assert q["path_inputs_still_quantized"] == 0 and not set(q["excluded_nodes"]) & set(q["quantized_nodes"])
    ops = {n.op_type for n in onnx.load(str(packed["onnx"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    ref = compare.run_all(compare.session(packed["fp32_onnx"]), test_pixels, batch=8)
    got = compare.run_all(compare.session(packed["onnx"]), test_pixels, batch=8)
    keep = compare.keep_agreement(ref["kept"], got["kept"])
    print(f"packed INT8 vs fp32: keep equal {keep['equal_share']:.3f}, "
          f"embed cos {compare.cosine(ref['embeds'], got['embeds']):.5f}")
    assert keep["equal_share"] >= 0.75 and keep["mean_abs_diff"] < 0.5
    assert compare.cosine(ref["embeds"], got["embeds"]) > 0.995
    one = compare.run_all(compare.session(packed["onnx"]), test_pixels, batch=1)
    assert (one["kept"] == got["kept"]).all() and np.allclose(one["embeds"], got["embeds"], atol=1e-4)


def test_static_shapes_quantize_the_capacity_graph(scenes_dir, tmp_path):
    """Bug caught: shapes='static' quantizing the dynamic graph (no capacities in the sidecar), or
    writing it over the dynamic graph's file."""
    r = calibrate(model=TINY, temperature=1.0, encoders=("image",), shapes="static", data=scenes_dir, samples=8,
                  output=tmp_path, **QUIET)[0]
    side = json.loads(r["sidecar"].read_text())
    assert side["model"]["mode"] == "packed" and len(side["model"]["capacity"]) == 2
    assert r["onnx"].name == "clip-tiny-test.image.int8-static.onnx"
    inv = calibrate(model=TINY, mode="invariant", temperature=1.0, encoders=("image",), data=scenes_dir,
                    samples=8, output=tmp_path, **QUIET)[0]
    assert inv["onnx"].name == "clip-tiny-test.image.int8-invariant.onnx"


def test_static_shapes_with_an_onnx_file_is_an_error(packed, tmp_path):
    with pytest.raises(CalibrationError, match="--shapes static with --onnx .*fix:"):
        calibrate(onnx=packed["fp32_onnx"], shapes="static", output=tmp_path / "out", **QUIET)
    assert not (tmp_path / "out").exists()


def test_cached_int8_reuses_the_same_calibration_only(packed, test_pixels, tmp_path):
    """Bug caught: the bench's INT8 cache handing back a graph calibrated on other data."""
    a = {"pixels": test_pixels["pixels"][:8]}
    first = cached_int8(packed["fp32_onnx"], a, "test", tmp_path, **QUIET)
    stamp = first.stat().st_mtime_ns
    assert cached_int8(packed["fp32_onnx"], dict(a), "test", tmp_path, **QUIET) == first
    assert first.stat().st_mtime_ns == stamp
    other = cached_int8(packed["fp32_onnx"], {"pixels": test_pixels["pixels"][8:16]}, "test", tmp_path, **QUIET)
    assert other != first and json.loads(other.with_suffix(".json").read_text())["calibration"]["samples"] == 8


def test_every_weight_gemm_off_the_path_runs_in_int8(packed, tmp_path):
    """Bug caught: a Q/DQ pair left dangling after the path was rewired to float tensors. onnxruntime
    then counts the dangling QuantizeLinear as a consumer of the attention in_proj Gemm, does not fuse it
    into QGemm, and runs it in float on weights dequantized at every call (a quarter of the GEMM work)."""
    import onnxruntime as ort

    q = onnx.load(str(packed["onnx"]))
    used = {i for n in q.graph.node for i in n.input} | {o.name for o in q.graph.output}
    assert not [n.name for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not set(n.output) & used]
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(packed["onnx"]), opts, providers=["CPUExecutionProvider"])
    g = onnx.load(str(tmp_path / "optimized.onnx")).graph
    producer = {o: n for n in g.node for o in n.output}
    unfused = [n.name for n in g.node if n.op_type in ("Gemm", "MatMul")
               and any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input)]
    assert not unfused, f"float GEMMs on dequantized inputs: {unfused}"
    assert sum(n.op_type == "QGemm" for n in g.node) >= 4 * madtp_deploy.load(TINY).spec.vision_layers
