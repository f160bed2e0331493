"""Calibration set + manifest + Q/DQ quantization on the tiny spec, the pruning-path analysis, and the
one-line errors of `madtp-deploy calibrate` (nothing written on error)."""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import madtp_deploy
from madtp_deploy.cli import app
from madtp_deploy.quant import calibset, compare, graph
from madtp_deploy.quant.quantize import QuantConfig, preprocess
from madtp_deploy.quant.run import calibrate

TINY = "clip-tiny-test"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny spec's image encoder (pruning on), exported once for the module."""
    from madtp_deploy.onnx.export import export_model

    d = tmp_path_factory.mktemp("tiny_onnx")
    m = madtp_deploy.load(TINY, mode="invariant", temperature=1.0)
    export_model(m, d, "tiny", source=TINY, validate=False, log=lambda *_: None, encoders=("image",))
    return d / "tiny.image.onnx"


@pytest.fixture(scope="module")
def test_pixels(scenes_dir):
    spec = madtp_deploy.load(TINY).spec
    arrays, _ = calibset.build_set("image", spec, scenes_dir, "test", 24, seed=0)
    return arrays


def _pruning_matmuls(pre: onnx.ModelProto):
    """An independent answer, by weight values: every MatMul except those that multiply by a dense
    layer's weight (in_proj, out_proj, the MLP, the output projection) is on the pruning path."""
    from onnx import numpy_helper

    model = madtp_deploy.load(TINY, temperature=1.0)
    dense = [p.detach().numpy() for n, p in model.named_parameters()
             if p.ndim == 2 and not any(s in n for s in ("q_map", "space_dict", "embedding"))]
    inits = {i.name: numpy_helper.to_array(i) for i in pre.graph.initializer}

    def is_dense(w):
        return any(w.shape == d.shape[::-1] and np.allclose(w, d.T) or w.shape == d.shape and np.allclose(w, d)
                   for d in dense)
    return {n.name for n in pre.graph.node if n.op_type == "MatMul"
            and not any(i in inits and inits[i].ndim == 2 and is_dense(inits[i]) for i in n.input)}


def test_pruning_path_is_the_score_matmuls(exported, tmp_path):
    pre = tmp_path / "pre.onnx"
    preprocess(exported, pre)
    model = onnx.load(str(pre))
    p = graph.find_pruning_path(model)
    assert set(p.matmuls) == _pruning_matmuls(model)
    layers = madtp_deploy.load(TINY).spec.vision_layers
    roles = list(p.roles.values())
    # per layer: QK, attn·V, P·TIS (score); q_map, A (pruning-only); the package sum
    assert (roles.count("score"), roles.count("pruning-only"), roles.count("package")) == (3 * layers, 2 * layers, layers)


def test_calibrate_writes_set_manifest_qdq_and_sidecar(exported, scenes_dir, tmp_path, test_pixels):
    out = calibrate(onnx=exported, data=scenes_dir, samples=12, output=tmp_path, log=lambda *_: None)[0]
    z = np.load(out["calib_set"])
    assert z.files == ["pixels"] and z["pixels"].shape == (12, 3, 32, 32)
    man = json.loads(out["calib_set"].with_suffix(".json").read_text())
    assert man["sha256"] == calibset.sha256_file(out["calib_set"])
    assert man["arrays_sha256"] == calibset.arrays_sha256({"pixels": z["pixels"]})
    img = next(f for f in man["sources"]["files"] if f["file"].endswith(".png"))
    assert img["sha256"] == calibset.sha256_file(scenes_dir / "images" / img["file"].split("/")[-1])
    assert len(man["sources"]["indices"]) == 12
    side = json.loads(out["sidecar"].read_text())
    fp32 = json.loads(exported.with_suffix(".json").read_text())
    assert side["model"] == fp32["model"] and side["io"] == fp32["io"] and side["encoder"] == "image"
    q = side["quantization"]
    assert q["pruning_path"] == "float" and q["samples"] == 12 and q["config"]["method"] == "minmax"
    assert side["calibration"]["set_sha256"] == man["sha256"] and side["file_sha256"] == calibset.sha256_file(out["onnx"])
    model = onnx.load(str(out["onnx"]))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not set(q["excluded_nodes"]) & set(q["quantized_nodes"])
    assert q["path_inputs_still_quantized"] == 0
    r = compare.run_all(compare.session(out["onnx"]), test_pixels)
    assert r["embeds"].shape == (24, 64) and r["kept"].shape == (24, 2)


def test_exclusion_keeps_more_decisions_than_quantizing_the_path(exported, scenes_dir, tmp_path, test_pixels):
    ref = compare.run_all(compare.session(exported), test_pixels)["kept"]
    share = {}
    for pp in (False, True):
        out = calibrate(onnx=exported, data=scenes_dir, samples=12, output=tmp_path, log=lambda *_: None,
                        cfg=QuantConfig(quantize_pruning_path=pp))[0]
        share[pp] = compare.keep_agreement(ref, compare.run_all(compare.session(out["onnx"]), test_pixels)["kept"])
        q = json.loads(out["sidecar"].read_text())["quantization"]
        on_path, excluded = set(q["path_matmul_roles"]), set(q["excluded_nodes"])
        assert (on_path <= excluded) if not pp else not (on_path & excluded)
    assert share[False]["equal_share"] >= 0.7
    assert share[False]["equal_share"] > share[True]["equal_share"]


def test_float_copy_gives_the_path_float_inputs(exported, tmp_path, scenes_dir):
    for copy in (False, True):
        out = calibrate(onnx=exported, data=scenes_dir, samples=8, output=tmp_path, log=lambda *_: None,
                        cfg=QuantConfig(quantize_pruning_path=True, float_copy=copy), name=f"c{copy}")[0]
        q = json.loads(out["sidecar"].read_text())["quantization"]
        assert (q["path_inputs_still_quantized"] == 0) == copy
        assert (q["float_copy_rewired_inputs"] > 0) == copy


# -- bad inputs: one-line errors, nothing written --------------------------------------------------

def _invoke(args, out):
    r = CliRunner().invoke(app, ["calibrate", *args, "--output", str(out)])
    assert r.exit_code == 2, (r.exception, r.output)
    msg = r.output
    assert msg.startswith("madtp-deploy: error:") and msg.count("\n") == 1 and "fix:" in msg
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))
    return msg


def test_empty_set_is_an_error(exported, tmp_path):
    np.savez(tmp_path / "empty.npz", pixels=np.zeros((0, 3, 32, 32), np.float32))
    msg = _invoke(["--onnx", str(exported), "--calib-set", str(tmp_path / "empty.npz")], tmp_path / "out")
    assert "empty calibration set (0 samples)" in msg and "empty.npz" in msg


def test_unreadable_set_is_an_error(exported, tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    msg = _invoke(["--onnx", str(exported), "--calib-set", str(tmp_path / "bad.npz")], tmp_path / "out")
    assert "unreadable" in msg and "bad.npz" in msg


def test_wrong_image_size_is_an_error(exported, tmp_path):
    np.savez(tmp_path / "big.npz", pixels=np.zeros((16, 3, 64, 64), np.float32))
    msg = _invoke(["--onnx", str(exported), "--calib-set", str(tmp_path / "big.npz"), "--samples", "8"],
                  tmp_path / "out")
    assert "[3, 64, 64]" in msg and "32" in msg


def test_fewer_samples_than_asked_is_an_error(exported, tmp_path, scenes_dir):
    np.savez(tmp_path / "few.npz", pixels=np.zeros((4, 3, 32, 32), np.float32))
    msg = _invoke(["--onnx", str(exported), "--calib-set", str(tmp_path / "few.npz"), "--samples", "8"],
                  tmp_path / "out")
    assert "4 samples" in msg and "--samples 8" in msg
    msg = _invoke(["--onnx", str(exported), "--data", str(scenes_dir), "--samples", "17"], tmp_path / "out")
    assert "16 images" in msg and "--samples 17" in msg


def test_onnx_without_expected_inputs_is_an_error(exported, tmp_path, scenes_dir):
    m = onnx.load(str(exported))
    m.graph.input[0].name = "images"
    for n in m.graph.node:
        for k, i in enumerate(n.input):
            if i == "pixels":
                n.input[k] = "images"
    onnx.save(m, str(tmp_path / "renamed.onnx"))
    (tmp_path / "renamed.json").write_text(exported.with_suffix(".json").read_text())
    msg = _invoke(["--onnx", str(tmp_path / "renamed.onnx"), "--data", str(scenes_dir), "--samples", "4"],
                  tmp_path / "out")
    assert "graph inputs images, expected pixels" in msg


def test_cli_error_is_one_stderr_line_exit_2(exported, tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        app(["calibrate", "--onnx", str(exported), "--calib-set", str(tmp_path / "bad.npz"),
             "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("madtp-deploy: error:")
    assert not (tmp_path / "out").exists()


def test_blip_models_are_refused_in_one_line(tmp_path):
    """Bug caught: a BLIP graph quantized with CLIP's float-path rules and no measured keep agreement
    (it ran, and its keep counts differed from fp32 on every batch)."""
    msg = _invoke(["--model", "blip-retrieval-tiny", "--temperature", "3", "--samples", "4"], tmp_path / "out")
    assert "BLIP model" in msg and "blip-retrieval-tiny" in msg
