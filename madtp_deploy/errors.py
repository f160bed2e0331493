"""One error hierarchy. Every message names the file (or input), the field, and the fix.

The CLI turns any ``MadtpError`` into a single line on stderr and its ``exit_code`` (2: bad input;
1: a wrong artifact), with the traceback only under ``--debug`` (or MADTP_DEBUG=1). Raise them
``from exc`` where another exception caused them, so that ``--debug`` shows the cause. Anything
else that escapes is a bug and keeps its traceback.
"""


class MadtpError(Exception):
    """Base class: a problem with the user's input, not a bug in madtp-deploy."""

    exit_code = 2


class SpecError(MadtpError):
    """Unknown model spec or inconsistent geometry."""


class CheckpointError(MadtpError):
    """A checkpoint that cannot be read, or whose keys/shapes do not fit the model."""


class DataError(MadtpError):
    """A dataset, annotation file, image or caption that cannot be used."""


class ExportError(MadtpError):
    """ONNX export failed or cannot write its artifacts."""


class ValidationError(MadtpError):
    """An exported artifact that cannot be compared with eager PyTorch (missing, unreadable, mismatched)."""


class WrongModelError(ValidationError):
    """An exported artifact computes another model: output shapes, or a keep decision, differ from eager
    PyTorch. Never written (export) and exit code 1 (validate)."""

    exit_code = 1


class RuntimeBackendError(MadtpError):
    """A runtime backend that is unknown or unavailable on this machine."""


class OutputError(MadtpError):
    """An output path (--json, --plot, --output, ...) that cannot be written."""


class InputError(MadtpError, ValueError):
    """A tensor passed to the public API with the wrong dtype, shape or values."""


class UsageError(MadtpError):
    """A command-line value that cannot be parsed (batch-size list, backend name, ...)."""


class CalibrationError(MadtpError):
    """A calibration set or a graph to quantize that cannot be used (madtp_deploy.quant)."""

