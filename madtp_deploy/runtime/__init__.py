"""One session interface over eager torch and onnxruntime (CPU, CUDA); TensorRT in madtp_deploy.trt."""

from .sessions import BACKENDS, Session, available_backends, open_session

__all__ = ["BACKENDS", "Session", "available_backends", "open_session"]
