"""The sweep's report page: the merged table, how the points ran, and each worker's environment."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from lab.report.index import _CSS, _environment_section, _kv_table, format_value
from lab.sweep.grid import SweepSpec

__all__ = ["write_sweep_page"]

#: Columns of the merged table shown on the page, when present (the CSV has them all).
_SHOWN = ("throughput_rps", "p50_ms", "p90_ms", "p99_ms", "first_ms", "device_busy", "overlap", "peak_inflight",
          "errors", "accuracy")
_RUN_COLUMNS = ("worker", "duration_s", "started")


def _cell(value: Any, *, parameter: bool = False) -> str:
    if isinstance(value, float) and value != value:  # NaN from pandas
        value = None
    if value is None and parameter:
        return "<td>none</td>"  # a parameter left unset (e.g. no in-flight cap), not a missing number
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    cls = ' class="num"' if num else ""
    return f"<td{cls}>{escape(format_value(value))}</td>"


def _table(spec: SweepSpec, table: Any, rows: Sequence[Mapping[str, Any]]) -> str:
    varied = spec.varied()
    if spec.kind == "bench":
        metrics = [c for c in _SHOWN if c in table.columns]
    else:
        known = {"point", "point_id", "ok", "error", "executed", "html", "findings", "device", "trace_path",
                 "pid", "worker_name", "worker_threads", "finished", "lock_wait_s", *_RUN_COLUMNS, *spec.base}
        metrics = [c for c in table.columns if c not in known and c not in varied]
    columns = ["point_id", "ok", *varied, *metrics, *_RUN_COLUMNS]
    head = "".join(f"<th>{escape(c)}</th>" for c in [*columns, "files"])
    body = []
    for row, (_, record) in zip(rows, table.iterrows(), strict=True):
        cells = []
        for c in columns:
            value = record.get(c)
            if c == "ok":
                ok = bool(value)
                badge = '<span class="badge ok">ok</span>' if ok else '<span class="badge failed">failed</span>'
                if not ok and row.get("error"):
                    badge += f'<div class="error">{escape(str(row["error"]))}</div>'
                cells.append(f"<td>{badge}</td>")
            else:
                cells.append(_cell(value, parameter=c in varied))
        links = []
        if row.get("trace_path"):
            links.append(f'<a href="{escape(row["trace_path"])}">trace</a>')
        for key, label in (("html", "notebook HTML"), ("findings", "findings")):
            if row.get(key):
                links.append(f'<a href="{escape(_rel(row[key]))}">{label}</a>')
        cells.append(f'<td class="links">{" ".join(links)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _rel(path: str) -> str:
    """Paths under the sweep folder as written by the tasks are absolute: link them relatively."""
    parts = Path(path).parts
    return "/".join(parts[parts.index("points"):]) if "points" in parts else Path(path).as_uri()


def write_sweep_page(
    out: Path,
    *,
    spec: SweepSpec,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    cluster: Mapping[str, Any],
    workers: Mapping[str, Mapping[str, Any]],
) -> Path:
    """Write ``<out>/index.html`` for a finished sweep (HTML-escaped, relative links, no scripts)."""
    made = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ok = sum(1 for r in rows if r.get("ok"))
    where = ("a LocalCluster" if cluster.get("local") else f"the Dask cluster at {cluster.get('scheduler')}")
    summary = (f"{len(rows)} points ({ok} ok, {len(rows) - ok} failed) on {where} of {cluster.get('workers')} "
               f"worker(s), at most {cluster.get('max_concurrent')} at once, in {cluster.get('wall_s', 0):.1f} s")
    concurrent_note = ""
    if (cluster.get("max_concurrent") or 1) > 1:
        concurrent_note = ('<p class="note">Several points ran at the same time on different workers: where '
                           "workers share a machine, their measurements disturbed each other. Compare points "
                           "from one worker, or run with one worker.</p>")
    spec_pairs = [("kind", spec.kind), ("source", spec.source or "(in memory)"), ("repeats", spec.repeats)]
    if spec.notebook:
        spec_pairs.append(("notebook", spec.notebook))
    spec_pairs += [(f"base.{k}", json.dumps(v) if not isinstance(v, str) else v) for k, v in spec.base.items()]
    spec_pairs += [(f"grid.{k}", json.dumps(list(v))) for k, v in spec.grid.items()]
    env_html = "".join(
        f"<h3>{escape(str(worker))}</h3>{_environment_section(env)}" for worker, env in workers.items()
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sweep {escape(spec.name)} - Inference Lab</title>
<style>{_CSS} h3 {{ font-size: 15px; margin: 16px 0 4px; }}</style>
</head>
<body>
<h1>Sweep: {escape(spec.name)}</h1>
<div class="meta">made {escape(made)}</div>
<div class="summary">{escape(summary)}</div>
{f'<p>{escape(spec.description)}</p>' if spec.description else ''}
{concurrent_note}
<p class="links"><a href="sweep.csv">sweep.csv</a> <a href="sweep.json">sweep.json</a>
<span class="note">traces open in <a href="https://ui.perfetto.dev">https://ui.perfetto.dev</a></span></p>
<h2>Results</h2>
{_table(spec, table, rows)}
<h2>Grid</h2>
{_kv_table(spec_pairs, numeric=False)}
<h2>Workers and their environment</h2>
{env_html}
</body>
</html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
