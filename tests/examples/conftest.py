from ..shipped_artifacts import shipped_onnx  # noqa: F401 - a session fixture, shared
