"""Kills leave no half-written final file and the next run cleans up; shared models and sessions are
thread-safe (4 threads give exactly the sequential results)."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import madtp_deploy

from ..conftest import TINY, tiny_inputs
from .conftest import cli

CLI = [sys.executable, "-m", "madtp_deploy.cli"]


def _kill_when(proc, ready, timeout=180.0):
    """SIGKILL `proc` as soon as ready() is true (the run is in the middle of its work)."""
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read()}"
        assert time.monotonic() < end, "never reached the point to kill at"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_export_leaves_no_final_file_and_next_run_cleans_staging(tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen(CLI + ["export", "--model", TINY, "--temperature", "3", "--output", str(out), "--no-validate"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _kill_when(p, lambda: out.is_dir() and any(out.glob(".export-*")))
    names = [f.name for f in out.iterdir()]
    assert [n for n in names if n.startswith(".export-")], "the kill left its staging folder"
    assert not [n for n in names if not n.startswith(".")], "no final file after a kill while staging"
    young = cli("export", "--model", "no-such-model", "--output", out)  # the next run (here it fails early)
    assert young.exit_code == 2 and any(out.glob(".export-*")), "a young staging folder may be a live run's"
    for d in out.glob(".export-*"):  # as if the kill happened more than an hour ago
        os.utime(d, (time.time() - 7200, time.time() - 7200))
    r = cli("export", "--model", "no-such-model", "--output", out)
    assert r.exit_code == 2 and not list(out.iterdir()), "the stale staging folder is removed"


@pytest.fixture(scope="module")
def image_onnx(tmp_path_factory):
    from madtp_deploy.onnx.export import export_model

    out = tmp_path_factory.mktemp("onnx")
    m = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    return export_model(m, out, "tiny", source=TINY, validate=False, log=lambda *_: None, encoders=("image",))


def test_one_ort_session_shared_by_4_threads_equals_sequential(image_onnx):
    from madtp_deploy.runtime import open_session

    s = open_session(next(p for p in image_onnx if p.suffix == ".onnx"), backend="ort")
    feeds = [{"pixels": tiny_inputs(4, seed=i)[0].numpy()} for i in range(4)]
    seq = [s.run(f) for f in feeds]
    with ThreadPoolExecutor(4) as ex:
        par = list(ex.map(s.run, feeds))
    for a, b in zip(seq, par):
        assert np.array_equal(a["embeds"], b["embeds"]) and np.array_equal(a["kept"], b["kept"])
    assert len({tuple(o["kept"].ravel()) for o in seq}) > 1, "inputs that prune differently"


def test_ort_profile_leaves_no_file(image_onnx, tmp_path, monkeypatch):
    import tempfile

    from madtp_deploy.benchmark.profile import machinery_share

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    share = machinery_share(next(p for p in image_onnx if p.suffix == ".onnx"),
                            [{"pixels": tiny_inputs(2)[0].numpy()}], runs=2)
    assert share["model"] > 0
    assert not list(tmp_path.iterdir()), "the onnxruntime profile is removed once read"


def test_sidecar_records_an_absolute_source(tmp_path, monkeypatch):
    """A checkpoint given by a relative path is recorded absolute, so validate works from any cwd."""
    from madtp_deploy.cli import _source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.pt").write_bytes(b"")
    assert _source("m.pt") == str(tmp_path / "m.pt")
    assert _source(TINY) == TINY and _source("shipped") == "shipped"


def test_one_model_shared_by_4_threads_equals_sequential(tiny_model):
    batches = [tiny_inputs(4, seed=i) for i in range(4)]

    def run(b):
        with torch.inference_mode():
            i, t = tiny_model.encode_image(b[0]), tiny_model.encode_text(b[1])
        return i.embeds, i.kept, t.embeds, t.kept

    seq = [run(b) for b in batches]
    with ThreadPoolExecutor(4) as ex:
        par = list(ex.map(run, batches))
    for a, b in zip(seq, par):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_killed_training_leaves_complete_files_and_resume_cleans_up(small_scenes, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(small_scenes), "--output", str(out), "--init", TINY, "--batch-size", "8",
            "--epochs", "1000"]
    p = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _kill_when(p, lambda: (out / "last.pt").exists())
    # every file under a final name is complete (writes go to a temporary name, then rename)
    state = torch.load(out / "last.pt", weights_only=False)
    for name in ("madtp.pt", "model.safetensors"):
        if (out / name).exists():
            assert madtp_deploy.load(out / name).spec.name
    if (out / "model.json").exists():
        json.loads((out / "model.json").read_text())
    # a kill in the middle of torch.save leaves its temporary file: the next run removes it first thing,
    # even one that then fails (a successful one would also overwrite it with its own save)
    (out / ".last.pt.tmp.pt").write_bytes(b"half a checkpoint")
    (out / ".model.safetensors.tmp.safetensors").write_bytes(b"half")
    failed = cli("train", "--data", tmp_path / "nodata", "--output", out, "--resume")
    assert failed.exit_code == 2 and not [f.name for f in out.iterdir() if f.name.startswith(".")]
    r = cli(*args, "--resume", "--max-steps", state["step"] + 2)
    assert r.exit_code == 0, r.stderr
    assert not [f.name for f in out.iterdir() if f.name.startswith(".")]
    assert torch.load(out / "last.pt", weights_only=False)["step"] == state["step"] + 2
