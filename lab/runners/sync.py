"""The synchronous runner: one request at a time, each waiting for the previous (MLPerf SingleStream)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lab.clock import Clock, host_clock
from lab.metrics import RequestRecord
from lab.profiler import Profiler
from lab.runners.base import (
    Postprocess,
    Preprocess,
    RequestError,
    RunResult,
    build_result,
    resolve_stages,
    sample_plan,
    take,
)
from lab.runtimes.base import Inputs, Runtime

__all__ = ["SyncRunner"]

LANE = "host/0"


class SyncRunner:
    """Runs requests one after another on the calling thread: pre, upload, compute, download, post.

    Args:
        runtime: any :class:`~lab.runtimes.base.Runtime`.
        workload: optional :class:`~lab.zoo.Workload` supplying pre/postprocessing.
        preprocess: raw samples ``(1, ...)`` -> model inputs (overrides the workload's).
        postprocess: model outputs -> prediction (overrides the workload's).
        profile: record spans (on by default; off costs nothing).
        clock: integer-ns clock for request times (inject a FakeClock in tests).
    """

    mode = "sync"

    def __init__(self, runtime: Runtime, *, workload: Any = None, preprocess: Preprocess | None = None,
                 postprocess: Postprocess | None = None, profile: bool = True, clock: Clock = host_clock) -> None:
        self.runtime = runtime
        self.preprocess, self.postprocess = resolve_stages(workload, preprocess, postprocess)
        self.profile = profile
        self.clock = clock

    def config(self) -> dict[str, Any]:
        """The runner's settings, for findings."""
        return {"mode": self.mode, "workers": 1, "profile": self.profile}

    def run(self, x: Inputs, *, request_id: int = -1, profiler: Profiler | None = None) -> list[np.ndarray]:
        """Run one request (``x`` has a leading batch axis) and return the model outputs."""
        pre = self.preprocess
        if pre is not None:
            with (profiler or _OFF).record("pre", lane=LANE, request_id=request_id):
                x = pre(x)
        return self.runtime.infer(x, request_id=request_id, slot=0, profiler=profiler)

    def run_all(self, samples: Any, *, warmup: int = 0, requests: int | None = None) -> RunResult:
        """Run ``warmup`` + ``requests`` requests over ``samples`` (cycled) and measure them.

        A failed request is recorded with its own error; the others go on.
        """
        n, plan = sample_plan(samples, warmup=warmup, requests=requests)
        prof = Profiler(clock=self.clock, enabled=self.profile)
        clock, pre, post, infer = self.clock, self.preprocess, self.postprocess, self.runtime.infer
        record = prof.record
        outputs: list[list[np.ndarray] | None] = []
        predictions: list[Any] | None = [] if post is not None else None
        errors: list[RequestError] = []
        rows: list[tuple[int, int, int, int, bool, bool]] = []  # RequestRecords, built after the loop
        is_array = isinstance(samples, np.ndarray)
        for rid, i in enumerate(plan.tolist()):
            x = samples[i:i + 1] if is_array else take(samples, i)
            t0 = clock()
            try:
                if pre is not None:
                    with record("pre", lane=LANE, request_id=rid):
                        x = pre(x)
                out = infer(x, request_id=rid, slot=0, profiler=prof)
                if post is not None:
                    with record("post", lane=LANE, request_id=rid):
                        p = post(out)
                ok = True
            except Exception as exc:  # noqa: BLE001 - one failed request must not stop the others
                errors.append(RequestError(rid, exc))
                out, p, ok = None, None, False
            rows.append((rid, t0, t0, clock(), ok, rid < warmup))
            outputs.append(out)
            if predictions is not None:
                predictions.append(p if ok else None)
        records = [RequestRecord._make(r) for r in rows]
        return build_result(self.mode, runtime=self.runtime, outputs=outputs, predictions=predictions,
                            sample_indices=plan, warmup=warmup, errors=errors, records=records,
                            trace=prof.trace(), config={**self.config(), "samples": n})


_OFF = Profiler(enabled=False)
