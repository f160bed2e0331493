"""One `madtp-deploy export` of the tiny BLIP retrieval encoders (packed, T 3), shared by the export
and bench tests: an export costs ~10 s per encoder on 2 cores, so the session makes it once. It skips
the export's own validation (~8 s): the tests compare onnxruntime with eager themselves, and
`madtp-deploy validate` runs the same validation on the text graph."""

import os
import subprocess
import sys

import pytest

SPEC, TEMPERATURE, MODE = "blip-retrieval-tiny", 3.0, "packed"
CLI = [sys.executable, "-m", "madtp_deploy.cli"]
# one torch thread: on the shared 2-core machine two spinning threads can make a tiny call 100x slower
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


_DONE: dict = {}  # one export per session: each test module that imports the fixture gets its own copy


@pytest.fixture(scope="session")
def blip_exported(tmp_path_factory):
    """(output folder, the CLI's CompletedProcess) of the export; files <out>/bt.{image,text}.{onnx,json}."""
    if "export" not in _DONE:
        out = tmp_path_factory.mktemp("blip-retrieval-onnx")
        r = subprocess.run(CLI + ["export", "--model", SPEC, "--mode", MODE, "--temperature", str(TEMPERATURE),
                                  "--output", str(out), "--name", "bt", "--no-validate"],
                           capture_output=True, text=True, timeout=600, env=ONE_THREAD)
        _DONE["export"] = (out, r)
    return _DONE["export"]


@pytest.fixture(scope="session")
def blip_model():
    import madtp_deploy

    return madtp_deploy.load(SPEC, mode=MODE, temperature=TEMPERATURE)
