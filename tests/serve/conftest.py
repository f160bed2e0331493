"""Serving tests. Those that need the serving venv (`make serve-env`: tritonserver, tritonclient) skip
with a reason when it is absent, unless MADTP_REQUIRE_SERVE is set (CI): then they fail."""

import os

import pytest

from madtp_deploy.serve.server import ServeError, default_venv, find_triton

from ..shipped_artifacts import MODEL, shipped_packed_cache  # noqa: F401 - a session fixture, shared


@pytest.fixture(scope="session")
def serve_venv():
    venv = default_venv()
    try:
        find_triton(venv)
    except ServeError as exc:
        if os.environ.get("MADTP_REQUIRE_SERVE"):
            pytest.fail(f"MADTP_REQUIRE_SERVE is set but the serving venv is unusable: {exc}")
        pytest.skip(f"no serving venv ({exc}); set MADTP_REQUIRE_SERVE=1 to make this a failure")
    return venv


@pytest.fixture(scope="session")
def shipped_repo(tmp_path_factory, shipped_packed_cache):  # noqa: F811
    """The test model's repository (packed image and text graphs), exported once for the session."""
    from madtp_deploy.serve.repository import write_repository

    root = tmp_path_factory.mktemp("serve")
    write_repository(MODEL, root / "repo", cache=shipped_packed_cache, log=lambda *_: None)
    return root / "repo"
