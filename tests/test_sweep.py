"""lab.sweep: grid files, and sweeps that really run on Dask distributed (LocalCluster and an existing one)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.errors import ConfigError
from lab.sweep import SWEEP_FORMAT, SweepResult, load_grid, parse_grid, run_sweep

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sweep_grid.yaml"
GOOD_NOTEBOOK = ROOT / "tests" / "data" / "report" / "good.ipynb"

pytest.importorskip("distributed", reason="sweeps run on Dask distributed: pip install 'dask[distributed]'")


def _small(doc: dict[str, Any], requests: int = 60) -> dict[str, Any]:
    doc = dict(doc)
    doc["base"] = {**doc["base"], "requests": requests, "warmup": 2}
    return doc


# -- grid files ---------------------------------------------------------------------------------


def test_the_example_grid_has_eight_configurations() -> None:
    spec = load_grid(EXAMPLE)
    points = spec.expand()
    assert len(points) == 8
    assert spec.varied() == ["workers", "max_inflight"]
    assert points[0] == {"model": "digits", "runtime": "simnpu", "preset": "teaching", "mode": "async",
                         "requests": 200, "warmup": 10, "workers": 1, "max_inflight": None}
    assert [(p["workers"], p["max_inflight"]) for p in points[:3]] == [(1, None), (1, 4), (2, None)]


def test_points_and_repeats_extend_the_grid() -> None:
    spec = parse_grid({"name": "x", "base": {"runtime": "simnpu"}, "grid": {"workers": [1, 2]},
                       "points": [{"mode": "sync"}], "repeats": 2})
    assert [p.get("workers", "-") for p in spec.expand()] == [1, 1, 2, 2, "-", "-"]
    assert parse_grid({"name": "y", "base": {"requests": 5}}).expand() == [{"requests": 5}]


@pytest.mark.parametrize(("doc", "match"), [
    ([1, 2], "expected a mapping"),
    ({"name": "x", "colour": "red"}, r"unknown keys \['colour'\]"),
    ({"name": "x", "kind": "slurm"}, "kind must be one of"),
    ({"name": "bad name!"}, "name must be"),
    ({"name": "x", "grid": {"workers": 4}}, "grid.workers must be a non-empty list"),
    ({"name": "x", "grid": {"workers": []}}, "grid.workers must be a non-empty list"),
    ({"name": "x", "grid": {"wrokers": [1]}}, r"\['wrokers'\], which are not RunConfig fields"),
    ({"name": "x", "grid": {"workers": [0, 1]}}, "point 0 .* not a valid RunConfig: workers must be"),
    ({"name": "x", "repeats": 0}, "repeats must be"),
    ({"name": "x", "points": ["sync"]}, "points must be a list of mappings"),
    ({"name": "x", "kind": "notebook"}, "needs 'notebook:"),
    ({"name": "x", "kind": "notebook", "notebook": "missing.ipynb"}, "not an existing .ipynb"),
    ({"name": "x", "notebook": str(GOOD_NOTEBOOK)}, "only for kind: notebook"),
])
def test_bad_grids_say_what_was_expected(doc: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_grid(doc)


def test_notebook_points_are_checked_against_the_parameters_cell() -> None:
    base = {"name": "nb", "kind": "notebook", "notebook": str(GOOD_NOTEBOOK)}
    assert parse_grid({**base, "grid": {"scale": [1, 2]}}).notebook == str(GOOD_NOTEBOOK)
    with pytest.raises(ConfigError, match=r"\['sclae'\], which good.ipynb's parameters cell does not declare"):
        parse_grid({**base, "grid": {"sclae": [1, 2]}})
    with pytest.raises(ConfigError, match="output_dir"):
        parse_grid({**base, "base": {"output_dir": "x"}})


def test_a_relative_notebook_is_found_next_to_the_grid_file(tmp_path: Path) -> None:
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "good.ipynb").write_bytes(GOOD_NOTEBOOK.read_bytes())
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"kind": "notebook", "notebook": "nb/good.ipynb", "grid": {"scale": [1]}}))
    spec = load_grid(grid)
    assert spec.name == "g" and spec.notebook == str((tmp_path / "nb" / "good.ipynb").resolve())
    grid.write_text("kind: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_grid(grid)


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers must be"):
        run_sweep(parse_grid({"name": "x"}), tmp_path, workers=0)


# -- real sweeps on Dask -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """The example's 8 configurations on a 2-worker LocalCluster (fewer requests)."""
    spec = parse_grid(_small(yaml.safe_load(EXAMPLE.read_text())), source=EXAMPLE)
    return run_sweep(spec, tmp_path_factory.mktemp("sweep"), workers=2)


@pytest.mark.slow
def test_a_two_worker_local_cluster_runs_eight_configurations_into_one_table(local_sweep: SweepResult) -> None:
    r = local_sweep
    assert r.ok, [row["error"] for row in r.rows if not row["ok"]]
    assert [row["point"] for row in r.rows] == list(range(8))
    assert r.cluster["local"] and r.cluster["workers"] == 2
    assert set(r.cluster["threads"].values()) == {1}  # single-threaded workers
    assert len({row["worker"] for row in r.rows}) == 2  # both workers ran points
    table = r.table
    assert len(table) == 8 and list(table.columns[:4]) == ["point_id", "ok", "workers", "max_inflight"]
    assert {"throughput_rps", "p50_ms", "p99_ms", "worker", "started", "duration_s"} <= set(table.columns)
    assert (table["throughput_rps"] > 0).all() and (table["errors"] == 0).all()
    # the cap bounds the requests in flight; without it every request is admitted at once
    capped = table[table["max_inflight"] == 4]
    assert (capped["peak_inflight"] <= 4).all()
    for row in r.rows:
        assert row["environment"]["cpu_count"] and row["environment"]["libraries"]["numpy"]
        assert "simulator" in row["device"]
        assert (r.output_dir / row["trace_path"]).is_file()


@pytest.mark.slow
def test_the_sweep_writes_csv_json_and_one_report_page(local_sweep: SweepResult) -> None:
    out = local_sweep.output_dir
    csv_lines = (out / "sweep.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == 9 and csv_lines[0].startswith("point_id,ok,workers,max_inflight")
    doc = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert doc["format"] == SWEEP_FORMAT and doc["version"] == 1 and len(doc["rows"]) == 8
    assert doc["spec"]["grid"] == {"workers": [1, 2, 4, 8], "max_inflight": [None, 4]}
    assert len(doc["workers"]) == 2
    html = local_sweep.index_path.read_text(encoding="utf-8")
    assert "<h1>Sweep: async-workers-inflight</h1>" in html
    assert "8 points (8 ok, 0 failed) on a LocalCluster of 2 worker(s)" in html
    assert html.count('<span class="badge ok">ok</span>') == 8
    assert "disturbed each other" in html  # two ran at once: the page says so
    assert 'href="traces/p007.trace.json"' in html and "Workers and their environment" in html


@pytest.mark.slow
def test_an_existing_cluster_runs_one_point_per_worker_at_a_time(tmp_path: Path) -> None:
    from distributed import LocalCluster

    spec = parse_grid({"name": "busy", "base": {"model": "digits", "runtime": "simnpu", "preset": "teaching",
                                                "requests": 40, "warmup": 2},
                       "grid": {"mode": ["sync", "async"]}, "repeats": 2, "traces": False})
    # an "existing" cluster whose one worker has 3 threads: the run lock must still serialise the points
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        result = run_sweep(spec, tmp_path, scheduler=cluster.scheduler_address)
    assert result.ok and not result.cluster["local"]
    assert result.cluster["threads"] and list(result.cluster["threads"].values()) == [3]
    assert result.cluster["max_concurrent"] == 1
    spans = sorted((row["started"], row["finished"]) for row in result.rows)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans
    assert all(row["worker_threads"] == 3 and row["trace_path"] is None for row in result.rows)
    assert "on the Dask cluster at tcp://" in result.index_path.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.notebook
def test_a_notebook_sweep_runs_papermill_on_the_workers(tmp_path: Path) -> None:
    spec = parse_grid({"name": "nb", "kind": "notebook", "notebook": str(GOOD_NOTEBOOK),
                       "base": {"quick": True}, "grid": {"scale": [1, 5]}})
    result = run_sweep(spec, tmp_path)
    assert result.ok, [row["error"] for row in result.rows]
    for row, scale in zip(result.rows, (1, 5), strict=True):
        assert row["scale"] == scale and row["throughput_rps"] == pytest.approx(1234.5678)
        assert Path(row["findings"]).is_file() and Path(row["html"]).is_file()
        params = json.loads(Path(row["findings"]).read_text(encoding="utf-8"))["parameters"]
        assert params == {"quick": True, "scale": scale}
    assert len(result.table) == 2 and "quick" not in result.spec.varied()
    html = result.index_path.read_text(encoding="utf-8")
    assert 'href="points/p001/good/good.html"' in html


@pytest.mark.slow
def test_python_m_lab_sweep(tmp_path: Path) -> None:
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump({"name": "tiny", "base": {"runtime": "simnpu", "preset": "teaching",
                                                             "requests": 20, "warmup": 1},
                                    "grid": {"mode": ["sync", "batch"]}}))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lab", "sweep", str(grid), "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tiny: 2 bench points on a LocalCluster of 1 single-threaded worker(s)" in proc.stdout
    assert "p000 on tcp://127.0.0.1:" in proc.stdout and "p001 on" in proc.stdout
    assert (out / "sweep.csv").is_file() and (out / "index.html").is_file()
    bad = subprocess.run([sys.executable, "-m", "lab", "sweep", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot read grid file")


def test_importing_lab_sweep_does_not_import_dask() -> None:
    heavy = "('dask', 'distributed', 'pandas', 'papermill')"
    code = f"import sys, lab.sweep; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
