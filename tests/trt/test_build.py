"""`madtp-deploy build` without TensorRT: profiles, polygraphy config, cache keys, errors, session."""

import json
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from madtp_deploy.errors import RuntimeBackendError, UsageError
from madtp_deploy.specs import get_spec
from madtp_deploy.trt import build

try:
    import tensorrt  # noqa: F401
    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False


def _text_graph(tmp_path, max_batch=64):
    """A stand-in text graph with the real IO contract's inputs and a sidecar like export writes."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])
    out = helper.make_tensor_value_info("embeds", TensorProto.INT64, None)
    g = helper.make_graph([helper.make_node("Add", ["input_ids", "attention_mask"], ["embeds"])], "g", [ids, mask], [out])
    path = tmp_path / "tiny.text.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), path)
    side = {"encoder": "text", "max_batch": max_batch, "shapes": "dynamic",
            "model": {"spec": get_spec("clip-tiny-test").to_dict()}}
    path.with_suffix(".json").write_text(json.dumps(side))
    return path


def test_profile_covers_every_input_with_full_shapes(tmp_path, dynamic_image):
    m, image = dynamic_image
    shapes = build.profile_shapes(image, (1, 8, 32))
    s = m.spec.image_size
    assert shapes == {"pixels": ((1, 3, s, s), (8, 3, s, s), (32, 3, s, s))}
    text = build.profile_shapes(_text_graph(tmp_path), (2, 4, 16), (3, 10, 16))
    assert text == {n: ((2, 3), (4, 10), (16, 16)) for n in ("input_ids", "attention_mask")}
    default = build.profile_shapes(_text_graph(tmp_path), (1, 8, 32))
    assert default["attention_mask"] == ((1, 3), (8, 16), (32, 16))  # the model's length range


def test_profile_refuses_batches_above_the_graph_and_bad_triples(tmp_path):
    with pytest.raises(UsageError, match="max batch 16"):
        build.profile_shapes(_text_graph(tmp_path, max_batch=16), (1, 8, 32))
    for text in ("8,1,32", "1,2", "a,b,c", "0,1,2"):
        with pytest.raises(UsageError, match="--batch-sizes"):
            build.parse_triple(text, "--batch-sizes")
    assert build.parse_triple("4", "--batch-sizes") == (4, 4, 4)


def test_polygraphy_config_has_one_profile_and_no_precision_flags(tmp_path):
    shapes = build.profile_shapes(_text_graph(tmp_path), (1, 8, 32))
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"")
    config = build.make_config(shapes, cache)
    (profile,) = config.profiles
    for name, (lo, opt, hi) in shapes.items():
        assert (profile[name].min, profile[name].opt, profile[name].max) == (lo, opt, hi)
    assert not (config.fp16 or config.int8 or config.bf16 or config.fp8)  # TRT 11: strongly typed only
    assert config.timing_cache_path == str(cache)


def test_engine_names_and_keys_change_with_every_input():
    shapes = {"pixels": ((1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))}
    base = ("a" * 64, shapes, "fp32", "11.0.0", "sm_90")
    keys = {build.engine_key(*base)}
    for i, other in enumerate(("b" * 64, {"pixels": ((1, 3, 32, 32), (8, 3, 32, 32), (64, 3, 32, 32))},
                               "fp16", "10.15.1", "sm_89")):
        keys.add(build.engine_key(*base[:i], other, *base[i + 1:]))
    assert len(keys) == 6
    p = build.engine_path("engines", "export/m.image.onnx", "k1", "fp32", "11.0.0", "sm_90")
    assert str(p) == "engines/m.image.fp32.trt11.0.0.sm_90.k1.plan"


def test_engine_built_elsewhere_is_refused_with_the_fix():
    side = {"tensorrt": "10.15.1", "compute_capability": "sm_89", "onnx": "export/m.image.onnx"}
    assert build.engine_mismatch(side, "10.15.1", "sm_89") is None
    assert build.engine_mismatch(side, "10.15.1", "sm_90") and build.engine_mismatch(side, "11.0.0", "sm_89")
    why = build.engine_mismatch(side, "11.0.0", "sm_90")
    assert "TensorRT 10.15.1 on sm_89" in why and "madtp-deploy build export/m.image.onnx" in why


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed: the no-TensorRT error does not apply")
def test_build_without_tensorrt_is_one_line(tmp_path, dynamic_image):
    _, image = dynamic_image
    with pytest.raises(RuntimeBackendError, match="TensorRT is not installed"):
        build.build_engine(image, engines_dir=tmp_path / "engines")
    assert not (tmp_path / "engines").exists()
    r = subprocess.run([sys.executable, "-m", "madtp_deploy.cli", "build", str(image), "--output",
                        str(tmp_path / "engines")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "TensorRT is not installed" in r.stderr


def test_profile_of_a_blip_nlvr_graph(tmp_path):
    """Bug caught: the builder reading every sidecar's spec as CLIP's (a BLIP spec has a task and no
    context length), so BLIP graphs got no profile."""
    names = ["images0", "images1", "input_ids", "attention_mask"]
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3, 32, 32]) for n in names[:2]] + \
          [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in names[2:]]
    out = helper.make_tensor_value_info("kept_text", TensorProto.INT64, None)
    g = helper.make_graph([helper.make_node("Add", names[2:], ["kept_text"])], "g", ins, [out])
    path = tmp_path / "tiny.nlvr.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), path)
    path.with_suffix(".json").write_text(json.dumps({"encoder": "nlvr", "max_batch": 64, "shapes": "dynamic",
                                                     "model": {"spec": get_spec("blip-nlvr-tiny").to_dict()}}))
    shapes = build.profile_shapes(path, (1, 8, 32))
    assert shapes["images1"] == ((1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))
    assert shapes["input_ids"] == ((1, 3), (8, 32), (32, 32))  # statement length 3 ... max_positions
