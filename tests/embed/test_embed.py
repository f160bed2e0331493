"""`embed`: rows against eager PyTorch, corrupt images, resume after SIGKILL, refusals, the Ray path."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import madtp_deploy
from madtp_deploy import families
from madtp_deploy.data.retrieval import load_image
from madtp_deploy.embed import embed_collection
from madtp_deploy.embed.store import read_index
from madtp_deploy.errors import DataError, UsageError

from ..shipped_artifacts import MODEL

QUIET = {"log": lambda *_: None}


def _errors(index: Path) -> list[dict]:
    p = index / "errors.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.is_file() else []


def test_rows_match_eager_and_corrupt_images_are_listed(collection, cache, tmp_path):
    out = tmp_path / "index"
    s = embed_collection(MODEL, collection, out, batch_size=8, shard_size=16, cache=cache, **QUIET)
    assert (s["images"], s["rows"], s["errors"], s["shards"]) == (40, 38, 2, 3)
    errs = _errors(out)
    assert [Path(e["path"]).name for e in errs] == ["test_00005.png", "test_00011.png"]
    assert all(e["error"].startswith("not a readable image") for e in errs)

    manifest, table = read_index(out)
    assert table.column_names == ["path", "embedding", "kept", "gflops"]
    good = [p for p in sorted(collection.glob("*.png")) if p.name not in ("test_00005.png", "test_00011.png")]
    assert table.column("path").to_pylist() == [str(p) for p in good]  # collection order, no gaps, no repeats

    model = madtp_deploy.load(MODEL, mode="packed")
    px = torch.stack([load_image(p, model.spec.image_size, "test") for p in good])
    with torch.no_grad():
        enc = model.encode_image(px)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    kept = np.stack(table.column("kept").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(emb, enc.embeds.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(kept, enc.kept.numpy())
    gflops = families.of(model).hook("image_gflops")(model.spec, enc.kept, True).double().numpy()
    np.testing.assert_allclose(table.column("gflops").to_numpy(), gflops, rtol=1e-12)
    assert manifest["mode"] == "packed" and manifest["count"] == 40


_CHILD = f"""
import sys
from pathlib import Path
from madtp_deploy.embed import embed_collection
embed_collection({MODEL!r}, Path(sys.argv[1]), Path(sys.argv[2]), batch_size=4, shard_size=4,
                 cache=Path(sys.argv[3]), log=lambda *_: None)
"""


def test_resume_after_sigkill_gives_the_same_index(scenes, cache, tmp_path):
    """A run killed (SIGKILL) after some shards continues where it stopped: the index equals an
    uninterrupted run's, row for row (no duplicate, no missing row)."""
    listing = tmp_path / "list.txt"
    names = [f"images/test_{i:05d}.png" for i in range(200)]
    listing.write_text("\n".join(str(scenes / n) for n in names) + "\n")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(listing), str(killed), str(cache)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(killed.glob("part-*.parquet"))) < 3:
            assert proc.poll() is None, "the embed run ended before it could be killed"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    done_at_kill = len(list(killed.glob("part-*.parquet")))
    assert 3 <= done_at_kill < 50, f"{done_at_kill} of 50 shards at the kill: not mid-run"

    s = embed_collection(MODEL, listing, killed, batch_size=4, shard_size=4, cache=cache, **QUIET)
    assert s["shards_resumed"] >= done_at_kill and s["embedded_now"] == 200 - 4 * s["shards_resumed"]
    fresh = tmp_path / "fresh"
    embed_collection(MODEL, listing, fresh, batch_size=4, shard_size=4, cache=cache, **QUIET)
    _, a = read_index(killed)
    _, b = read_index(fresh)
    assert a.num_rows == 200 and a.equals(b)
    assert not list(killed.glob(".*tmp*"))  # no temporaries left


def test_rerun_of_a_finished_index_embeds_nothing(collection, cache, tmp_path):
    out = tmp_path / "index"
    embed_collection(MODEL, collection, out, shard_size=16, cache=cache, **QUIET)
    s = embed_collection(MODEL, collection, out, shard_size=16, cache=cache, **QUIET)
    assert s["embedded_now"] == 0 and s["errors"] == 2 and len(_errors(out)) == 2


def test_another_job_in_the_same_folder_is_refused(collection, cache, tmp_path):
    out = tmp_path / "index"
    embed_collection(MODEL, collection, out, shard_size=16, cache=cache, **QUIET)
    with pytest.raises(UsageError, match="shard_size"):
        embed_collection(MODEL, collection, out, shard_size=8, cache=cache, **QUIET)
    (collection / "test_00000.png").unlink()
    with pytest.raises(UsageError, match="collection_sha256"):
        embed_collection(MODEL, collection, out, shard_size=16, cache=cache, **QUIET)


def test_missing_and_empty_collections_are_one_line_errors(collection, tmp_path, cache):
    with pytest.raises(DataError, match="no such folder or list file"):
        embed_collection(MODEL, tmp_path / "nope", tmp_path / "out", cache=cache, **QUIET)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        embed_collection(MODEL, tmp_path / "empty", tmp_path / "out", cache=cache, **QUIET)
    with pytest.raises(UsageError, match="--batch-size 65"):
        embed_collection(MODEL, collection, tmp_path / "out", batch_size=65, cache=cache, **QUIET)
    assert not (tmp_path / "out").exists()


def _ray_or_skip():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"ray is not installed ({exc}); pip install 'madtp-deploy[ray]'")


def test_ray_path_gives_the_rows_of_the_local_loop(scenes, cache, tmp_path):
    """200 images (one corrupt) through Ray Data on a local one-node cluster: the same shards, bit for bit."""
    _ray_or_skip()
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(scenes / f"images/test_{i:05d}.png") for i in range(200)) + "\nnot/there.png\n")
    local, viaray = tmp_path / "local", tmp_path / "ray"
    embed_collection(MODEL, listing, local, batch_size=16, shard_size=50, cache=cache, **QUIET)
    try:
        s = embed_collection(MODEL, listing, viaray, batch_size=16, shard_size=50, cache=cache, ray="local",
                             ray_actors=2, ray_cpus=0.5, **QUIET)
    except UsageError as exc:
        if "cannot join a Ray cluster" in str(exc):
            pytest.skip(f"ray cannot start here: {exc}")
        raise
    assert s["rows"] == 200 and s["errors"] == 1
    _, a = read_index(local)
    _, b = read_index(viaray)
    assert a.num_rows == 200 and a.equals(b)
    assert _errors(local) == _errors(viaray) and _errors(local)[0]["error"].startswith("unreadable")
