"""A measured run in a background thread that reports progress and can really be stopped.

``lab.run`` has no stop switch of its own, so a :class:`BackgroundRun` holds two handles on
the run it starts:

* the samples: the runner gets them through :class:`StoppableSamples`. Every runner and load
  generator takes each request's sample from the sequence it is given (``take(samples, i)``),
  so the sequence counts the requests issued (the progress) and, once stopped, refuses the
  next one with :class:`~lab.errors.RequestCancelled`: sync, async and load-generator runs
  leave ``run_all`` / ``run_load`` there (``lab.run`` then closes the runner); in a batch run
  each remaining batch fails at once without running;
* the runtime: the run creates it (as ``lab.run`` would) and :meth:`BackgroundRun.stop`
  closes it, so requests already admitted -- an async run without an in-flight cap admits
  them all at once -- fail at once with :class:`~lab.errors.RunnerClosed` instead of
  running to the end.

So after ``stop()`` no further request reaches the device, the run ends within about one
request's time, and its state is ``"stopped"``. Nothing here imports ipywidgets: the explorer
and scripts share it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lab.config import Mode, RunConfig
from lab.errors import RequestCancelled

__all__ = ["RUN_STATES", "BackgroundRun", "StoppableSamples", "planned_requests"]

logger = logging.getLogger(__name__)

#: The states of a :class:`BackgroundRun`, in the order they can happen.
RUN_STATES = ("pending", "running", "done", "stopped", "failed")


def planned_requests(config: RunConfig) -> int:
    """How many samples a run of ``config`` takes: warm-up plus measured requests.

    Batch runs without a load generator round the warm-up up to whole batches (see
    :class:`~lab.runners.BatchRunner`).
    """
    warmup = config.warmup
    if config.mode is Mode.BATCH and config.load is None:
        warmup = -(-warmup // config.batch_size) * config.batch_size
    return warmup + config.requests


class StoppableSamples(Sequence[Any]):
    """A read-only view of samples that counts what is taken and refuses to go on once stopped.

    Args:
        samples: the samples (anything with ``len`` and integer indexing).
        stop: once set, the next ``samples[i]`` raises :class:`~lab.errors.RequestCancelled`.
        on_take: called with the number of samples taken so far, after each one (from the
            thread that took it; keep it cheap).
    """

    def __init__(self, samples: Any, stop: threading.Event,
                 on_take: Callable[[int], None] | None = None) -> None:
        self._samples = samples
        self._stop = stop
        self._on_take = on_take
        self._lock = threading.Lock()
        self.taken = 0

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):  # a plain view; runners index one sample at a time
            return self._samples[index]
        if self._stop.is_set():
            raise RequestCancelled(f"the run was stopped after {self.taken} requests were issued")
        with self._lock:
            self.taken += 1
            taken = self.taken
        if self._on_take is not None:
            self._on_take(taken)
        return self._samples[index]


class BackgroundRun:
    """``lab.run(config)`` on a thread of its own, with progress, ``stop()`` and ``wait()``.

    Example::

        task = BackgroundRun(lab.RunConfig(runtime="simnpu", preset="teaching", requests=500))
        task.start()
        ...
        task.stop()            # the next request is not issued
        task.wait()
        task.state, task.issued, task.result

    Args:
        config: what to run.
        workload: the workload to reuse (loaded from ``config.model`` when None).
        on_progress: ``on_progress(issued, total)``, at most every ``progress_interval_s``
            and once at the end (from the run's thread).
        on_done: ``on_done(task)`` when the run has ended, whatever its state (from the run's
            thread; an exception there is logged, never lost silently).
        progress_interval_s: the least time between two ``on_progress`` calls.
        run: the function that measures (``lab.run``'s signature); tests inject fakes.
    """

    def __init__(self, config: RunConfig, *, workload: Any = None,
                 on_progress: Callable[[int, int], None] | None = None,
                 on_done: Callable[[BackgroundRun], None] | None = None,
                 progress_interval_s: float = 0.1, run: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.total = planned_requests(config)
        self.state = "pending"
        self.result: Any = None
        self.error: BaseException | None = None
        self.started_s: float | None = None
        self.ended_s: float | None = None
        self._workload = workload
        self._on_progress = on_progress
        self._on_done = on_done
        self._interval = progress_interval_s
        self._last_progress = 0.0
        self._run = run
        self._stop = threading.Event()
        self._done = threading.Event()
        self._samples: StoppableSamples | None = None
        self._runtime: Any = None
        self._runtime_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def issued(self) -> int:
        """Requests (warm-up included) handed to the runner so far."""
        return self._samples.taken if self._samples is not None else 0

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started (until it ended, once it has)."""
        if self.started_s is None:
            return 0.0
        return (self.ended_s if self.ended_s is not None else time.perf_counter()) - self.started_s

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and the end of the run."""
        return self._thread is not None and not self._done.is_set()

    def start(self) -> BackgroundRun:
        """Start the run's thread (once); returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("this run was already started; create a new BackgroundRun")
        self.state = "running"
        self.started_s = time.perf_counter()
        self._thread = threading.Thread(target=self._main, name="lab-background-run", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the run: no request is issued after this call, and the runtime is closed (idempotent).

        Requests that had been admitted fail with :class:`~lab.errors.RunnerClosed`; the run's
        thread ends soon after (see :meth:`wait`).
        """
        self._stop.set()
        with self._runtime_lock:
            runtime = self._runtime
        if runtime is not None:
            runtime.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (``on_done`` included); False if ``timeout`` passed first."""
        return self._done.wait(timeout)

    def _progress(self, taken: int, *, final: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.perf_counter()
        if final or now - self._last_progress >= self._interval:
            self._last_progress = now
            self._on_progress(min(taken, self.total), self.total)

    def _main(self) -> None:
        try:
            from lab.runtimes import create_runtime
            from lab.zoo import load_workload

            run = self._run
            if run is None:
                from lab.api import run
            config = self.config
            workload = self._workload if self._workload is not None else load_workload(config.model)
            self._samples = StoppableSamples(workload.samples, self._stop, self._progress)
            # a fresh runtime, as lab.run makes one, but held here so that stop() can close it
            runtime = create_runtime(config.runtime, workload.model_path, **config.runtime_options())
            with self._runtime_lock:
                self._runtime = runtime
            try:
                if self._stop.is_set():
                    raise RequestCancelled("the run was stopped while its runtime was loading")
                result = run(config, workload=workload, runtime=runtime, samples=self._samples)
            finally:
                runtime.close()
            # lab.run gives no accuracy for samples it did not choose: these are the workload's own
            if result.metrics.extra.get("accuracy") is None:
                result.metrics.extra["accuracy"] = result.accuracy(workload.labels)
            self.result = result
            self.state = "stopped" if self._stop.is_set() else "done"
        except BaseException as exc:  # noqa: BLE001 - reported through state/error, never lost
            self.error = exc
            self.state = "stopped" if self._stop.is_set() else "failed"
        finally:
            self.ended_s = time.perf_counter()
            self._progress(self.issued, final=True)
            if self._on_done is not None:
                try:
                    self._on_done(self)
                except Exception:  # noqa: BLE001 - a rendering error must not hide the run's outcome
                    logger.exception("on_done failed after a %s run", self.state)
            self._done.set()
