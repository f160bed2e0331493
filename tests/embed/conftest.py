"""Embedding tests: one generated collection and one packed export of the shipped model per session.

MADTP_EMBED_TEST_CACHE: an export cache kept between runs (the export takes most of these tests' time)."""

import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """200 generated 64 px scenes with captions (scenes_test.json), deterministic."""
    from madtp_deploy.data.scenes import generate

    root = tmp_path_factory.mktemp("scenes")
    generate(root, n_train=0, n_val=0, n_test=200, seed=0)
    return root


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """The export cache holding the shipped model's packed image and text graphs (exported once)."""
    from madtp_deploy.embed.job import resolve_graph

    path = Path(os.environ.get("MADTP_EMBED_TEST_CACHE") or tmp_path_factory.mktemp("embed-cache"))
    resolve_graph("shipped", cache=path, log=lambda *_: None)
    return path


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
