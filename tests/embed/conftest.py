"""Embedding tests: one generated collection a session; the test model's packed export, one a run
(tests/shipped_artifacts.py)."""

import shutil

import pytest

from ..shipped_artifacts import shipped_packed_cache  # noqa: F401 - a session fixture, shared


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """200 generated 64 px scenes with captions (scenes_test.json), deterministic."""
    from madtp_deploy.data.scenes import generate

    root = tmp_path_factory.mktemp("scenes")
    generate(root, n_train=0, n_val=0, n_test=200, seed=0)
    return root


@pytest.fixture(scope="session")
def cache(shipped_packed_cache):
    """The export cache holding the test model's packed image and text graphs (made once a run)."""
    return shipped_packed_cache


@pytest.fixture()
def collection(scenes, tmp_path):
    """A folder of 40 scenes, two of them corrupt (not an image; a truncated PNG)."""
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((scenes / "images").glob("*.png"))[:40]:
        shutil.copy(p, images / p.name)
    (images / "test_00005.png").write_bytes(b"not an image at all")
    data = (images / "test_00011.png").read_bytes()
    (images / "test_00011.png").write_bytes(data[: len(data) // 3])
    return images
