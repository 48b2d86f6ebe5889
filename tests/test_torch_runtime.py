"""The PyTorch runtimes: CPU outputs, spans, errors, threads, lazy import; the CUDA runtime's CPU-side parts."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lab.clock import FakeClock  # noqa: E402
from lab.errors import (  # noqa: E402
    ConfigError,
    DeviceError,
    InputError,
    ModelLoadError,
    RunnerClosed,
    RuntimeUnavailable,
)
from lab.profiler import Profiler  # noqa: E402
from lab.runtimes.base import Runtime, TensorSpec  # noqa: E402
from lab.runtimes.torch import (  # noqa: E402
    TorchRuntime,
    create_torch_runtime,
    map_torch_exceptions,
    numpy_dtype,
    set_torch_threads,
)
from lab.runtimes.torch_cuda import EVENT_SPAN_ATTRS, stage_spans, throughput_bound_per_s  # noqa: E402
from lab.timing import measure  # noqa: E402
from lab.zoo import load_workload  # noqa: E402
from lab.zoo.digits import DATA_DIR, build_digits_cnn  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def digits():
    return load_workload("digits")


@pytest.fixture(scope="module")
def rt():
    with TorchRuntime.from_workload("digits") as runtime:
        yield runtime


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


class Picky(torch.nn.Module):
    """Fails inside forward (a backend error) when the input holds a negative number."""

    def forward(self, x):
        if bool((x < 0).any()):
            raise RuntimeError("negative input reached the kernel")
        return x + 1


class Pair(torch.nn.Module):
    def forward(self, x):
        return x.sum(dim=1), {"not": "a tensor"}


class TwoOut(torch.nn.Module):
    def forward(self, x):
        return x[:, :2], x.sum(dim=1).to(torch.int64)


# -- outputs ---------------------------------------------------------------------------------
def test_digits_outputs_equal_onnxruntime(digits, rt) -> None:
    from lab.runtimes.onnx import OnnxRuntime

    x = digits.inputs()  # the whole held-out split as one batch
    with OnnxRuntime(digits.model_path) as ort:
        expected = ort.infer(x)[0]
        np.testing.assert_allclose(rt.infer(x)[0], expected, atol=1e-4, rtol=0)
        for i in (0, 7, 449):  # and batch 1, through the slot buffers of another batch size
            np.testing.assert_allclose(rt.infer(x[i:i + 1])[0], ort.infer(x[i:i + 1])[0], atol=1e-4, rtol=0)
    assert digits.accuracy(np.argmax(rt.infer(x)[0], axis=1)) > 0.95


def test_specs_and_describe(rt) -> None:
    assert isinstance(rt, Runtime)
    assert [s.describe() for s in rt.inputs] == ["image: float32[batch, 1, 8, 8]"]
    assert [s.describe() for s in rt.outputs] == ["logits: float32[batch, 10]"]
    d = rt.describe()
    assert d["runtime"] == "torch" and d["model"] == "digits" and d["num_parameters"] == 38282
    assert d["load_ms"] > 0 and "torch" in rt.device


def test_outputs_are_owned_by_the_caller() -> None:
    with TorchRuntime(Double(), inputs=[TensorSpec("x", (None, 4), "float32")]) as r:
        a = r.infer(np.ones((1, 4), np.float32))[0]
        r.infer(np.full((1, 4), 3, np.float32))
        assert a.tolist() == [[2, 2, 2, 2]]
        a[0, 0] = 99  # writable and not the runtime's
        assert r.infer(np.ones((1, 4), np.float32))[0].tolist() == [[2, 2, 2, 2]]


def test_specs_from_example_inputs_and_outputs_found_by_running_once() -> None:
    with TorchRuntime(TwoOut(), example_inputs=np.zeros((3, 5), np.float32)) as r:
        assert [s.describe() for s in r.inputs] == ["input: float32[batch, 5]"]
        assert [s.describe() for s in r.outputs] == ["output_0: float32[batch, 2]", "output_1: int64[batch]"]
        a, b = r.infer(np.arange(10, dtype=np.float32).reshape(2, 5))
        assert a.tolist() == [[0, 1], [5, 6]] and b.tolist() == [10, 35] and b.dtype == np.int64


# -- spans -------------------------------------------------------------------------------------
def test_three_spans_per_request_on_slot_lanes(digits) -> None:
    clock = FakeClock(step_ns=10)
    prof = Profiler(clock=clock)
    with TorchRuntime.from_workload("digits", clock=clock) as r:
        r.infer(digits.inputs(2), request_id=5, slot=1, profiler=prof)
        r.infer(digits.inputs(1), request_id=6, profiler=prof)
        r.infer(digits.inputs(1), request_id=7)  # no profiler: no spans
    spans = prof.spans()
    assert [(s.lane, s.name, s.request_id) for s in spans] == [
        ("h2d/1", "upload", 5), ("device/1", "compute", 5), ("d2h/1", "download", 5),
        ("h2d/0", "upload", 6), ("device/0", "compute", 6), ("d2h/0", "download", 6)]
    assert spans[0].end_ns == spans[1].start_ns and spans[1].end_ns == spans[2].start_ns
    assert all(s.duration_ns == 10 for s in spans)  # one clock step each on the fake clock


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad,match",
    [
        (np.ones((1, 1, 8, 9), np.float32), r"expected shape image: float32\[batch, 1, 8, 8\], got \(1, 1, 8, 9\)"),
        (np.ones((1, 1, 8, 8), np.float64), "expected dtype float32, got float64"),
        (np.ones((8, 8), np.float32), r"expected rank 4 .* got rank 2"),
        ({"z": np.ones((1, 1, 8, 8), np.float32)}, r"expected inputs named \['image'\], got \['z'\]"),
        ([1, 2, 3], "expected a numpy array or a mapping"),
    ],
)
def test_bad_inputs_name_expected_and_received_and_runtime_survives(rt, digits, bad, match: str) -> None:
    with pytest.raises(InputError, match=match):
        rt.infer(bad)
    assert rt.infer(digits.inputs(3))[0].shape == (3, 10)


def test_backend_errors_become_device_errors_and_runtime_survives() -> None:
    with TorchRuntime(Picky(), inputs=[TensorSpec("x", (None, 2), "float32")]) as r:
        with pytest.raises(DeviceError, match="torch failed on request 3: RuntimeError: negative input") as info:
            r.infer(np.array([[1, -1]], np.float32), request_id=3)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert r.infer(np.array([[1, 2]], np.float32))[0].tolist() == [[2, 3]]


def test_a_model_returning_something_else_than_tensors_is_a_device_error() -> None:
    with TorchRuntime(Pair(), inputs=[TensorSpec("x", (None, 2), "float32")],
                      outputs=[TensorSpec("y", (None,), "float32")]) as r:
        with pytest.raises(DeviceError, match="expected a tensor, or a tuple, list or dict of tensors"):
            r.infer(np.ones((1, 2), np.float32))


def test_map_torch_exceptions_covers_what_torch_raises() -> None:
    for exc in (RuntimeError("x"), torch.OutOfMemoryError("oom"), ValueError("v"), TypeError("t"),
                IndexError("i"), NotImplementedError("n")):
        with pytest.raises(DeviceError), map_torch_exceptions("run"):
            raise exc
    with pytest.raises(InputError), map_torch_exceptions("run"):  # lab errors pass through untouched
        raise InputError("bad")


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match="exactly one of inputs"):
        TorchRuntime(Double())
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        TorchRuntime("digits", inputs=[TensorSpec("x", (None, 4), "float32")])
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        TorchRuntime(Double(), inputs=[TensorSpec("x", (None, 4), "float32")], threads=0)
    with pytest.raises(ModelLoadError, match="no numpy equivalent"):
        numpy_dtype(torch.bfloat16)


def test_model_loading_errors(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="PyTorch weights not found"):
        TorchRuntime.from_state_dict(tmp_path / "missing.pt", build_digits_cnn,
                                     inputs=[TensorSpec("image", (None, 1, 8, 8), "float32")])
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read"):
        TorchRuntime.from_state_dict(junk, build_digits_cnn, inputs=[TensorSpec("image", (None, 1, 8, 8), "float32")])
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(ModelLoadError, match="do not fit the model"):
        TorchRuntime.from_state_dict(other, build_digits_cnn, inputs=[TensorSpec("image", (None, 1, 8, 8), "float32")])
    with pytest.raises(ModelLoadError, match="cannot load 'model.onnx'"):
        create_torch_runtime("model.onnx")
    with pytest.raises(ConfigError, match="unknown PyTorch workload"):
        TorchRuntime.from_workload("nope")


def test_factory_finds_the_weights_next_to_the_workload_onnx_file(digits) -> None:
    r = create_torch_runtime(str(digits.model_path), threads=1)
    try:
        assert isinstance(r, TorchRuntime) and r.model_name == "digits"
        assert r.infer(digits.inputs(2))[0].shape == (2, 10)
    finally:
        r.close()
    with create_torch_runtime(DATA_DIR / "digits_cnn.pt") as r2, create_torch_runtime("digits") as r3:
        assert r2.model_name == r3.model_name == "digits"


def test_closed_runtime_refuses_requests(digits) -> None:
    r = TorchRuntime.from_workload("digits")
    r.close()
    r.close()  # idempotent
    with pytest.raises(RunnerClosed):
        r.infer(digits.inputs(1))
    with pytest.raises(RunnerClosed):
        r.synchronize()


# -- threads -----------------------------------------------------------------------------------
def test_thread_count_is_set_while_open_and_restored_on_close() -> None:
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with TorchRuntime.from_workload("digits", threads=target) as r:
        assert torch.get_num_threads() == target
        assert r.describe()["threads"] == target
    assert torch.get_num_threads() == before
    with TorchRuntime.from_workload("digits"):  # None: left alone
        assert torch.get_num_threads() == before


def test_thread_count_is_restored_when_loading_fails() -> None:
    before = torch.get_num_threads()
    with pytest.raises(ModelLoadError):
        TorchRuntime(Picky(), example_inputs=-np.ones((1, 2), np.float32), threads=1 if before != 1 else 2)
    assert torch.get_num_threads() == before


def test_set_torch_threads_restores_after_an_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(KeyError), set_torch_threads(1 if before != 1 else 2):
        raise KeyError("boom")
    assert torch.get_num_threads() == before


# -- with the lab's runners and timing ---------------------------------------------------------
def test_sync_and_async_runners_drive_it(digits) -> None:
    from lab.runners import AsyncRunner, SyncRunner

    with TorchRuntime.from_workload("digits") as r:
        res = SyncRunner(r, workload=digits).run_all(digits.samples, warmup=2, requests=30)
        assert not res.errors and res.accuracy(digits.labels) > 0.9
        assert {s.lane for s in res.trace.spans} >= {"h2d/0", "device/0", "d2h/0"}
        runner = AsyncRunner(r, workers=2, workload=digits)
        try:
            res2 = runner.run_all(digits.samples, requests=30)
        finally:
            runner.close()
        assert not res2.errors and {s.lane for s in res2.trace.spans} >= {"device/0", "device/1"}


def test_measure_through_the_runtime(rt, digits) -> None:
    x = digits.inputs(1)
    m = measure(lambda: rt.infer(x), synchronize=rt.synchronize, min_run_time_s=0.01, max_run_time_s=0.05,
                label="torch digits b1")
    assert m.is_synchronized and m.median_ns > 0 and m.num_blocks >= 1


@pytest.mark.slow  # about 20 s cold on this machine (inductor compiles C++), 3 s with its cache warm
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch._dynamo's own imports warn
def test_torch_compile_matches_eager(digits) -> None:
    x = digits.inputs(8)
    with TorchRuntime.from_workload("digits") as eager, TorchRuntime.from_workload("digits", compile=True) as comp:
        np.testing.assert_allclose(comp.infer(x)[0], eager.infer(x)[0], atol=1e-4, rtol=0)
        assert comp.describe()["compile"] is True


# -- lazy imports ------------------------------------------------------------------------------
def test_importing_lab_and_these_modules_does_not_import_torch() -> None:
    code = ("import sys, lab, lab.timing, lab.cuda_clock, lab.runtimes.torch, lab.runtimes.torch_cuda; "
            "bad = [m for m in ('torch', 'onnxruntime') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the CUDA runtime, without CUDA ------------------------------------------------------------
@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_cuda_pieces_raise_runtime_unavailable_without_cuda() -> None:
    from lab.cuda_clock import CudaEventClock, measure_events
    from lab.runtimes.torch_cuda import TorchCudaRuntime

    with pytest.raises(RuntimeUnavailable, match="CUDA is not available"):
        TorchCudaRuntime.from_workload("digits")
    with pytest.raises(RuntimeUnavailable, match="CUDA is not available"):
        TorchCudaRuntime(Double(), inputs=[TensorSpec("x", (None, 4), "float32")])
    with pytest.raises(RuntimeUnavailable, match="CUDA is not available"):
        create_torch_runtime("digits", cuda=True)
    with pytest.raises(RuntimeUnavailable, match="'torch' \\(CPU\\) or 'simnpu'"):
        CudaEventClock()
    with pytest.raises(RuntimeUnavailable):
        measure_events(lambda: None)


def test_stage_spans_from_event_times() -> None:
    rows = stage_spans(1, 9, [100, 200, 210, 900, 905, 1000])
    assert rows == [("h2d/1", "upload", 9, 100, 200, EVENT_SPAN_ATTRS),
                    ("device/1", "compute", 9, 210, 900, EVENT_SPAN_ATTRS),
                    ("d2h/1", "download", 9, 905, 1000, EVENT_SPAN_ATTRS)]
    assert stage_spans(0, 0, [5, 4, 6, 6, 7, 8])[0][3:5] == (5, 5)  # rounding never draws a span backwards
    with pytest.raises(ValueError, match="expected 6 event times"):
        stage_spans(0, 0, [1, 2])
    with pytest.raises(TypeError):
        EVENT_SPAN_ATTRS["clock"] = "x"  # type: ignore[index]


def test_throughput_bound_is_set_by_the_slowest_stage() -> None:
    assert throughput_bound_per_s(1e6, 4e6, 2e6) == pytest.approx(250.0)
    assert throughput_bound_per_s(1e6, 1e6, 1e6, host_ns=5e6) == pytest.approx(200.0)
    with pytest.raises(ValueError):
        throughput_bound_per_s(0, 0, 0)
    with pytest.raises(ValueError):
        throughput_bound_per_s(-1, 1, 1)


# -- the CUDA runtime's own logic on a synchronous CPU stand-in for CUDA ---------------------
class _FakeEvent:
    """A CUDA event stand-in: ``record`` takes the host time; complete at once unless ``auto_complete``
    is off, in which case only ``synchronize()`` completes it (a device that is always busy)."""

    auto_complete = True

    def __init__(self, enable_timing: bool = False) -> None:
        self.t = 0
        self.complete = False

    def record(self, stream=None) -> None:
        self.t = time.perf_counter_ns()
        self.complete = _FakeEvent.auto_complete

    def query(self) -> bool:
        return self.complete

    def synchronize(self) -> None:
        self.complete = True

    def elapsed_time(self, end: _FakeEvent) -> float:
        return (end.t - self.t) / 1e6


class _FakeStream:
    def __init__(self, device=None) -> None:
        self.waits: list[_FakeEvent] = []

    def wait_event(self, event: _FakeEvent) -> None:
        self.waits.append(event)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda replaced by synchronous CPU stand-ins: tests the runtime's bookkeeping, not CUDA."""
    import lab.cuda_clock as cuda_clock
    import lab.runtimes.torch_cuda as torch_cuda

    monkeypatch.setattr(cuda_clock, "import_torch_cuda", lambda device=None: (torch, torch.device("cpu")))
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _FakeStream())
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(name="CPU stand-in"))
    monkeypatch.setattr(torch_cuda, "_pinned_empty", lambda t, shape, dtype: t.empty(shape, dtype=dtype))
    monkeypatch.setattr(torch_cuda, "_record_stream", lambda tensor, stream: None)
    monkeypatch.setattr(_FakeEvent, "auto_complete", True)
    return torch_cuda


def test_fake_cuda_outputs_and_spans(fake_cuda, digits, rt) -> None:
    x = digits.inputs(5)
    prof = Profiler()
    with fake_cuda.TorchCudaRuntime.from_workload("digits") as cu:
        np.testing.assert_array_equal(cu.infer(x, request_id=3, slot=1, profiler=prof)[0], rt.infer(x)[0])
        assert cu.describe()["streams"] == ["h2d", "compute", "d2h"] and "CPU stand-in" in cu.device
    spans = {s.name: s for s in prof.spans()}
    assert {n: s.lane for n, s in spans.items()} == {
        "stage_in": "host/1", "launch": "host/1", "upload": "h2d/1", "compute": "device/1",
        "download": "d2h/1", "stage_out": "host/1"}
    assert all(s.request_id == 3 for s in spans.values())
    assert spans["compute"].attrs == {"clock": "cuda-event"} and spans["stage_in"].attrs is None
    order = [spans[n] for n in ("stage_in", "upload", "compute", "download", "stage_out")]
    for a, b in zip(order, order[1:], strict=False):  # mapped event times land on the host timeline, in order
        assert a.start_ns <= a.end_ns <= b.start_ns + 50_000, (a, b)


def test_fake_cuda_slots_wait_for_their_previous_upload_and_compute_only(fake_cuda, digits, rt) -> None:
    _FakeEvent.auto_complete = False  # nothing completes unless waited for
    xs = [digits.inputs(1) + i for i in range(4)]
    with fake_cuda.TorchCudaRuntime.from_workload("digits") as cu:
        jobs = [cu.submit(xs[0]), cu.submit(xs[1])]
        assert [j.slot for j in jobs] == [0, 1] and not any(j.done() for j in jobs)
        first_upload_end, first_compute_end = jobs[0]._events[1], jobs[0]._events[3]
        jobs.append(cu.submit(xs[2]))  # slot 0 again
        assert first_upload_end.complete  # the host waited for the upload that read the pinned input ...
        assert cu._h2d.waits == [first_compute_end]  # ... and the H2D stream waits for the compute
        assert not jobs[0].done()  # ... but nobody waited for job 0's download
        jobs.append(cu.submit(xs[3]))
        assert len(cu._pending) == 4
        cu.synchronize()
        assert not cu._pending and all(j.done() for j in jobs)
        for j, x in zip(jobs, xs, strict=True):
            np.testing.assert_array_equal(j.result()[0], rt.infer(x)[0])
            assert len(j.event_ns) == 6
        assert len(cu._free_events) == 4  # every job's events went back to the pool


def test_fake_cuda_errors_and_views(fake_cuda, digits) -> None:
    spec = [TensorSpec("x", (None, 2), "float32")]
    with fake_cuda.TorchCudaRuntime(Picky(), inputs=spec) as cu:
        with pytest.raises(InputError, match="expected dtype float32, got float64"):
            cu.submit(np.ones((1, 2)))
        with pytest.raises(DeviceError, match="negative input"):
            cu.infer(-np.ones((1, 2), np.float32))
        assert not cu._pending and len(cu._free_events) == 1  # the failed request's events are back
        a = cu.submit(np.ones((1, 2), np.float32), copy_outputs=False)
        b = cu.submit(np.full((1, 2), 5, np.float32), copy_outputs=False)
        assert a.result(timeout=1.0)[0].tolist() == [[2, 2]] and b.result()[0].tolist() == [[6, 6]]
        assert a.result()[0] is a.result()[0]  # finished once; views of the job's own output
    with pytest.raises(RunnerClosed):
        cu.submit(np.ones((1, 2), np.float32))


def test_fake_cuda_runtime_under_runners_and_timing(fake_cuda, digits) -> None:
    from lab.runners import AsyncRunner

    with fake_cuda.TorchCudaRuntime.from_workload("digits") as cu:
        runner = AsyncRunner(cu, workers=2, workload=digits)
        try:
            res = runner.run_all(digits.samples, requests=20)
        finally:
            runner.close()
        assert not res.errors and res.accuracy(digits.labels) > 0.9
        assert {s.lane for s in res.trace.spans} >= {"h2d/0", "h2d/1", "device/0", "device/1", "d2h/0", "d2h/1"}
        x = digits.inputs(1)
        m = measure(lambda: cu.submit(x), synchronize=cu.synchronize, min_run_time_s=0.01, max_run_time_s=0.05)
        assert m.is_synchronized and m.sync_overhead_ns >= 0 and not cu._pending


def test_fake_cuda_request_timeout(fake_cuda, digits) -> None:
    from lab.errors import RequestTimeout

    _FakeEvent.auto_complete = False
    with fake_cuda.TorchCudaRuntime.from_workload("digits") as cu:
        job = cu.submit(digits.inputs(1))
        with pytest.raises(RequestTimeout, match="not done after 0.001 s"):
            job.result(timeout=0.001)
        with pytest.raises(RequestTimeout, match=r"1 request\(s\) still on"):
            cu.synchronize(timeout=0.001)
        assert job.result()[0].shape == (1, 10)  # still running, then finished
        cu.synchronize(timeout=0.001)
        assert not cu._pending


def test_fake_cuda_pending_list_stays_short(fake_cuda, digits) -> None:
    x = digits.inputs(1)
    with fake_cuda.TorchCudaRuntime.from_workload("digits") as cu:
        for _ in range(10):
            cu.infer(x)  # results collected: finished jobs leave the list at the next submit
        assert len(cu._pending) <= 1
        jobs = [cu.submit(x) for _ in range(20)]  # results never collected: finished for us past 2 per slot
        assert len(cu._pending) <= 5 and sum(j._finished for j in jobs) >= 15
        assert [j.slot for j in jobs[:4]] == [0, 1, 0, 1]


def test_fake_cuda_threads_restored_and_load_errors(fake_cuda) -> None:
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with fake_cuda.TorchCudaRuntime.from_workload("digits", threads=target) as cu:
        assert torch.get_num_threads() == target and cu.describe()["threads"] == target
    assert torch.get_num_threads() == before
    with pytest.raises(ModelLoadError, match="failed on its example input"):
        fake_cuda.TorchCudaRuntime(Picky(), example_inputs=-np.ones((1, 2), np.float32), threads=target)
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="num_slots"):
        fake_cuda.TorchCudaRuntime(Double(), inputs=[TensorSpec("x", (None, 4), "float32")], num_slots=0)
