"""scripts/gpu_check.py (`make gpu-check`) on a machine without a GPU: every check skips, with a reason."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: run `make gpu-check` for the real checks")
def test_gpu_check_writes_json_with_skip_reasons(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert _script().main(["--output", str(out), "--model", "clip-tiny-test", "--batch", "2"]) == 0
    r = json.loads(out.read_text())
    assert set(r["checks"]) == {"torch-cuda-eager", "torch-cuda-compiled", "aoti-cuda", "ort-cuda", "tensorrt"}
    for name, check in r["checks"].items():
        assert check["status"] == "skip" and len(check["reason"]) > 20, name
    assert r["summary"]["skip"] == sorted(r["checks"]) and r["machine"]["gpu"] is None
    cmds = r["checks"]["tensorrt"]["commands"]
    assert set(cmds) == {"dynamic", "static"} and "--shapes static" in cmds["static"][0]
    assert all(c[1].startswith("madtp-deploy build") and c[2].startswith("polygraphy run") for c in cmds.values())
