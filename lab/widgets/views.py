"""What the explorer shows, computed from runs without any widget: labels, tables, figures.

Compute first, render second: these functions take finished runs and return plain values,
``pandas`` frames or ``plotly`` figures; :class:`~lab.widgets.Explorer` only puts them on
screen. The predicted-vs-measured table comes from ``lab.analysis`` when that package exists
and offers a prediction function (see :func:`find_predictor`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.config import Mode, RunConfig
from lab.trace import Trace

__all__ = [
    "MIN_FIGURE_HEIGHT_PX",
    "PREDICTOR_NAMES",
    "ExplorerRun",
    "comparison_figure",
    "describe_config",
    "find_predictor",
    "metrics_table",
    "predicted_vs_measured",
    "timeline_window",
]

logger = logging.getLogger(__name__)

#: Functions of ``lab.analysis`` the explorer asks for a prediction, in this order. Each is
#: called as ``fn(result, config=config)`` (or ``fn(result)``) with a finished
#: :class:`~lab.runners.RunResult` and returns a table: a ``pandas.DataFrame``, a list of
#: row dicts, or a mapping ``metric -> {"predicted": ..., "measured": ...}``.
PREDICTOR_NAMES = ("predict_vs_measured", "predicted_vs_measured", "compare_prediction")

#: The comparison figure is at least this tall, so that the stage legend fits.
MIN_FIGURE_HEIGHT_PX = 400


@dataclass(frozen=True)
class ExplorerRun:
    """One finished run of the explorer: its number, config and result."""

    number: int
    config: RunConfig
    result: Any

    @property
    def label(self) -> str:
        """``run 3: async, workers=4, simnpu/teaching``."""
        return f"run {self.number}: {describe_config(self.config)}"


def describe_config(config: RunConfig) -> str:
    """A short description of what a config runs (only the knobs its mode uses)."""
    parts = [config.mode.value]
    concurrent = config.mode is Mode.ASYNC or (config.load is not None and config.mode is not Mode.BATCH)
    if config.mode is Mode.BATCH:
        parts.append(f"batch={config.batch_size}")
    if concurrent:
        if config.parallel is not None:
            parts.append(f"parallel={config.parallel}")
        else:
            parts.append(f"workers={config.workers}")
            if config.max_inflight is not None:
                parts.append(f"max_inflight={config.max_inflight}")
    if config.load is not None:
        load = config.load
        if config.load == "poisson":
            load += f"@{config.rate:g}/s"
        elif config.load == "closed":
            load += f"x{config.concurrency}"
        parts.append(f"load={load}")
    device = config.runtime
    if config.runtime == "simnpu":
        device += f"/{config.preset or 'default'}"
        if config.pe_mode:
            device += f"/{config.pe_mode}"
    parts.append(f"{config.model} on {device}")
    return ", ".join(parts)


def timeline_window(result: Any, num_requests: int) -> Trace:
    """The spans of the first ``num_requests`` measured requests, with time zero at the first.

    Warm-up requests are skipped (they come first); spans without a request (id -1) and
    counters inside the window are kept.
    """
    trace: Trace = result.trace
    measured = sorted(r.request_id for r in result.records if not r.warmup)
    if not measured:
        return Trace(metadata=dict(trace.metadata))
    lo = measured[0]
    hi = measured[min(num_requests, len(measured)) - 1]
    spans = [s for s in trace.spans if lo <= s.request_id <= hi]
    if not spans:
        return Trace(metadata=dict(trace.metadata))
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    spans += [s for s in trace.spans if s.request_id < 0 and s.end_ns > start and s.start_ns < end]
    counters = [c for c in trace.counters if start <= c.t_ns <= end]
    return Trace(spans=spans, counters=counters, metadata=dict(trace.metadata))


def comparison_figure(runs: Sequence[ExplorerRun], *, timeline_requests: int = 16) -> Any:
    """The last one or two runs' timelines, one above the other on the same time axis.

    The newest run is on top. Each row is drawn from its window's own start, so the two
    runs line up at zero and their lengths compare directly.
    """
    from lab.plots import plot_timelines

    shown = list(runs)[-2:][::-1]
    traces = [timeline_window(r.result, timeline_requests) for r in shown]
    titles = [f"{r.label} (first {timeline_requests} measured requests)" for r in shown]
    fig = plot_timelines(traces, titles=titles, shared_x=True)
    if len(shown) == 1:
        title = f"Timeline of run {shown[0].number}"
    else:
        title = f"Timeline of run {shown[0].number} (top) vs run {shown[1].number}, on the same time axis"
    # room for the stage legend (up to 8 stages) even when there are few lanes
    fig.update_layout(title=dict(text=title), margin=dict(t=90, r=20),
                      height=max(int(fig.layout.height or 0), MIN_FIGURE_HEIGHT_PX))
    return fig


_METRIC_ROWS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("throughput (req/s)", "higher", lambda m: m["throughput_rps"]),
    ("latency p50 (ms)", "lower", lambda m: m["latency_ms"].get("p50")),
    ("latency p90 (ms)", "lower", lambda m: m["latency_ms"].get("p90")),
    ("latency p99 (ms)", "lower", lambda m: m["latency_ms"].get("p99")),
    ("first (cold) request (ms)", "lower", lambda m: m["first_latency_ms"]),
    ("device busy", "higher", lambda m: m["utilization_by_kind"].get("device")),
    ("host busy", "", lambda m: m["utilization_by_kind"].get("host")),
    ("device/other overlap", "", lambda m: m["overlap"]),
    ("peak in flight", "", lambda m: m["peak_inflight"]),
    ("requests", "", lambda m: m["requests"]),
    ("errors", "lower", lambda m: m["errors"]),
    ("accuracy", "higher", lambda m: m.get("accuracy")),
)


def metrics_table(runs: Sequence[ExplorerRun]) -> Any:
    """The last one or two runs' key metrics side by side (newest first), with their ratio.

    Returns:
        A ``pandas.DataFrame`` indexed by metric, one column per run label, and ``"new / old"``
        when there are two runs.
    """
    import math

    import pandas as pd

    shown = list(runs)[-2:][::-1]
    columns: dict[str, list[Any]] = {}
    for run in shown:
        m = run.result.metrics.to_dict()
        values = []
        for _, _, get in _METRIC_ROWS:
            try:
                value = get(m)
            except (KeyError, TypeError):
                value = None
            values.append(None if isinstance(value, float) and math.isnan(value) else value)
        columns[f"run {run.number}"] = values
    frame = pd.DataFrame(columns, index=pd.Index([name for name, _, _ in _METRIC_ROWS], name="metric"))
    if len(shown) == 2:
        new, old = frame.columns
        ratio = []
        for a, b in zip(frame[new], frame[old], strict=True):
            ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b not in (0, None)
            ratio.append(a / b if ok else None)
        frame["new / old"] = ratio
    return frame


def _bench_prediction_table(raw: Mapping[str, Any], result: Any) -> Any:
    """``lab.analysis.cli.bench_prediction``'s dict as a predicted / measured / error table."""
    import pandas as pd

    detail = raw.get("prediction") or {}
    if raw.get("predicted_rps") is None:
        note = detail.get("note", "no prediction for this run")
        return pd.DataFrame({"predicted": [None], "measured": [None], "error": [None], "how": [note]},
                            index=pd.Index(["throughput (req/s)"], name="metric"))
    m = result.metrics
    measured_rps = m.throughput_rps
    measured_ms = m.latency_ns.get("mean", float("nan")) / 1e6
    predicted_ms = detail.get("predicted_latency_ms")
    how = detail.get("method", "")
    rows = {
        "throughput (req/s)": (raw["predicted_rps"], measured_rps, raw.get("prediction_error"), how),
        "mean latency (ms)": (predicted_ms, measured_ms,
                              (predicted_ms - measured_ms) / measured_ms if predicted_ms and measured_ms else None,
                              how),
        "bottleneck bound (req/s)": (raw.get("bound_rps"), measured_rps, None,
                                     "1 / the slowest stage's demand: no configuration can beat it"),
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["predicted", "measured", "error", "how"]).rename_axis(
        "metric")


def find_predictor() -> Callable[..., Any] | None:
    """The prediction function ``lab.analysis`` offers, or None when there is none.

    Looked up in this order: a function of ``lab.analysis`` named in :data:`PREDICTOR_NAMES`;
    else ``lab.analysis.cli.bench_prediction(result, config)`` (the ``lab bench`` prediction:
    a virtual-time twin replaying the run's own stage times, and the bottleneck bound).
    """
    try:
        module = importlib.import_module("lab.analysis")
    except ImportError:
        return None
    for name in PREDICTOR_NAMES:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    try:
        cli = importlib.import_module("lab.analysis.cli")
    except ImportError:
        return None
    fn = getattr(cli, "bench_prediction", None)
    return fn if callable(fn) else None


def predicted_vs_measured(run: ExplorerRun, predictor: Callable[..., Any] | None = None) -> Any:
    """``lab.analysis``'s prediction for a run next to what was measured, as a frame; None without one.

    The predictor is called as ``fn(result, config)`` when it takes a ``config`` (or two
    positional arguments), else ``fn(result)``. It may return a ``pandas.DataFrame``, a list of
    row dicts, a mapping ``metric -> {column: value}``, or ``bench_prediction``'s dict
    (``predicted_rps``, ``bound_rps``, ``prediction_error``, ``prediction``). A predictor that
    fails is logged and treated as absent: the explorer shows the measured numbers regardless.
    """
    import pandas as pd

    fn = predictor if predictor is not None else find_predictor()
    if fn is None:
        return None
    try:
        params = list(inspect.signature(fn).parameters.values())
        takes_config = (any(p.name == "config" for p in params) or any(p.kind is p.VAR_KEYWORD for p in params)
                        or len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 2)
    except (TypeError, ValueError):
        takes_config = False
    try:
        table = fn(run.result, run.config) if takes_config else fn(run.result)
        if table is None:
            return None
        if isinstance(table, pd.DataFrame):
            return table
        if isinstance(table, Mapping) and "predicted_rps" in table:
            return _bench_prediction_table(table, run.result)
        if isinstance(table, Mapping):
            return pd.DataFrame.from_dict(dict(table), orient="index")
        return pd.DataFrame(list(table))
    except Exception:  # noqa: BLE001 - the prediction is an extra; the measurement stands alone
        logger.exception("lab.analysis prediction failed for %s", run.label)
        return None
