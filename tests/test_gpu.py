"""CUDA checks: event clock, naive vs synchronized timing, the CUDA runtime's streams and spans.

Marked ``gpu``: deselected by default (pyproject ``addopts``) and skipped without CUDA
(conftest); run with ``pytest -m gpu`` on a machine with an NVIDIA GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from lab.clock import host_clock  # noqa: E402
from lab.errors import ConfigError, DeviceError, InputError, RequestTimeout  # noqa: E402
from lab.profiler import Profiler  # noqa: E402
from lab.runtimes.base import TensorSpec  # noqa: E402
from lab.timing import measure, measure_naive  # noqa: E402

#: About 1 ms of GPU time at 1-2 GHz: a kernel that returns to the host at once and runs long.
SLEEP_CYCLES = 2_000_000


@pytest.fixture(autouse=True)
def _fp32_exact(monkeypatch):
    # cuDNN convolutions use TF32 by default (10-bit mantissa): compare in true float32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.fixture(scope="module")
def digits():
    from lab.zoo import load_workload

    return load_workload("digits")


class Sleepy(torch.nn.Module):
    """Spins ``cycles`` GPU clock cycles, then adds one: a compute stage of known length."""

    def __init__(self, cycles: int) -> None:
        super().__init__()
        self.cycles = cycles

    def forward(self, x):
        torch.cuda._sleep(self.cycles)
        return x + 1


class Picky(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 2:
            raise RuntimeError("batches above 2 are refused by this model")
        return x * 2


def overlap_ns(a, b) -> int:
    return max(0, min(a.end_ns, b.end_ns) - max(a.start_ns, b.start_ns))


# -- the event clock -----------------------------------------------------------------------------
def test_event_clock_maps_device_time_into_the_host_window() -> None:
    from lab.cuda_clock import CudaEventClock

    ec = CudaEventClock()
    assert ec.anchor_uncertainty_ns >= 0 and ec.num_anchors == 1
    h0 = host_clock()
    e = ec.record()
    e.synchronize()
    h1 = host_clock()
    t = ec.to_host_ns(e)
    slack = ec.anchor_uncertainty_ns + 20_000  # mapping error: the anchor's window plus event resolution
    assert h0 - slack <= t <= h1 + slack
    ec.anchor()
    assert ec.num_anchors == 2
    e2 = ec.record()
    assert ec.to_host_ns(e2) >= t


def test_event_pair_times_a_sleep_kernel() -> None:
    from lab.cuda_clock import CudaEventClock

    ec = CudaEventClock()
    a = ec.record()
    torch.cuda._sleep(SLEEP_CYCLES)
    b = ec.record()
    b.synchronize()
    mapped = ec.to_host_ns(b) - ec.to_host_ns(a)
    assert mapped > 100_000  # the kernel runs for about a millisecond
    assert mapped == pytest.approx(ec.elapsed_ns(a, b), abs=2_000)


def test_import_torch_cuda_checks_the_device() -> None:
    from lab.cuda_clock import import_torch_cuda

    with pytest.raises(ConfigError, match="must be a CUDA device"):
        import_torch_cuda("cpu")
    with pytest.raises(ConfigError, match="CUDA device"):
        import_torch_cuda(torch.cuda.device_count())
    assert import_torch_cuda(0)[1] == torch.device("cuda", 0)


# -- naive vs right ----------------------------------------------------------------------------------
def test_naive_host_timing_misses_async_gpu_work_and_synchronized_timing_matches_events() -> None:
    from lab.cuda_clock import measure_events

    def work() -> None:
        torch.cuda._sleep(SLEEP_CYCLES)

    naive = measure_naive(work, num_samples=20, synchronize=torch.cuda.synchronize)
    right = measure(work, synchronize=torch.cuda.synchronize, min_run_time_s=0.05, max_run_time_s=1.0)
    events = measure_events(work, num_samples=20, block_size=5)
    assert right.sync_overhead_ns > 0 and right.is_synchronized
    assert right.median_ns > 5 * naive.median_ns  # naive saw the launch, not the kernel
    assert right.median_ns == pytest.approx(events.median_ns, rel=0.10)
    assert events.clock_name == "cuda-event" and not events.is_naive


# -- the CUDA runtime ----------------------------------------------------------------------------------
def test_digits_outputs_equal_the_cpu_runtime(digits) -> None:
    from lab.runtimes.torch import TorchRuntime
    from lab.runtimes.torch_cuda import TorchCudaRuntime

    x = digits.inputs()
    with TorchRuntime.from_workload("digits") as cpu, TorchCudaRuntime.from_workload("digits") as gpu:
        np.testing.assert_allclose(gpu.infer(x)[0], cpu.infer(x)[0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(gpu.infer(x[:1], slot=1)[0], cpu.infer(x[:1])[0], atol=1e-4, rtol=0)
        assert gpu.describe()["streams"] == ["h2d", "compute", "d2h"]


def test_spans_are_event_times_on_the_host_timeline_in_stage_order(digits) -> None:
    from lab.runtimes.torch_cuda import TorchCudaRuntime

    prof = Profiler()
    with TorchCudaRuntime.from_workload("digits") as gpu:
        for rid in range(3):
            gpu.infer(digits.inputs(4), request_id=rid, slot=rid % 2, profiler=prof)
        slack = gpu.event_clock.anchor_uncertainty_ns + 20_000
    by = {(s.request_id, s.name): s for s in prof.spans()}
    for rid in range(3):
        lanes = {name: by[(rid, name)].lane for name in ("stage_in", "launch", "upload", "compute", "download")}
        assert lanes == {"stage_in": f"host/{rid % 2}", "launch": f"host/{rid % 2}", "upload": f"h2d/{rid % 2}",
                         "compute": f"device/{rid % 2}", "download": f"d2h/{rid % 2}"}
        up, comp, down = by[(rid, "upload")], by[(rid, "compute")], by[(rid, "download")]
        assert up.attrs == {"clock": "cuda-event"}
        assert up.end_ns <= comp.start_ns + 2_000 and comp.end_ns <= down.start_ns + 2_000  # stream waits
        assert by[(rid, "stage_in")].end_ns <= up.start_ns + slack  # staged before the upload began
        assert down.end_ns <= by[(rid, "stage_out")].start_ns + slack


def test_two_slots_overlap_uploads_with_compute_for_real() -> None:
    from lab.runtimes.torch_cuda import TorchCudaRuntime

    shape = (1, 3, 1024, 1024)  # 12.6 MB each way
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    prof = Profiler()
    with TorchCudaRuntime(Sleepy(4 * SLEEP_CYCLES), inputs=[TensorSpec("x", shape, "float32")],
                          outputs=[TensorSpec("y", shape, "float32")], num_slots=2) as gpu:
        jobs = [gpu.submit(x, request_id=i, profiler=prof, copy_outputs=False) for i in range(8)]
        gpu.synchronize()
        assert all(j.done() for j in jobs)
        np.testing.assert_array_equal(jobs[-1].result()[0], x + 1)
    spans = prof.spans()
    uploads = {s.request_id: s for s in spans if s.name == "upload"}
    computes = {s.request_id: s for s in spans if s.name == "compute"}
    downloads = {s.request_id: s for s in spans if s.name == "download"}
    overlapped = sum(overlap_ns(uploads[i + 1], computes[i]) > 0 for i in range(7))
    assert overlapped >= 5, "the next upload should run while the current request computes"
    assert sum(overlap_ns(downloads[i], computes[i + 1]) > 0 for i in range(7)) >= 5
    for i in range(2, 8):  # a slot's device input is rewritten only after its previous compute
        assert uploads[i].start_ns >= computes[i - 2].end_ns - 2_000


def test_submit_result_timeout_and_synchronize() -> None:
    from lab.runtimes.torch_cuda import TorchCudaRuntime

    spec = [TensorSpec("x", (None, 4), "float32")]
    with TorchCudaRuntime(Sleepy(50 * SLEEP_CYCLES), inputs=spec, outputs=spec) as gpu:
        job = gpu.submit(np.zeros((1, 4), np.float32))
        assert not job.done()
        with pytest.raises(RequestTimeout):
            job.result(timeout=0.001)
        assert job.result()[0].tolist() == [[1, 1, 1, 1]]
        jobs = [gpu.submit(np.full((1, 4), i, np.float32)) for i in range(4)]
        gpu.synchronize()
        assert [j.result()[0][0, 0] for j in jobs] == [1, 2, 3, 4]
        assert all(j.event_ns is not None and len(j.event_ns) == 6 for j in jobs)


def test_errors_are_translated_and_the_runtime_stays_usable() -> None:
    from lab.runtimes.torch_cuda import TorchCudaRuntime

    with TorchCudaRuntime(Picky(), inputs=[TensorSpec("x", (None, 4), "float32")]) as gpu:
        with pytest.raises(InputError, match="expected dtype float32, got float64"):
            gpu.infer(np.zeros((1, 4)))
        with pytest.raises(DeviceError, match="batches above 2"):
            gpu.infer(np.zeros((3, 4), np.float32))
        assert gpu.infer(np.ones((2, 4), np.float32))[0].tolist() == [[2] * 4] * 2


def test_runners_drive_the_cuda_runtime(digits) -> None:
    from lab.runners import AsyncRunner
    from lab.runtimes.torch_cuda import TorchCudaRuntime

    with TorchCudaRuntime.from_workload("digits") as gpu:
        runner = AsyncRunner(gpu, workers=2, workload=digits)
        try:
            res = runner.run_all(digits.samples, requests=40)
        finally:
            runner.close()
    assert not res.errors and res.accuracy(digits.labels) > 0.95
    assert {s.lane for s in res.trace.spans} >= {"h2d/0", "h2d/1", "device/0", "device/1"}
