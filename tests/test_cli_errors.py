"""The CLI's error contract: one line and exit 2 for bad input, the traceback (with its cause) only with --debug."""

import subprocess
import sys

CLI = [sys.executable, "-m", "madtp_deploy.cli"]


def test_bad_input_is_one_line_and_debug_adds_the_traceback_with_its_cause(tmp_path):
    """Bugs caught: errors re-raised `from None` (the cause lost, a bug in the model code read as a user
    error) and no way to see the traceback."""
    bad = tmp_path / "vocab.json"
    bad.write_text("{")
    r = subprocess.run(CLI + ["info", str(tmp_path / "missing.pt")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    bad_onnx = tmp_path / "m.image.onnx"
    bad_onnx.write_bytes(b"garbage")
    (tmp_path / "m.image.json").write_text("{not json")
    r = subprocess.run(CLI + ["--debug", "bench", "--onnx", str(bad_onnx)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" in r.stderr and "JSONDecodeError" in r.stderr  # the cause is kept
    assert r.stderr.rstrip().splitlines()[-1].startswith("madtp-deploy: error: ")


def test_bench_onnx_on_a_file_that_is_not_onnx_is_one_line(tmp_path):
    """Bug caught: `bench --onnx` on a file that is not ONNX ended in onnxruntime's InvalidProtobuf traceback."""
    import json

    bad = tmp_path / "m.image.onnx"
    bad.write_bytes(b"garbage")
    side = {"family": "clip", "encoder": "image", "model": {"source": "clip-tiny-test", "temperature": 3.0,
            "mode": "packed", "spec": __import__("madtp_deploy").specs.get_spec("clip-tiny-test").to_dict()}}
    (tmp_path / "m.image.json").write_text(json.dumps(side))
    r = subprocess.run(CLI + ["bench", "--onnx", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "m.image.onnx: not a readable ONNX model" in r.stderr and "fix:" in r.stderr
