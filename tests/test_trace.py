"""Trace model and Chrome trace export/import."""

from __future__ import annotations

import json

import pytest

from lab.errors import TraceFormatError
from lab.trace import Counter, Span, Trace, lane_kind


def _trace() -> Trace:
    return Trace(
        spans=[
            Span("host/0", "pre", 0, 1_000, 3_000),
            Span("h2d/0", "upload", 0, 3_000, 3_500, {"bytes": 256}),
            Span("device/0", "compute", 0, 3_500, 9_000),
            Span("d2h/0", "download", 0, 9_000, 9_250),
            Span("host/1", "pre", 1, 2_000, 4_000),
            Span("queue", "queue", 2, 1_000, 2_000),
        ],
        counters=[Counter("inflight", 1_000, 1), Counter("inflight", 9_250, 0)],
        metadata={"device": "cpu", "mode": "async"},
    )


@pytest.mark.parametrize("lane,kind", [("host/0", "host"), ("d2h", "d2h"), ("device/12", "device")])
def test_lane_kind(lane: str, kind: str) -> None:
    assert lane_kind(lane) == kind


def test_lanes_are_in_timeline_order() -> None:
    assert _trace().lanes == ["queue", "host/0", "host/1", "h2d/0", "device/0", "d2h/0"]


def test_origin_is_first_start() -> None:
    assert _trace().origin_ns == 1_000


def test_chrome_export_names_processes_and_threads() -> None:
    doc = _trace().to_chrome()
    meta = [e for e in doc["traceEvents"] if e["ph"] == "M"]
    thread_names = {e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    process_names = {e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert thread_names == {"queue", "host/0", "host/1", "h2d/0", "device/0", "d2h/0"}
    assert "host CPU" in process_names and any(p.startswith("device compute") for p in process_names)
    x = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    compute = next(e for e in x if e["name"] == "compute")
    assert compute["ts"] == pytest.approx(2.5)  # (3500 - 1000) ns in microseconds
    assert compute["dur"] == pytest.approx(5.5)
    assert compute["args"]["request_id"] == 0
    assert [e for e in doc["traceEvents"] if e["ph"] == "C"]
    json.dumps(doc)  # serialisable


def test_chrome_round_trip(tmp_path) -> None:
    t = _trace()
    path = t.save_chrome(tmp_path / "t.json")
    back = Trace.from_chrome(path)
    got = sorted((s.lane, s.name, s.request_id, s.start_ns, s.end_ns) for s in back.spans)
    origin = t.origin_ns
    want = sorted((s.lane, s.name, s.request_id, s.start_ns - origin, s.end_ns - origin) for s in t.spans)
    assert got == want
    assert back.metadata["mode"] == "async"
    assert len(back.counters) == 2


def test_import_onnxruntime_profile_shape() -> None:
    # ONNX Runtime's profiler writes a bare list of complete events with categories
    events = [
        {"cat": "Session", "pid": 1, "tid": 7, "dur": 120, "ts": 10, "ph": "X", "name": "model_run", "args": {}},
        {"cat": "Node", "pid": 1, "tid": 7, "dur": 40, "ts": 20, "ph": "X", "name": "Conv_0_kernel_time",
         "args": {"op_name": "Conv"}},
    ]
    t = Trace.from_chrome(events)
    assert [(s.lane, s.name, s.start_ns, s.end_ns) for s in t.spans] == [
        ("Session", "model_run", 10_000, 130_000), ("Node", "Conv_0_kernel_time", 20_000, 60_000)]
    assert t.spans[1].attrs == {"op_name": "Conv"}


@pytest.mark.parametrize("bad", [{"nope": 1}, "not json at all", 42])
def test_from_chrome_rejects_non_traces(tmp_path, bad) -> None:
    if isinstance(bad, str):
        p = tmp_path / "bad.json"
        p.write_text(bad)
        bad = str(p)
    with pytest.raises(TraceFormatError):
        Trace.from_chrome(bad)


def test_to_frame_columns() -> None:
    df = _trace().to_frame()
    assert list(df.columns) == ["lane", "lane_kind", "name", "request_id", "start_ns", "end_ns", "duration_ns", "attrs"]
    assert df.loc[df.name == "compute", "duration_ns"].item() == 5_500
