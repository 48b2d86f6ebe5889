"""Little's law on a measured run: requests in flight = throughput x latency, or the run is suspect.

Three of a run's figures are measured independently: the mean number of requests in the system
``L`` (time-average over the steady window of the requests between submission and completion),
the steady-window throughput ``X`` and the mean latency ``W``. In any stable system observed long
enough, ``L = X W`` (Little, 1961). When they disagree by more than :data:`TOLERANCE` the run
was not in a steady state over its window (an overloaded open loop whose queue keeps growing, a
ramp-up longer than the window, too few requests), or the latency is not measured from where
the requests entered (time lost before submission is hidden): the figures should not be trusted
as they stand. :func:`check_littles_law` is run on every measured run (``RunResult.metrics.extra
["littles_law"]``) and logs a warning on the ``lab`` logger when the check fails.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lab.metrics import Metrics, RequestRecord

__all__ = ["TOLERANCE", "check_littles_law", "logger"]

#: Relative disagreement between ``L`` and ``X W`` above which the check fails.
TOLERANCE = 0.10
#: Where the warning goes (a logging warning, so that it shows in notebooks without failing test suites).
logger = logging.getLogger("lab")


def check_littles_law(records: Sequence[RequestRecord], metrics: Metrics, *, tolerance: float = TOLERANCE,
                      warn: bool = True) -> dict[str, Any]:
    """Compare the mean requests in flight with throughput x mean latency over the steady window.

    Args:
        records: the run's per-request records.
        metrics: its metrics (window, throughput, mean latency; ``extra["num_cold"]``).
        tolerance: largest relative error ``|X W - L| / L`` that passes.
        warn: log a warning when the check fails.

    Returns:
        ``{"ok", "inflight_mean", "throughput_x_latency", "relative_error", "tolerance", "window_ms",
        "warning"}``; ``ok`` is None (and ``warning`` says why) when the run has no usable window.
    """
    out: dict[str, Any] = {"ok": None, "inflight_mean": math.nan, "throughput_x_latency": math.nan,
                           "relative_error": math.nan, "tolerance": tolerance, "window_ms": math.nan, "warning": None}
    num_cold = int(metrics.extra.get("num_cold", 1))
    by_id = sorted(records, key=lambda r: r.request_id)
    measured = [r for r in by_id[num_cold:] if r.ok and not r.warmup]
    w0, w1 = metrics.window_ns
    x = metrics.throughput_rps
    w = metrics.latency_ns.get("mean", math.nan)
    if not measured or w1 <= w0 or not math.isfinite(x) or not math.isfinite(w):
        out["warning"] = "not checked: the run has no steady window (too few measured requests)"
        return out
    sub = np.fromiter((r.submit_ns for r in measured), dtype=np.int64, count=len(measured))
    end = np.fromiter((r.end_ns for r in measured), dtype=np.int64, count=len(measured))
    inside = np.clip(end, w0, w1) - np.clip(sub, w0, w1)
    L = float(inside.sum()) / (w1 - w0)
    xw = x * w / 1e9
    err = (xw - L) / L if L > 0 else math.inf
    ok = bool(abs(err) <= tolerance)
    out.update({"ok": ok, "inflight_mean": L, "throughput_x_latency": xw, "relative_error": err,
                "window_ms": (w1 - w0) / 1e6})
    if not ok:
        msg = (f"Little's law check failed: {L:.2f} requests in flight on average, but throughput x mean latency = "
               f"{x:.1f}/s x {w / 1e6:.3f} ms = {xw:.2f} ({err:+.0%}, tolerance {tolerance:.0%}): the run was not in "
               "a steady state over its window (growing queue, long ramp-up, too few requests) or latency is not "
               "measured from where requests entered; do not trust its throughput and latency as they stand")
        out["warning"] = msg
        if warn:
            logger.warning(msg)
    return out
