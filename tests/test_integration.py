"""The real runners on the real digits model and ONNX Runtime: accuracy through the lab, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import lab
from lab.cli import main
from lab.zoo import load_workload


@pytest.fixture(scope="module")
def workload() -> lab.Workload:
    return load_workload("digits")


@pytest.mark.parametrize("mode", ["sync", "batch", "async"])
def test_accuracy_through_the_lab_matches_the_shipped_figure(workload: lab.Workload, mode: str) -> None:
    n = workload.num_samples
    result = lab.run(lab.RunConfig(mode=mode, requests=n, warmup=0, batch_size=32, workers=2), workload=workload)
    assert not result.errors
    acc = result.metrics.extra["accuracy"]
    assert acc >= 0.95, f"{mode}: accuracy dropped to {acc:.4f}"
    assert acc == pytest.approx(workload.info["test_accuracy"], abs=1e-12)
    assert result.sample_indices.tolist() == list(range(n))
    assert len(result.outputs) == n


def test_batch_partial_last_batch_on_the_real_model(workload: lab.Workload) -> None:
    result = lab.run(lab.RunConfig(mode="batch", requests=50, warmup=0, batch_size=16), workload=workload)
    assert result.metrics.extra["batches"]["partial"] == {"size": 2, "policy": "dynamic", "run_as": 2, "padded": 0}
    padded = lab.run(lab.RunConfig(mode="batch", requests=50, warmup=0, batch_size=16, partial="pad"),
                     workload=workload)
    assert padded.metrics.extra["batches"]["partial"]["padded"] == 14
    assert (padded.predictions == result.predictions).all()


def test_async_spans_cover_every_lane(workload: lab.Workload) -> None:
    result = lab.run(lab.RunConfig(mode="async", requests=64, warmup=4, workers=2), workload=workload)
    kinds = {lane.split("/")[0] for lane in result.trace.lanes}
    assert {"host", "h2d", "device", "d2h"} <= kinds
    names = {s.name for s in result.trace.spans}
    assert {"pre", "upload", "compute", "download", "post"} <= names
    m = result.metrics
    assert 0 < m.utilization_by_kind["device"] <= 1 and 0 <= m.overlap <= 1


def test_cli_bench_json_fields(tmp_path, capsys) -> None:
    out, trace = tmp_path / "b.json", tmp_path / "b.trace.json"
    code = main(["bench", "--model", "digits", "--runtime", "onnx", "--mode", "batch", "--batch-size", "8",
                 "--requests", "60", "--warmup", "4", "--json", str(out), "--trace", str(trace)])
    assert code == 0
    doc = json.loads(out.read_text())
    for key in ("throughput_rps", "latency_ms", "first_latency_ms", "stages_ms", "utilization", "overlap",
                "accuracy", "requests", "errors", "config", "environment"):
        assert key in doc, key
    assert set(doc["latency_ms"]) == {"min", "mean", "p50", "p90", "p99", "max"}
    assert doc["requests"] == 60 and doc["warmup"] == 8  # warm-up rounded up to one whole batch
    assert doc["accuracy"] >= 0.95 and doc["errors"] == 0
    assert doc["throughput_rps"] > 0 and doc["config"]["batch_size"] == 8
    assert {"upload", "compute", "download", "pre", "post"} <= set(doc["stages_ms"])
    assert json.loads(trace.read_text())["traceEvents"]
    assert "req/s" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--runtime", "tpu"], "unknown runtime 'tpu'"),
        (["--mode", "batch", "--batch-size", "0"], "batch size must be >= 1"),
        (["--requests", "x"], "requests must be an integer"),
    ],
)
def test_cli_bad_arguments_one_line_no_traceback(args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "lab", "bench", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_cli_model_file_that_is_not_onnx(tmp_path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("not a model")
    proc = subprocess.run([sys.executable, "-m", "lab", "bench", "--model", str(bad)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "cannot load" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_bench_any_onnx_file_with_random_inputs(tmp_path, capsys) -> None:
    code = main(["bench", "--model", str(load_workload("digits").model_path), "--requests", "20", "--warmup", "2",
                 "--json", str(tmp_path / "r.json")])
    assert code == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["accuracy"] is None and doc["requests"] == 20


def test_import_lab_is_light() -> None:
    code = ("import sys, lab; heavy = [m for m in ('onnxruntime', 'torch', 'plotly', 'pandas') if m in sys.modules];"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
