"""``python -m lab``: ``bench`` (benchmark_app-like), ``advise``, ``report`` (all notebooks), ``lab`` (JupyterLab)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.errors import LabError

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[1]


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line and exits 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see `python -m lab {self.prog.split()[-1]} --help`)\n")


def _positive(name: str):  # noqa: ANN202 - argparse type factory
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {value}")
        return value
    return parse


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"warmup must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"warmup must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = _Parser(prog="python -m lab", description="Inference Lab: measure how a model is executed.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("bench", help="measure one configuration (like benchmark_app)")
    b.add_argument("--model", default="digits", help="workload name (e.g. digits) or a path to an .onnx file")
    b.add_argument("--runtime", default="onnx", help="runtime name: onnx, simnpu (the simulated NPU), ...")
    b.add_argument("--mode", default="sync", choices=["sync", "batch", "async"])
    b.add_argument("--batch-size", type=_positive("batch size"), default=8)
    b.add_argument("--workers", type=_positive("workers"), default=2)
    b.add_argument("--max-inflight", type=_positive("max-inflight"), default=None)
    b.add_argument("--requests", type=_positive("requests"), default=200)
    b.add_argument("--warmup", type=_nonnegative, default=10)
    b.add_argument("--threads", type=_positive("threads"), default=None, help="runtime intra-op threads")
    b.add_argument("--partial", choices=["dynamic", "pad"], default="dynamic", help="partial last batch policy")
    b.add_argument("--no-profile", action="store_true", help="record no spans")
    b.add_argument("--load", choices=["single", "closed", "poisson", "offline"], default=None,
                   help="drive the run with a load generator (MLPerf scenarios); batch mode = dynamic batching")
    b.add_argument("--rate", type=float, default=None, help="arrivals per second for --load poisson")
    b.add_argument("--concurrency", type=_positive("concurrency"), default=1, help="outstanding requests, closed loop")
    b.add_argument("--parallel", type=int, choices=[1, 2], default=None,
                   help="RBLN-style AsyncRuntime: 1, or 2 for double buffering")
    b.add_argument("--max-delay-ms", type=float, default=2.0, help="dynamic batching: longest wait to fill a batch")
    b.add_argument("--preset", default=None, help="simulated NPU preset (simnpu): teaching, warboy, atom")
    b.add_argument("--pe-mode", choices=["single", "fused"], default=None,
                   help="simulated NPU PE mode (default: the preset's)")
    b.add_argument("--devices", type=_positive("devices"), default=1, help="simulated NPU devices")
    b.add_argument("--seed", type=int, default=0, help="seeds Poisson arrivals and simulated faults")
    b.add_argument("--json", dest="json_path", help="write the results as JSON here")
    b.add_argument("--trace", dest="trace_path", help="write the Chrome trace (Perfetto) here")

    r = sub.add_parser("report", help="execute every notebook and write reports/index.html")
    r.add_argument("--notebooks", default=str(REPO_ROOT / "notebooks"))
    r.add_argument("--output", default="reports")
    r.add_argument("--quick", action="store_true", help="run notebooks with quick=True (small sizes)")
    r.add_argument("--only", nargs="*", help="notebook stems to run")

    w = sub.add_parser("sweep", help="run a grid of bench runs or notebooks on Dask distributed")
    w.add_argument("grid", help="the grid file (YAML; see examples/sweep_grid.yaml)")
    w.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler (default: a LocalCluster on this machine)")
    w.add_argument("--workers", type=_positive("workers"), default=1,
                   help="LocalCluster worker processes, one thread each (default 1: runs never overlap)")
    w.add_argument("--output", default=None, help="output folder (default: reports/sweeps/<grid name>)")

    from lab.analysis.cli import add_advise_parser  # light: no backend imported until it runs

    add_advise_parser(sub, _positive, _nonnegative)

    j = sub.add_parser("lab", help="start JupyterLab on the notebooks")
    j.add_argument("--port", type=int, default=8888)
    j.add_argument("extra", nargs=argparse.REMAINDER)
    return parser


def _bench(args: argparse.Namespace) -> int:
    from lab.api import run
    from lab.config import RunConfig
    from lab.env import collect_environment
    from lab.runtimes import create_runtime
    from lab.zoo import WORKLOADS, load_workload, random_workload

    config = RunConfig(model=args.model, runtime=args.runtime, mode=args.mode, requests=args.requests,
                       warmup=args.warmup, batch_size=args.batch_size, workers=args.workers,
                       max_inflight=args.max_inflight, threads=args.threads, partial=args.partial,
                       profile=not args.no_profile, load=args.load, rate=args.rate, concurrency=args.concurrency,
                       parallel=args.parallel, max_delay_ms=args.max_delay_ms, preset=args.preset,
                       pe_mode=args.pe_mode, devices=args.devices, seed=args.seed)
    options = config.runtime_options()
    if args.model in WORKLOADS:
        workload = load_workload(args.model)
        runtime = create_runtime(args.runtime, workload.model_path, **options)
    elif args.model.endswith(".onnx") or os.path.sep in args.model or os.path.exists(args.model):
        runtime = create_runtime(args.runtime, args.model, **options)
        workload = random_workload(Path(args.model).stem, args.model, runtime.inputs)
    else:
        from lab.errors import ConfigError

        raise ConfigError(
            f"unknown model {args.model!r}: expected one of {sorted(WORKLOADS)} or a path to an .onnx file")
    try:
        result = run(config, workload=workload, runtime=runtime)
    finally:
        runtime.close()
    result.metrics.extra["load_ms"] = runtime.load_ns / 1e6
    m = result.metrics.to_dict()
    doc: dict[str, Any] = {
        "throughput_rps": m["throughput_rps"],
        "latency_ms": m["latency_ms"],
        "first_latency_ms": m["first_latency_ms"],
        "stages_ms": m["stages_ms"],
        "utilization": m["utilization"],
        "utilization_by_kind": m["utilization_by_kind"],
        "overlap": m["overlap"],
        "accuracy": m.get("accuracy"),
        "requests": m["requests"],
        "warmup": m["warmup"],
        "errors": m["errors"],
        "error_messages": [str(e) for e in result.errors[:20]],
        "peak_inflight": m["peak_inflight"],
        "load_ms": m.get("load_ms"),
        "batches": m.get("batches"),
        "batch_sizes": m.get("batch_sizes"),
        "load": m.get("load"),
        "config": {**result.config, **runtime.describe()},
        **_prediction(result, config),
        "environment": collect_environment(),
        "measurement": {
            "clock": "time.perf_counter_ns (host)",
            "latency": "submission to outputs ready, warm-up and first request excluded",
            "throughput": "completions per second in the steady window (10%..90% of completions when >= 20)",
        },
    }
    if "simulat" in runtime.device.lower():
        print(f"device: {runtime.device} -- a simulator: modelled times, not a real NPU")
    print(result.summary())
    acc = doc["accuracy"]
    print(f"  accuracy {acc:.4f}" if acc is not None else "  accuracy n/a (no labels)")
    if doc.get("predicted_rps") is not None:
        print(f"  predicted {doc['predicted_rps']:,.1f} req/s from this run's stage times (virtual-time twin, "
              f"{doc['prediction_error']:+.1%}); bottleneck bound {doc['bound_rps']:,.1f} req/s")
    if args.json_path:
        from lab.findings import _clean

        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(_clean(doc), f, indent=2, allow_nan=False)
        print(f"  wrote {args.json_path}")
    if args.trace_path:
        print(f"  wrote {result.trace.save_chrome(args.trace_path)} (open in https://ui.perfetto.dev)")
    return 0 if result.metrics.errors == 0 else 1


def _prediction(result: Any, config: Any) -> dict[str, Any]:
    """``bound_rps``, ``predicted_rps``, ``prediction_error`` (lab.analysis.cli.bench_prediction)."""
    from lab.analysis.cli import bench_prediction

    return bench_prediction(result, config)


def _advise(args: argparse.Namespace) -> int:
    from lab.analysis.cli import run_advise

    return run_advise(args)


def _report(args: argparse.Namespace) -> int:
    from lab.report import build_report

    report = build_report(args.notebooks, args.output, quick=args.quick, only=args.only)
    for nb in report.notebooks:
        status = "ok" if nb.ok else f"FAILED: {nb.error}"
        print(f"{nb.name}: {status}")
    print(f"wrote {report.index_path}")
    return 0 if report.ok else 1


def _sweep(args: argparse.Namespace) -> int:
    from lab.sweep import load_grid, run_sweep

    spec = load_grid(args.grid)
    out = args.output or os.path.join("reports", "sweeps", spec.name)
    where = args.scheduler or f"a LocalCluster of {args.workers} single-threaded worker(s)"
    print(f"{spec.name}: {len(spec.expand())} {spec.kind} points on {where}")

    def show(row: dict[str, Any]) -> None:
        status = "ok" if row.get("ok") else f"FAILED: {row.get('error')}"
        rps = f", {row['throughput_rps']:,.1f} req/s" if isinstance(row.get("throughput_rps"), float) else ""
        print(f"  p{row['point']:03d} on {row.get('worker')}: {status} ({row['duration_s']:.1f} s{rps})")

    result = run_sweep(spec, out, scheduler=args.scheduler, workers=args.workers, on_row=show)
    print(f"wrote {result.output_dir / 'sweep.csv'} and {result.index_path}")
    return 0 if result.ok else 1


def _lab(args: argparse.Namespace) -> int:
    import subprocess

    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={REPO_ROOT / 'notebooks'}",
           f"--port={args.port}", *args.extra]
    return subprocess.call(cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status. Errors the user can fix print one line, no traceback."""
    args = build_parser().parse_args(argv)
    handlers = {"bench": _bench, "report": _report, "lab": _lab, "advise": _advise, "sweep": _sweep}
    try:
        return handlers[args.command](args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and friends: not an error of ours
        sys.stderr.close()
        return 0
