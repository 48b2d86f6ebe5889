"""The batch runner: requests grouped into batches of a fixed size (MLPerf Offline-like).

Partial last batch: when the request count is not a multiple of the batch size, the
last batch is smaller. With ``partial="dynamic"`` it runs at its own size (the model
must have a dynamic batch axis; a new shape can cost a first-call penalty, which the
trace shows); with ``partial="pad"`` it is padded to the full size with copies of its
last sample and the padded outputs are dropped. What happened is stated in
``RunResult.metrics.extra["batches"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lab.clock import Clock, host_clock
from lab.errors import ConfigError
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
)
from lab.runtimes.base import Runtime

__all__ = ["BatchRunner"]

LANE = "host/0"
PARTIAL_POLICIES = ("dynamic", "pad")


def _gather(samples: Any, idx: np.ndarray) -> Any:
    if isinstance(samples, np.ndarray):
        return samples[idx]
    return np.stack([np.asarray(samples[i]) for i in idx.tolist()])


def _split(outputs: list[np.ndarray], n: int) -> list[list[np.ndarray]]:
    return [[o[j:j + 1] for o in outputs] for j in range(n)]


class BatchRunner:
    """Runs requests in batches of ``batch_size`` on the calling thread.

    Every request of a batch is submitted when the batch starts and completes when the
    batch's outputs are ready, so its latency is the whole batch's time: the price of
    batching that the seed's table shows.

    Args:
        runtime: any :class:`~lab.runtimes.base.Runtime`.
        batch_size: requests per batch (>= 1).
        partial: ``"dynamic"`` or ``"pad"`` (see the module docstring). With a model
            whose batch axis is fixed, ``"pad"`` is required.
        workload, preprocess, postprocess, profile, clock: as for :class:`~lab.runners.SyncRunner`.
    """

    mode = "batch"

    def __init__(self, runtime: Runtime, *, batch_size: int, partial: str = "dynamic", workload: Any = None,
                 preprocess: Preprocess | None = None, postprocess: Postprocess | None = None,
                 profile: bool = True, clock: Clock = host_clock) -> None:
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if partial not in PARTIAL_POLICIES:
            raise ConfigError(f"partial must be one of {PARTIAL_POLICIES}, got {partial!r}")
        fixed = [s.shape[0] for s in runtime.inputs if s.shape and s.shape[0] is not None]
        if fixed and fixed[0] != batch_size:
            raise ConfigError(
                f"the model's batch axis is fixed at {fixed[0]}; batch_size {batch_size} cannot run on it"
            )
        if fixed and partial == "dynamic":
            partial = "pad"  # a fixed batch axis cannot take a smaller batch
        self.runtime = runtime
        self.batch_size = int(batch_size)
        self.partial = partial
        self.preprocess, self.postprocess = resolve_stages(workload, preprocess, postprocess)
        self.profile = profile
        self.clock = clock

    def config(self) -> dict[str, Any]:
        """The runner's settings, for findings."""
        return {"mode": self.mode, "batch_size": self.batch_size, "partial": self.partial, "profile": self.profile}

    def run_all(self, samples: Any, *, warmup: int = 0, requests: int | None = None) -> RunResult:
        """Run ``warmup`` + ``requests`` requests over ``samples`` in batches and measure them.

        Warm-up requests form their own batches (``ceil(warmup / batch_size)`` of them,
        rounded up to whole batches) so no measured batch mixes in a warm-up.
        A failed batch fails each of its requests with the batch's error; the other batches go on.
        """
        bs = self.batch_size
        warm_batches = -(-warmup // bs)
        warmup_requests = warm_batches * bs
        n, plan = sample_plan(samples, warmup=warmup_requests, requests=requests)
        prof = Profiler(clock=self.clock, enabled=self.profile)
        clock, pre, post = self.clock, self.preprocess, self.postprocess
        outputs: list[list[np.ndarray] | None] = []
        predictions: list[Any] | None = [] if post is not None else None
        records: list[RequestRecord] = []
        errors: list[RequestError] = []
        partial_info: dict[str, Any] | None = None
        num_batches = 0
        for b0 in range(0, len(plan), bs):
            idx = plan[b0:b0 + bs]
            size = len(idx)
            is_warm = b0 < warmup_requests
            pad = 0
            if size < bs:
                # the measured part can end with a partial batch (warm-up batches are always full)
                if self.partial == "pad":
                    pad = bs - size
                    idx = np.concatenate([idx, np.repeat(idx[-1:], pad)])
                partial_info = {"size": size, "policy": self.partial, "run_as": size + pad, "padded": pad}
            rid0 = b0
            attrs = {"batch": num_batches, "size": size, "padded": pad}
            t0 = clock()
            try:
                x = _gather(samples, idx)
                if pre is not None:
                    with prof.record("pre", lane=LANE, request_id=rid0, attrs=attrs):
                        x = pre(x)
                out = self.runtime.infer(x, request_id=rid0, slot=0, profiler=prof)
                preds: list[Any] = []
                if post is not None:
                    with prof.record("post", lane=LANE, request_id=rid0, attrs=attrs):
                        preds = list(np.asarray(post(out))[:size])
                per_request: list[list[np.ndarray] | None] = list(_split(out, size))
                ok = True
            except Exception as exc:  # noqa: BLE001 - a failed batch fails its own requests only
                errors.extend(RequestError(rid0 + j, exc) for j in range(size))
                per_request, preds, ok = [None] * size, [None] * size, False
            t1 = clock()
            num_batches += 1
            for j in range(size):
                records.append(RequestRecord(rid0 + j, t0, t0, t1, ok, is_warm))
            outputs.extend(per_request)
            if predictions is not None:
                predictions.extend(preds if ok else [None] * size)
        measured = len(plan) - warmup_requests
        batches = {"batch_size": bs, "batches": num_batches, "warmup_batches": warm_batches,
                   "full": measured // bs, "partial": partial_info}
        return build_result(self.mode, runtime=self.runtime, outputs=outputs, predictions=predictions,
                            sample_indices=plan, warmup=warmup_requests, errors=errors, records=records,
                            trace=prof.trace(), config={**self.config(), "samples": n},
                            extra={"batches": batches}, num_cold=min(bs, len(plan)))
