"""CUDA events on the host timeline: device spans and host spans on one Gantt chart.

A CUDA event records when the GPU *reached* it in a stream, on the GPU's own clock;
``a.elapsed_time(b)`` is the only thing CUDA tells about it (milliseconds between two
events, about 0.5 us resolution). To place device work on the host's ``perf_counter_ns``
timeline, :class:`CudaEventClock` pairs a *reference event* with a host timestamp::

    torch.cuda.synchronize()          # device idle: nothing queued ahead of the reference
    anchor_host_ns = host_clock()
    reference.record(stream)          # the GPU reaches it after the launch latency only
    reference.synchronize()
    to_host_ns(e) = anchor_host_ns + round(reference.elapsed_time(e) * 1e6)

Because the reference pays the same launch latency as any later work, a mapped device
span starts no earlier than the host call that launched it; the anchor's uncertainty
(host time from before the record to after its completion) is kept in
``anchor_uncertainty_ns`` and in each span's attributes.

Re-anchoring: ``elapsed_time`` is a single-precision float of milliseconds, so an event
``t`` ms after the reference is placed to about ``t / 2**24`` ms (0.6 us at 10 s), and the
GPU and host clocks drift apart by some parts per million. Call :meth:`CudaEventClock.anchor`
again at a point where the device may be synchronised (runtimes do it in ``synchronize()``
once the anchor is older than :data:`MAX_ANCHOR_AGE_NS`); convert events recorded before a
re-anchor first, since the mapping of an old event changes by the re-anchoring error.

torch is imported lazily: ``import lab`` never imports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from lab.clock import Clock, host_clock
from lab.errors import ConfigError, RuntimeUnavailable
from lab.timing import Measurement

__all__ = ["MAX_ANCHOR_AGE_NS", "CudaEventClock", "import_torch_cuda", "measure_events"]

#: Re-anchor once the reference event is this old (float32 ms: ~0.6 us placement error at 10 s).
MAX_ANCHOR_AGE_NS = 10_000_000_000


def import_torch_cuda(device: Any = None) -> tuple[Any, Any]:
    """Import torch and check that CUDA can be used.

    Args:
        device: ``None`` (current CUDA device), an index, ``"cuda:1"`` or a ``torch.device``.

    Returns:
        ``(torch, torch.device)``.

    Raises:
        RuntimeUnavailable: torch is missing, is a CPU-only build, or sees no CUDA device.
        ConfigError: ``device`` is not a CUDA device of this machine.
    """
    try:
        import torch  # lazy: `import lab` must not import torch
    except ImportError as exc:
        raise RuntimeUnavailable("PyTorch is not installed: pip install 'inference-lab[torch]'") from exc
    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else " is a CPU-only build")
        raise RuntimeUnavailable(
            f"CUDA is not available ({build}, {torch.cuda.device_count()} CUDA device(s) visible); "
            "use a machine with an NVIDIA GPU and a CUDA build of torch, or the 'torch' (CPU) or "
            "'simnpu' runtime"
        )
    if device is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        try:
            dev = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ConfigError(f"device must be a CUDA device index or 'cuda:N', got {device!r}") from exc
        if dev.type != "cuda":
            raise ConfigError(f"device must be a CUDA device, got {device!r}")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if not 0 <= dev.index < torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch, dev


class CudaEventClock:
    """Records CUDA events and maps them onto the host clock through a reference event.

    Args:
        device: CUDA device (None: the current one).
        clock: the host clock device times are mapped onto (spans of both share it).

    Raises:
        RuntimeUnavailable: no CUDA (see :func:`import_torch_cuda`).

    Example::

        ec = CudaEventClock()
        a = ec.record(stream); launch_work(); b = ec.record(stream)
        b.synchronize()
        start_ns, end_ns = ec.to_host_ns(a), ec.to_host_ns(b)   # on the perf_counter_ns timeline
    """

    def __init__(self, device: Any = None, *, clock: Clock = host_clock) -> None:
        self._torch, self.device = import_torch_cuda(device)
        self.clock = clock
        self.anchor_host_ns = 0
        self.anchor_uncertainty_ns = 0
        self.num_anchors = 0
        self._anchor: tuple[Any, int] = (None, 0)
        self.anchor()

    def anchor(self) -> None:
        """(Re-)anchor: synchronise the device, pair a fresh reference event with a host timestamp.

        Synchronises the whole device, so call it where a pipeline may drain (start of a
        run, ``synchronize()``). Events recorded before it should be converted before it.
        """
        torch = self._torch
        with torch.cuda.device(self.device):
            torch.cuda.synchronize(self.device)
            ref = torch.cuda.Event(enable_timing=True)
            h0 = self.clock()
            ref.record(torch.cuda.current_stream(self.device))
            ref.synchronize()
            h1 = self.clock()
        self._anchor = (ref, h0)  # one tuple: a reader never pairs a new event with an old time
        self.anchor_host_ns = h0
        self.anchor_uncertainty_ns = h1 - h0
        self.num_anchors += 1

    @property
    def anchor_age_ns(self) -> int:
        """Host time since the reference event was recorded."""
        return self.clock() - self.anchor_host_ns

    def record(self, stream: Any = None) -> Any:
        """A new timing event recorded on ``stream`` (None: the device's current stream)."""
        torch = self._torch
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(stream if stream is not None else torch.cuda.current_stream(self.device))
        return ev

    def to_host_ns(self, event: Any) -> int:
        """When the GPU reached ``event``, in host-clock nanoseconds; waits for the event if needed."""
        if not event.query():
            event.synchronize()
        reference, host_ns = self._anchor
        return host_ns + round(reference.elapsed_time(event) * 1e6)

    @staticmethod
    def elapsed_ns(start: Any, end: Any) -> int:
        """Device time between two completed events (``end.elapsed_time`` in integer ns)."""
        return round(start.elapsed_time(end) * 1e6)

    def synchronize(self) -> None:
        """``torch.cuda.synchronize`` on this clock's device (a ``synchronize`` for :func:`lab.timing.measure`)."""
        self._torch.cuda.synchronize(self.device)

    def describe(self) -> dict[str, Any]:
        """Facts for findings: the device, the anchor's uncertainty and how often it was re-anchored."""
        return {"clock": "cuda-event", "device": str(self.device), "anchor_uncertainty_ns": self.anchor_uncertainty_ns,
                "num_anchors": self.num_anchors}


def measure_events(fn: Callable[[], Any], *, num_samples: int = 100, warmup: int = 3, block_size: int = 1,
                   stream: Any = None, device: Any = None, label: str = "") -> Measurement:
    """Time ``fn`` on the GPU with a pair of CUDA events per sample (the blog post's correct way).

    Per sample: ``start.record(); block_size x fn(); end.record()``; one
    ``torch.cuda.synchronize()`` after all samples, then ``start.elapsed_time(end)``.
    The events measure the device time between them on ``stream`` (None: the current
    stream), so host launch overhead counts only where it starves the device.

    Returns:
        A :class:`~lab.timing.Measurement` with ``clock_name="cuda-event"``; the clock
        overhead is that of an event pair (timed on an empty stream).

    Raises:
        RuntimeUnavailable: no CUDA.
        ConfigError: ``num_samples < 1``, ``warmup < 0`` or ``block_size < 1``.
    """
    if num_samples < 1 or warmup < 0 or block_size < 1:
        raise ConfigError(f"need num_samples >= 1, warmup >= 0, block_size >= 1; got {num_samples}, {warmup}, "
                          f"{block_size}")
    torch, dev = import_torch_cuda(device)
    s = stream if stream is not None else torch.cuda.current_stream(dev)

    def pair() -> tuple[Any, Any]:
        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    with torch.cuda.device(dev), torch.cuda.stream(s):
        first = pair()
        first[0].record(s)
        fn()
        first[1].record(s)
        warm = [pair() for _ in range(warmup)]
        for a, b in warm:
            a.record(s)
            fn()
            b.record(s)
        empty = [pair() for _ in range(16)]
        torch.cuda.synchronize(dev)
        for a, b in empty:  # an empty pair: the events' own cost and resolution
            a.record(s)
            b.record(s)
        pairs = [pair() for _ in range(num_samples)]
        for a, b in pairs:
            a.record(s)
            for _ in itertools.repeat(None, block_size):
                fn()
            b.record(s)
        torch.cuda.synchronize(dev)

    def ns(p: tuple[Any, Any]) -> float:
        return p[0].elapsed_time(p[1]) * 1e6

    empty_ns = sorted(ns(p) for p in empty)
    positive = [e for e in empty_ns if e > 0]
    return Measurement(
        samples_ns=tuple(ns(p) / block_size for p in pairs), block_size=block_size, first_call_ns=ns(first),
        warmup_ns=tuple(ns(p) for p in warm), clock_overhead_ns=empty_ns[len(empty_ns) // 2],
        sync_overhead_ns=0.0, label=label, clock_resolution_ns=positive[0] if positive else 500.0,
        is_naive=False, is_synchronized=True, clock_name="cuda-event",
    )

