"""TensorRT path (lazy: importing this package imports neither TensorRT nor polygraphy).

check.py: static conformance report (no TensorRT needed); build.py: ONNX -> cached engine through
polygraphy; session.py: the engine behind the runtime Session interface. NOT RUN HERE: TensorRT
cannot be installed on the development machines.
"""

_EXPORTS = {"build_engine": "build", "profile_shapes": "build", "TrtSession": "session"}


def __getattr__(name):
    if name in _EXPORTS:
        from importlib import import_module
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
