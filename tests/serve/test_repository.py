"""serve-repo's repository: every config.pbtxt parses as Triton's ModelConfig (tritonclient's own
protobuf, in the serving venv), declares what the issue asks, and the manifest loads only CPU models."""

import json
import subprocess

import pytest

from madtp_deploy.errors import UsageError
from madtp_deploy.serve import commands
from madtp_deploy.serve.repository import parse_variants, write_repository
from madtp_deploy.serve.server import ServeError, TritonServer, find_triton, venv_python

from ..shipped_artifacts import MODEL

PARSE = """
import json, sys
from pathlib import Path
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
out = {}
for f in sorted(Path(sys.argv[1]).glob("*/config.pbtxt")):
    cfg = text_format.Parse(f.read_text(), model_config_pb2.ModelConfig())
    out[f.parent.name] = json_format.MessageToDict(cfg)
print(json.dumps(out))
"""


def test_configs_parse_as_triton_model_config(shipped_repo, serve_venv):
    p = subprocess.run([str(venv_python(serve_venv)), "-c", PARSE, str(shipped_repo)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    cfg = json.loads(p.stdout)
    assert set(cfg) == {"image", "text", "image_onnx", "text_onnx", "image_trt", "text_trt"}
    for name in ("image", "text"):
        c = cfg[name]
        assert c["backend"] == "python" and c["maxBatchSize"] == 64
        assert c["dynamicBatching"]["preferredBatchSize"] and c["dynamicBatching"]["maxQueueDelayMicroseconds"]
        assert c["instanceGroup"][0]["kind"] == "KIND_CPU"
        assert c["modelWarmup"][0]["inputs"]
        assert [i["dataType"] for i in c["input"]] == ["TYPE_STRING"]
        assert {o["name"]: (o["dataType"], o["dims"]) for o in c["output"]} == {
            "EMBEDS": ("TYPE_FP32", ["64"]), "KEPT": ("TYPE_INT64", ["4"]), "GFLOPS": ("TYPE_FP32", ["1"])}
    assert cfg["image"]["input"][0]["name"] == "IMAGE" and cfg["text"]["input"][0]["name"] == "TEXT"
    assert cfg["image_onnx"]["backend"] == "onnxruntime" and cfg["image_onnx"]["instanceGroup"][0]["kind"] == "KIND_GPU"
    assert [i["name"] for i in cfg["text_onnx"]["input"]] == ["input_ids", "attention_mask"]
    assert cfg["image_trt"]["platform"] == "tensorrt_plan"
    assert "overflow" in [o["name"] for o in cfg["image_trt"]["output"]]  # the static graph's contract
    manifest = json.loads((shipped_repo / "repository.json").read_text())
    assert manifest["load"] == ["image", "text"] and "image_trt" in manifest["gpu_only"]


def test_option_errors_name_the_fix(tmp_path):
    with pytest.raises(UsageError, match="--variants 'packed,fast'.*fix:"):
        parse_variants("packed,fast")
    with pytest.raises(UsageError, match="--concurrency '1,x'.*fix:"):
        commands._ints("1,x", "--concurrency", 1, 1024, "1,4")
    with pytest.raises(UsageError, match="--plan 'engines/x.plan': expected ENCODER=FILE"):
        commands._plans(["engines/x.plan"])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a repository serve-repo wrote"):
        write_repository(MODEL, tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="include packed"):
        write_repository(MODEL, tmp_path / "new", variants=("dense",))


def test_launcher_errors(tmp_path, shipped_repo):
    with pytest.raises(ServeError, match="make serve-env"):
        find_triton(tmp_path / "no-venv")
    with pytest.raises(ServeError, match="no repository.json.*serve-repo"):
        TritonServer(tmp_path, venv=tmp_path)
    with pytest.raises(ServeError, match="image_onnx: not served .* on this machine"):
        TritonServer(shipped_repo, models=["image_onnx"], venv=tmp_path)
