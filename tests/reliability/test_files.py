"""Output checks, temporary and staging folders (madtp_deploy/files.py), and the bench's leftovers."""

import os
import time

import pytest

from madtp_deploy.errors import OutputError
from madtp_deploy.files import (atomic, check_output_dir, check_output_file, clean_stale_staging, output_dir,
                                temp_dir)


def test_output_checks_create_nothing(tmp_path):
    check_output_file(tmp_path / "a" / "b" / "r.json", "--json")
    check_output_dir(tmp_path / "c" / "d", "--output")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "probing leaves no folder or probe file"


@pytest.mark.parametrize("check, rel", [(check_output_file, "f/r.json"), (check_output_file, "f/x/r.json"),
                                        (check_output_dir, "f"), (check_output_dir, "f/sub")])
def test_paths_at_or_under_a_regular_file_fail_as_root_too(check, rel, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="--opt .*not writable.*fix:"):
        check(tmp_path / rel, "--opt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_atomic_creates_the_folder_it_writes_into(tmp_path):
    with atomic(tmp_path / "new" / "r.json") as tmp:
        tmp.write_text("{}")
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["r.json"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_temp_dir_is_removed_on_every_exit(exc, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(exc):
        with temp_dir("t-") as d:
            (d / "x.png").write_bytes(b"x")
            raise exc()
    with temp_dir("t-") as d:
        pass
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_output_dir_removes_only_the_empty_folder_it_created(exc, tmp_path):
    with pytest.raises(exc):
        with output_dir(tmp_path / "new" / "run", "--output") as d:
            d.mkdir(parents=True)
            raise exc()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(exc):
        with output_dir(tmp_path / "kept", "--output"):
            raise exc()
    assert (tmp_path / "kept").is_dir(), "a folder the user had stays"
    with pytest.raises(exc):
        with output_dir(tmp_path / "busy", "--output") as d:
            d.mkdir()
            (d / "epoch0.pt").write_bytes(b"x")
            raise exc()
    assert (tmp_path / "busy" / "epoch0.pt").exists(), "work already written stays"


def test_clean_stale_staging_removes_only_old_folders_of_the_prefix(tmp_path):
    old, young, other = tmp_path / ".export-a", tmp_path / ".export-b", tmp_path / ".other-c"
    for d in (old, young, other):
        d.mkdir()
        (d / "x.onnx").write_bytes(b"x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    assert clean_stale_staging(tmp_path, ".export-", older_than_s=3600) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".export-b", ".other-c"]
    assert clean_stale_staging(tmp_path / "missing") == []


def test_bench_images_leave_no_temp_files(tmp_path, monkeypatch, tiny_model):
    import tempfile

    from madtp_deploy.benchmark.runner import bench_images

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    x = bench_images(tiny_model, None, 4)
    assert x.shape == (4, 3, 32, 32)
    assert not list(tmp_path.iterdir()), "the generated PNGs are removed once read"
