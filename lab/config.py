"""The frozen run configuration that notebooks' parameters, the CLI and widgets all build."""

from __future__ import annotations

import enum
import os
from dataclasses import asdict, dataclass
from typing import Any

from lab.errors import ConfigError

__all__ = ["LOADS", "Mode", "RunConfig"]

#: Load generator scenarios (MLPerf LoadGen: SingleStream, closed loop, Server, Offline).
LOADS = ("single", "closed", "poisson", "offline")


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
        threads: runtime intra-op threads (None: the backend's default for one request at a time;
            with several requests in flight, cores // concurrent requests).
        partial: partial last batch policy, ``"dynamic"`` or ``"pad"``.
        profile: record spans.
        load: a load generator scenario (``single``, ``closed``, ``poisson``, ``offline``) or None
            for a plain run in ``mode``. With a load, batch mode means dynamic batching.
        rate: arrivals per second (poisson).
        concurrency: outstanding requests (closed loop).
        parallel: 1 or 2 to drive an RBLN-style ``AsyncRuntime`` (double buffering with 2)
            instead of an ``AsyncRunner`` with ``workers``; None: workers.
        max_delay_ms: dynamic batching's longest wait for a batch to fill.
        preset: simulated NPU preset (``simnpu`` runtime only).
        pe_mode: ``single`` or ``fused`` processing elements (``simnpu`` only; None: the preset's default).
        devices: simulated devices (``simnpu`` only).
        seed: seeds Poisson arrivals and the simulator's fault injection.
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
    load: str | None = None
    rate: float | None = None
    concurrency: int = 1
    parallel: int | None = None
    max_delay_ms: float = 2.0
    preset: str | None = None
    pe_mode: str | None = None
    devices: int = 1
    seed: int = 0

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
        if self.load is not None and self.load not in LOADS:
            raise ConfigError(f"load must be one of {list(LOADS)} or None, got {self.load!r}")
        if self.load == "poisson" and not (isinstance(self.rate, (int, float)) and self.rate > 0):
            raise ConfigError(f"a poisson load needs rate > 0 requests/s, got {self.rate!r}")
        _int("concurrency", self.concurrency, 1)
        if self.parallel is not None and self.parallel not in (1, 2):
            raise ConfigError(f"parallel must be 1 or 2 (or None), got {self.parallel!r}")
        if not (isinstance(self.max_delay_ms, (int, float)) and self.max_delay_ms >= 0):
            raise ConfigError(f"max_delay_ms must be >= 0, got {self.max_delay_ms!r}")
        if self.pe_mode not in (None, "single", "fused"):
            raise ConfigError(f"pe_mode must be 'single', 'fused' or None (the preset's default), got {self.pe_mode!r}")
        _int("devices", self.devices, 1)

    def runtime_options(self) -> dict[str, Any]:
        """Keyword options for ``create_runtime(self.runtime, ...)`` that this config sets."""
        if self.runtime == "simnpu":
            opts: dict[str, Any] = {"pe_mode": self.pe_mode, "devices": self.devices, "seed": self.seed}
            if self.preset is not None:
                opts["preset"] = self.preset
            return opts
        if self.threads is not None:
            return {"threads": self.threads}
        concurrent = self.parallel or (self.workers if self.mode is Mode.ASYNC else 1)
        if concurrent > 1:
            # several requests at once: split the cores between them instead of oversubscribing
            # (benchmark_app does the same with streams x threads = cores)
            return {"threads": max(1, (os.cpu_count() or 1) // concurrent)}
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        d = asdict(self)
        d["mode"] = self.mode.value
        return d
