"""The lab's exception hierarchy; backend errors are translated into it at the boundary.

Our exception hierarchy::

    LabError
    ├── ConfigError (ValueError)        a bad parameter: batch size 0, unknown model, ...
    ├── RuntimeUnavailable              an optional backend is not installed
    ├── ModelLoadError                  a model file is missing or not a model
    ├── InputError (ValueError)         a request's shape, rank or dtype does not fit the model
    ├── DeviceError                     the backend failed while executing a request
    ├── RequestCancelled                the request was cancelled before it completed
    ├── RequestFailed                   a queued request failed; carries its context and cause
    ├── RequestTimeout (TimeoutError)   waiting for a request's result timed out
    ├── QueueFull                       a bounded queue refused a request
    ├── RunnerClosed                    the runner (or runtime) was used after close()
    └── TraceFormatError (ValueError)   a trace or findings file is not in a format we read

Every error is also an instance of :class:`LabError`, so ``except lab.LabError`` catches
anything the lab raises on purpose. Messages name what was expected and what came.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeviceError",
    "InputError",
    "LabError",
    "ModelLoadError",
    "QueueFull",
    "RequestCancelled",
    "RequestFailed",
    "RequestTimeout",
    "RunnerClosed",
    "RuntimeUnavailable",
    "TraceFormatError",
]


class LabError(Exception):
    """Base class of every error the lab raises on purpose."""


class ConfigError(LabError, ValueError):
    """A parameter is out of range or names something that does not exist."""


class RuntimeUnavailable(LabError):
    """An optional backend (ONNX Runtime, PyTorch, CUDA) is not installed or not present."""


class ModelLoadError(LabError):
    """A model file is missing, unreadable, or not in the format the runtime expects."""


class InputError(LabError, ValueError):
    """A request's inputs do not match the model: wrong name, rank, shape or dtype."""


class DeviceError(LabError):
    """The backend failed while executing a request (the runtime stays usable)."""


class RequestCancelled(LabError):
    """The request was cancelled before it completed; its slot has been freed."""


class RequestFailed(LabError):
    """A request received through a completion queue failed; ``context`` says which, ``__cause__`` why."""

    def __init__(self, context: object, error: BaseException) -> None:
        super().__init__(f"request with context {context!r} failed: {type(error).__name__}: {error}")
        self.context = context
        self.error = error


class RequestTimeout(LabError, TimeoutError):
    """Waiting for a request's result took longer than the given timeout."""


class QueueFull(LabError):
    """A bounded queue was full and the caller asked not to block."""


class RunnerClosed(LabError):
    """A runner or runtime was used after ``close()``."""


class TraceFormatError(LabError, ValueError):
    """A trace or findings file is not in a format (or version) the lab reads."""
