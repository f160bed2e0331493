"""Session fixtures shared across test folders (imported by their conftest.py files) and across the
pytest-xdist workers of one run (`make test` runs two): each artifact is made once, under a file lock,
in a folder every worker sees."""

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

import madtp_deploy
from madtp_deploy.onnx.export import export_model

# The trained model the export, serving and embedding tests run: the 4-layer one shipped before issue 21 (quick
# to export; those tests check the paths, not the model). tests/test_shipped.py checks the shipped one.
MODEL = "shipped-tiny"


def shared_dir(tmp_path_factory, name: str) -> Path:
    """A folder of this run shared by every xdist worker (their base temps have one parent)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    d = root / name
    d.mkdir(exist_ok=True)
    return d


@contextmanager
def only_one(d: Path):
    """One worker at a time makes what goes into `d`; the others wait and then find it there."""
    from filelock import FileLock

    with FileLock(str(d) + ".lock"):
        yield


@pytest.fixture(scope="session")
def shipped_onnx(tmp_path_factory):
    """The test model (invariant mode) and its dynamic image and text graphs exactly as the
    exporter writes them: before constant folding, not validated (tests/onnx validates)."""
    m = madtp_deploy.load(MODEL, mode="invariant")
    out = shared_dir(tmp_path_factory, "shipped-onnx")
    with only_one(out):
        if not (out / "shipped.text.json").is_file():  # the sidecars are written last
            export_model(m, out, "shipped", source=MODEL, validate=False, fold=False, log=lambda *_: None)
    return m, out


@pytest.fixture(scope="session")
def shipped_packed_cache(tmp_path_factory):
    """An export cache (onnx.export.cached_export) holding the test model's packed image and text
    graphs, validated: what `embed`, `serve-repo` and `bench` export, made once for the run.
    MADTP_EXPORT_TEST_CACHE: a cache kept between runs instead (the export takes these tests' time)."""
    from madtp_deploy.embed.job import resolve_graph

    keep = os.environ.get("MADTP_EXPORT_TEST_CACHE")
    path = Path(keep) if keep else shared_dir(tmp_path_factory, "export-cache")
    path.mkdir(parents=True, exist_ok=True)
    with only_one(path):
        resolve_graph(MODEL, cache=path, log=lambda *_: None)
    return path
