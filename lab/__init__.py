"""Inference Lab: see and measure how a model is executed (runtimes, runners, profiler, traces).

``import lab`` stays light: it never imports onnxruntime, torch, pandas or plotly (backends
and plotting are imported lazily, where they are used; ``lab.plots`` is imported by the caller).
"""

from __future__ import annotations

from lab.api import make_runner, run
from lab.clock import FakeClock, RealTimeClock, VirtualClock, host_clock
from lab.config import Mode, RunConfig
from lab.env import collect_environment
from lab.errors import (
    ConfigError,
    DeviceError,
    InputError,
    LabError,
    ModelLoadError,
    QueueFull,
    RequestCancelled,
    RequestTimeout,
    RunnerClosed,
    RuntimeUnavailable,
    TraceFormatError,
)
from lab.findings import load_findings, save_findings
from lab.metrics import Metrics, compute_metrics
from lab.profiler import Profiler
from lab.runners import AsyncRunner, BatchRunner, RequestHandle, RunResult, SyncRunner
from lab.runners.async_api import AsyncRuntime, create_async
from lab.runtimes import Runtime, TensorSpec, create_runtime
from lab.timing import Measurement, Timer, measure, measure_naive
from lab.trace import Counter, Span, Trace
from lab.zoo import Workload, load_workload

__version__ = "0.1.0"

__all__ = [
    "AsyncRunner",
    "AsyncRuntime",
    "BatchRunner",
    "ConfigError",
    "Counter",
    "DeviceError",
    "FakeClock",
    "InputError",
    "LabError",
    "Measurement",
    "Metrics",
    "Mode",
    "ModelLoadError",
    "Profiler",
    "QueueFull",
    "RequestCancelled",
    "RequestHandle",
    "RequestTimeout",
    "RunConfig",
    "RealTimeClock",
    "RunResult",
    "Runtime",
    "RunnerClosed",
    "RuntimeUnavailable",
    "Span",
    "SyncRunner",
    "TensorSpec",
    "Timer",
    "Trace",
    "TraceFormatError",
    "VirtualClock",
    "Workload",
    "collect_environment",
    "compute_metrics",
    "create_async",
    "create_runtime",
    "host_clock",
    "load_findings",
    "load_workload",
    "make_runner",
    "measure",
    "measure_naive",
    "run",
    "save_findings",
]
