"""The frozen run configuration that notebooks' parameters, the CLI and widgets all build."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from lab.errors import ConfigError

__all__ = ["Mode", "RunConfig"]


class Mode(str, enum.Enum):
    """How requests are executed (MLPerf scenario in brackets)."""

    SYNC = "sync"  # one at a time (SingleStream)
    BATCH = "batch"  # fixed-size batches (Offline)
    ASYNC = "async"  # many in flight on workers (Server)


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one measured run. Frozen, so it doubles as a grouping key.

    Attributes:
        model: workload name (``lab.zoo.load_workload``).
        runtime: runtime name (``lab.runtimes.create_runtime``).
        mode: sync, batch or async.
        requests: measured requests (samples are cycled).
        warmup: warm-up requests before them (excluded from metrics).
        batch_size: requests per batch (batch mode).
        workers: worker threads (async mode).
        max_inflight: cap on admitted requests (async mode; None: no cap).
        threads: runtime intra-op threads (None: the backend's default).
        partial: partial last batch policy, ``"dynamic"`` or ``"pad"``.
        profile: record spans.
    """

    model: str = "digits"
    runtime: str = "onnx"
    mode: Mode = Mode.SYNC
    requests: int = 200
    warmup: int = 10
    batch_size: int = 8
    workers: int = 2
    max_inflight: int | None = None
    threads: int | None = None
    partial: str = "dynamic"
    profile: bool = True

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", Mode(self.mode))
        except ValueError:
            raise ConfigError(f"mode must be one of {[m.value for m in Mode]}, got {self.mode!r}") from None
        _int("requests", self.requests, 1)
        _int("warmup", self.warmup, 0)
        _int("batch_size", self.batch_size, 1)
        _int("workers", self.workers, 1)
        if self.max_inflight is not None:
            _int("max_inflight", self.max_inflight, 1)
        if self.threads is not None:
            _int("threads", self.threads, 1)
        if self.partial not in ("dynamic", "pad"):
            raise ConfigError(f"partial must be 'dynamic' or 'pad', got {self.partial!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        d = asdict(self)
        d["mode"] = self.mode.value
        return d
