"""Bad export requests: one line, exit code 2, nothing left at the output path."""

import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "madtp_deploy.cli", "export"]


def run(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, expect", [
    (["--model", "clip-vit-nope"], "not a registered spec"),
    (["--model", "clip-tiny-test", "--opset", "9"], "--opset 9"),
])
def test_bad_requests(tmp_path, args, expect):
    out = tmp_path / "out"
    r = run(*args, "--output", str(out))
    assert r.returncode == 2 and expect in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1
    assert not out.exists() or not list(out.iterdir())


def test_unreadable_checkpoint(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"nope")
    r = run("--model", str(tmp_path / "c.pt"), "--output", str(tmp_path / "out"))
    assert r.returncode == 2 and "c.pt" in r.stderr
    assert not (tmp_path / "out").exists(), "a failed export leaves no output folder"


def test_unwritable_output(tmp_path):
    """A folder under a regular file cannot be created, for root too (permissions would not stop root)."""
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "ro"
    r = run("--model", "clip-tiny-test", "--output", str(out))
    assert r.returncode == 2 and "not writable" in r.stderr and "--output" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    r = run("--model", "clip-tiny-test", "--output", str(tmp_path / "file"))
    assert r.returncode == 2 and "not writable" in r.stderr
