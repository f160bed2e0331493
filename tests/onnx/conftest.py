"""Export tests: the run's shared packed export cache (tests/shipped_artifacts.py) for the cache tests."""

from ..shipped_artifacts import shipped_packed_cache  # noqa: F401 - a session fixture, shared
