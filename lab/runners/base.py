"""What every runner shares: the result of a run and the per-request plumbing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.errors import ConfigError, InputError
from lab.metrics import Metrics, RequestRecord, compute_metrics
from lab.runtimes.base import Inputs, Runtime
from lab.trace import Trace

__all__ = ["RequestError", "RunResult", "resolve_stages", "sample_plan"]

Preprocess = Callable[[np.ndarray], Inputs]
Postprocess = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class RequestError:
    """A request that failed: its id and its own exception (other requests are unaffected)."""

    request_id: int
    error: BaseException

    def __str__(self) -> str:
        return f"request {self.request_id}: {type(self.error).__name__}: {self.error}"


@dataclass
class RunResult:
    """Outputs in request order, the trace, the metrics and the errors of one run.

    Attributes:
        mode: ``"sync"``, ``"batch"`` or ``"async"``.
        outputs: per request (request order), the model's outputs, or None where it failed.
        predictions: per request, the postprocessed prediction (when a postprocess was
            given and the request succeeded; -1 where it failed), else None.
        sample_indices: which sample each request used.
        warmup: how many of the first requests were warm-ups.
        errors: the failed requests, each with its own error.
        records: submission/start/end times per request.
        trace: every span and counter of the run.
        metrics: what was measured (see :mod:`lab.metrics`).
        config: the runner's settings, for findings.
    """

    mode: str
    outputs: list[list[np.ndarray] | None]
    predictions: np.ndarray | None
    sample_indices: np.ndarray
    warmup: int
    errors: list[RequestError]
    records: list[RequestRecord]
    trace: Trace
    metrics: Metrics
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def measured_predictions(self) -> np.ndarray | None:
        """Predictions of the measured (non-warm-up) requests."""
        return None if self.predictions is None else self.predictions[self.warmup:]

    def latencies_ns(self) -> np.ndarray:
        """Latencies of the measured requests (warm-ups, the cold request(s) and failures excluded)."""
        cold = self.metrics.extra.get("num_cold", 1)
        ids = sorted(self.records, key=lambda r: r.request_id)
        return np.array([r.latency_ns for r in ids[cold:] if r.ok and not r.warmup], dtype=np.int64)

    def accuracy(self, labels: np.ndarray | None) -> float | None:
        """Fraction of measured requests whose prediction equals its sample's label (failed = wrong)."""
        if labels is None or self.predictions is None:
            return None
        idx = self.sample_indices[self.warmup:]
        if idx.size == 0:
            return None
        return float(np.mean(self.predictions[self.warmup:] == np.asarray(labels)[idx]))

    def summary(self) -> str:
        """A few human lines: mode, requests, throughput, latency percentiles, cold request."""
        m = self.metrics
        lat = m.latency_ns
        lines = [
            f"{self.mode}: {m.requests} requests ({m.warmup} warm-up, {m.errors} errors), "
            f"{m.throughput_rps:,.1f} req/s in the steady window",
            f"  latency ms: p50 {lat['p50'] / 1e6:.3f}  p90 {lat['p90'] / 1e6:.3f}  p99 {lat['p99'] / 1e6:.3f}  "
            f"max {lat['max'] / 1e6:.3f}  (first/cold request {m.first_latency_ns / 1e6:.3f})",
        ]
        if m.stages_ns:
            stages = "  ".join(f"{k} {v['p50'] / 1e6:.3f}" for k, v in m.stages_ns.items())
            lines.append(f"  stage p50 ms: {stages}")
        return "\n".join(lines)


def resolve_stages(workload: Any, preprocess: Preprocess | None,
                   postprocess: Postprocess | None) -> tuple[Preprocess | None, Postprocess | None]:
    """Explicit functions win; else the workload's; else none (inputs go to the runtime as they are)."""
    if workload is not None:
        preprocess = preprocess or workload.preprocess
        postprocess = postprocess or workload.postprocess
    return preprocess, postprocess


def sample_plan(samples: Any, *, warmup: int, requests: int | None) -> tuple[int, np.ndarray]:
    """Check a run's sizes and return ``(num_samples, sample index per request)``.

    Warm-up requests use samples 0, 1, ...; measured request ``i`` uses sample ``i mod N``,
    so the measured requests see the samples in order whatever the warm-up.
    """
    try:
        n = len(samples)
    except TypeError:
        raise InputError(
            f"samples must be an array or sequence with a leading batch axis, got {type(samples).__name__}") from None
    if n == 0:
        raise InputError("samples is empty: expected at least one sample")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup}")
    if requests is None:
        requests = n
    if requests < 1:
        raise ConfigError(f"requests must be >= 1, got {requests}")
    idx = np.concatenate([np.arange(warmup) % n, np.arange(requests) % n]).astype(np.int64)
    return n, idx


def take(samples: Any, i: int) -> Any:
    """Sample ``i`` as a batch of one (keeps the leading axis)."""
    if isinstance(samples, np.ndarray):
        return samples[i:i + 1]
    item = samples[i]
    if isinstance(item, dict):
        return {k: np.asarray(v)[None] for k, v in item.items()}
    return np.asarray(item)[None]


def _stack_predictions(predictions: list[Any]) -> np.ndarray | None:
    """One scalar per request (classification): an int/float array with -1 for failures; else objects."""
    if all(p is None for p in predictions):
        return None  # nothing was predicted (e.g. a latency-only workload): no fake -1 array
    arrays = [None if p is None else np.asarray(p) for p in predictions]
    if all(a is None or a.size == 1 for a in arrays):
        values = [-1 if a is None else a.reshape(-1)[0].item() for a in arrays]
        return np.asarray(values)
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out


def build_result(mode: str, *, runtime: Runtime, outputs: list[list[np.ndarray] | None],
                 predictions: list[Any] | None, sample_indices: np.ndarray, warmup: int,
                 errors: list[RequestError], records: list[RequestRecord], trace: Trace,
                 config: dict[str, Any], extra: dict[str, Any] | None = None, num_cold: int = 1) -> RunResult:
    """Assemble a :class:`RunResult`, computing metrics and filling trace metadata."""
    preds = None
    if predictions is not None:
        preds = _stack_predictions(predictions)
    metrics = compute_metrics(records, trace.spans, num_cold=num_cold, extra={**(extra or {}), "num_cold": num_cold})
    from lab.analysis.littles import check_littles_law  # lazy: lab.analysis imports lab.metrics

    # every measured run: in flight = throughput x latency, or a logged warning (lab.analysis.littles)
    metrics.extra["littles_law"] = check_littles_law(records, metrics)
    trace.metadata.update({"mode": mode, "device": runtime.device, "runtime": runtime.name, **config})
    return RunResult(mode=mode, outputs=outputs, predictions=preds, sample_indices=sample_indices, warmup=warmup,
                     errors=errors, records=records, trace=trace, metrics=metrics, config=config)
