"""``index.html``: one self-contained page summarising every executed notebook."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lab.env import collect_environment
from lab.errors import TraceFormatError
from lab.findings import load_findings
from lab.report.notebook import ExecutedNotebook

__all__ = ["MAX_FALLBACK_METRICS", "build_index", "format_value", "key_findings"]

#: Without a ``"headline"`` dict, the report shows at most this many top-level scalar metrics.
MAX_FALLBACK_METRICS = 8

PERFETTO_URL = "https://ui.perfetto.dev"

_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-alt: #f6f8fa;
        --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --link: #0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); margin: 0 auto; padding: 24px; max-width: 1200px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
a { color: var(--link); text-decoration: none; }
a:hover { text-decoration: underline; }
.meta, .note { color: var(--muted); }
.summary { margin: 12px 0; font-size: 15px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { text-align: left; vertical-align: top; padding: 6px 10px; border-bottom: 1px solid var(--line); }
th { background: var(--bg-alt); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-weight: 600; font-size: 12px; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.failed { color: var(--bad); background: var(--bad-bg); }
.error { color: var(--bad); font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
         font-size: 12px; white-space: pre-wrap; word-break: break-word; margin-top: 4px; }
table.kv { width: auto; }
table.kv td, table.kv th { padding: 2px 12px 2px 0; border: 0; background: none; }
table.kv td.k { color: var(--muted); white-space: nowrap; }
.links a { margin-right: 10px; white-space: nowrap; }
.name { font-weight: 600; font-size: 15px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery figure { margin: 0; width: 372px; }
.gallery img { width: 100%; border: 1px solid var(--line); border-radius: 4px; }
.gallery figcaption { color: var(--muted); font-size: 12px; }
"""


@dataclass(frozen=True)
class _Row:
    """What the index shows for one notebook."""

    notebook: ExecutedNotebook
    findings: dict[str, Any] | None
    findings_error: str | None
    metrics: list[tuple[str, Any]]
    traces: list[tuple[str, Path]]
    figures: tuple[Path, ...] = ()


def format_value(value: Any) -> str:
    """A metric value as text with sensible precision.

    Integers get thousands separators, floats four significant digits (one decimal from
    100 up, scientific notation for very large or very small magnitudes), None (a NaN in
    the findings) is ``n/a``.

    Examples:
        >>> format_value(1234.5678), format_value(0.0123456), format_value(12345), format_value(None)
        ('1,234.6', '0.01235', '12,345', 'n/a')
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if magnitude >= 1e12 or magnitude < 1e-4:
            return f"{value:.3e}"
        if magnitude >= 100:
            return f"{value:,.1f}"
        return f"{value:.4g}"
    if isinstance(value, str):
        return value if len(value) <= 120 else value[:119] + "\u2026"
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:119] + "\u2026"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str))


def key_findings(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The metrics a report shows for one notebook.

    Returns:
        ``metrics["headline"]`` as (name, value) pairs when it is a dict, otherwise the first
        :data:`MAX_FALLBACK_METRICS` top-level scalar metrics (numbers, booleans, strings).
    """
    headline = metrics.get("headline")
    if isinstance(headline, Mapping):
        return [(str(k), v) for k, v in headline.items()]
    return [(str(k), v) for k, v in metrics.items() if _is_scalar(v)][:MAX_FALLBACK_METRICS]


def _href(target: Path, base: Path) -> str:
    """A relative, URL-quoted link from the folder ``base`` to ``target``."""
    try:
        rel = os.path.relpath(target, base)
    except ValueError:  # another drive on Windows: no relative path exists
        return target.resolve().as_uri()
    return quote(Path(rel).as_posix())


def _link(target: Path | None, base: Path, text: str, *, title: str | None = None) -> str:
    if target is None or not target.exists():
        return escape(text)
    title_attr = f' title="{escape(title)}"' if title else ""
    return f'<a href="{escape(_href(target, base))}"{title_attr}>{escape(text)}</a>'


def _row(nb: ExecutedNotebook) -> _Row:
    findings: dict[str, Any] | None = None
    findings_error: str | None = None
    metrics: list[tuple[str, Any]] = []
    traces: list[tuple[str, Path]] = []
    if nb.findings_path is not None:
        try:
            findings = load_findings(nb.findings_path)
        except TraceFormatError as exc:
            findings_error = str(exc)
        else:
            raw = findings.get("metrics")
            metrics = key_findings(raw) if isinstance(raw, Mapping) else []
            trace = findings.get("trace")
            if isinstance(trace, str) and trace and (Path(nb.findings_path).parent / trace).is_file():
                traces.append(("trace", Path(nb.findings_path).parent / trace))
    # other Chrome traces the notebook wrote next to its outputs, e.g. <stem>.async.trace.json
    main = {path.resolve() for _, path in traces}
    for path in sorted(nb.notebook_path.parent.glob("*.trace.json")):
        if path.resolve() not in main:
            label = path.name[: -len(".trace.json")]
            label = label[len(nb.name) + 1 :] if label.startswith(nb.name + ".") else label
            traces.append((f"trace: {label}", path))
    figures = tuple(p for p in getattr(nb, "figures", ()) if Path(p).is_file())
    return _Row(nb, findings, findings_error, metrics, traces, figures)


def _kv_table(pairs: Sequence[tuple[str, Any]], *, numeric: bool = True) -> str:
    if not pairs:
        return ""
    cells = []
    for key, value in pairs:
        cls = ' class="num"' if numeric and isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        cells.append(f'<tr><td class="k">{escape(key)}</td><td{cls}>{escape(format_value(value))}</td></tr>')
    return '<table class="kv">' + "".join(cells) + "</table>"


def _notebook_rows(rows: Sequence[_Row], base: Path) -> str:
    out = []
    for row in rows:
        nb = row.notebook
        name = f'<div class="name">{_link(nb.html_path, base, nb.name, title="the executed notebook as HTML")}</div>'
        name += f'<div class="links"><span class="note">{escape(_duration(nb.duration_s))}</span></div>'
        if nb.ok:
            status = '<span class="badge ok">ok</span>'
        else:
            status = '<span class="badge failed">failed</span>'
            status += f'<div class="error">{escape(nb.error or "unknown error")}</div>'
        if row.findings_error is not None:
            findings = f'<div class="error">{escape(row.findings_error)}</div>'
        elif row.findings is None:
            findings = '<span class="note">no findings written</span>'
        elif not row.metrics:
            findings = '<span class="note">no scalar metrics</span>'
        else:
            findings = _kv_table(row.metrics)
        links = []
        if nb.html_path is not None and nb.html_path.exists():
            links.append(_link(nb.html_path, base, "HTML"))
        links.append(_link(nb.notebook_path, base, "notebook (.ipynb)"))
        if nb.findings_path is not None:
            links.append(_link(Path(nb.findings_path), base, "findings (JSON)"))
        for label, path in row.traces:
            links.append(
                _link(path, base, label, title=f"Chrome trace JSON: open in {PERFETTO_URL} or chrome://tracing")
            )
        if row.traces:
            links.append(f'<span class="note">open traces in <a href="{PERFETTO_URL}">{PERFETTO_URL}</a></span>')
        if row.figures:
            count = len(row.figures)
            links.append(f'<a href="#figures-{escape(quote(nb.name))}">{count} figure{"s" if count != 1 else ""}</a>')
        link_html = "".join(f"<div>{link}</div>" for link in links)
        out.append(f'<tr><td>{name}</td><td>{status}</td><td>{findings}</td><td class="links">{link_html}</td></tr>')
    return (
        "<table><thead><tr><th>notebook</th><th>status</th><th>key findings</th><th>files</th></tr></thead>"
        f"<tbody>{''.join(out)}</tbody></table>"
    )


def _plain(text: str) -> str:
    """A plotly title as plain text (its HTML tags such as ``<br>`` and ``<sub>`` dropped)."""
    return re.sub(r"<[^>]+>", " ", text).strip()


def _figures_section(rows: Sequence[_Row], base: Path) -> str:
    """Per notebook, its figures: PNG thumbnails linking to the full image, or links to interactive pages."""
    out = []
    for row in rows:
        nb = row.notebook
        note = getattr(nb, "figures_note", None)
        if not row.figures:
            continue
        items = []
        titles = tuple(getattr(nb, "figure_titles", ()))
        for i, path in enumerate(row.figures, start=1):
            href = escape(_href(path, base))
            title = titles[i - 1] if i <= len(titles) else ""
            caption = escape(f"figure {i}: {_plain(title)}" if title else f"figure {i}")
            if path.suffix == ".png":
                items.append(f'<figure><a href="{href}"><img src="{href}" loading="lazy" alt="{escape(nb.name)} '
                             f'{caption}"></a><figcaption>{caption}</figcaption></figure>')
            else:
                items.append(f'<figure><a href="{href}">{caption} (interactive)</a></figure>')
        note_html = f'<p class="note">{escape(note)}</p>' if note and row.figures[0].suffix != ".png" else ""
        out.append(f'<h3 id="figures-{escape(quote(nb.name))}">{_link(nb.html_path, base, nb.name)}</h3>'
                   f'{note_html}<div class="gallery">{"".join(items)}</div>')
    if not out:
        return '<p class="note">No notebook drew a plotly figure.</p>'
    return "".join(out)


def _sweeps_section(base: Path) -> str:
    """Sweeps written under ``<output_dir>/sweeps/`` (``python -m lab sweep``): one line each, linked."""
    items = []
    for doc_path in sorted(base.glob("sweeps/*/sweep.json")):
        try:
            doc = json.loads(doc_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(doc, Mapping) or doc.get("format") != "lab.sweep":
            continue
        rows = doc.get("rows") or []
        ok = sum(1 for r in rows if isinstance(r, Mapping) and r.get("ok"))
        spec = doc.get("spec") or {}
        cluster = doc.get("cluster") or {}
        page = doc_path.parent / "index.html"
        text = (f"{len(rows)} {spec.get('kind', '')} points, {ok} ok, on {cluster.get('workers')} Dask worker(s); "
                f"made {doc.get('created', '')}")
        items.append(f"<li>{_link(page, base, str(spec.get('name') or doc_path.parent.name))}: "
                     f'<span class="note">{escape(text)}</span></li>')
    return f"<h2>Sweeps</h2><ul>{''.join(items)}</ul>" if items else ""


def _findings_table(rows: Sequence[_Row], base: Path) -> str:
    body = []
    for row in rows:
        for key, value in row.metrics:
            num = isinstance(value, (int, float)) and not isinstance(value, bool)
            cls = ' class="num"' if num else ""
            body.append(
                f"<tr><td>{_link(row.notebook.html_path, base, row.notebook.name)}</td><td>{escape(key)}</td>"
                f"<td{cls}>{escape(format_value(value))}</td></tr>"
            )
    if not body:
        return '<p class="note">No notebook wrote findings.</p>'
    return (
        "<table><thead><tr><th>notebook</th><th>metric</th><th>value</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"ran {seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"ran {int(minutes)} min {rest:.0f} s"


def _bytes(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value / 2**30:.1f} GiB"
    return value


def _environment_section(env: Mapping[str, Any]) -> str:
    cores = env.get("cpu_count")
    affinity = env.get("cpu_affinity")
    if cores is not None and affinity is not None and affinity != cores:
        cores_text: Any = f"{cores} ({affinity} usable by this process)"
    else:
        cores_text = cores
    known = [
        ("CPU", env.get("cpu")),
        ("cores", cores_text),
        ("memory", _bytes(env.get("memory_bytes"))),
        ("GPU", env.get("gpu") or "none detected"),
        ("Python", env.get("python")),
        ("platform", env.get("platform")),
        ("host", env.get("hostname")),
    ]
    shown = {"cpu", "cpu_count", "cpu_affinity", "memory_bytes", "gpu", "python", "platform", "hostname", "libraries"}
    extra = [(str(k), v) for k, v in env.items() if k not in shown and _is_scalar(v)]
    rows = [(k, v) for k, v in known if v is not None] + extra
    html = _kv_table(rows, numeric=False)
    libraries = env.get("libraries")
    if isinstance(libraries, Mapping) and libraries:
        lib_rows = "".join(
            f"<tr><td>{escape(str(name))}</td><td>{escape(str(version) if version else 'not installed')}</td></tr>"
            for name, version in libraries.items()
        )
        html += (
            '<h3>Libraries</h3><table class="kv"><thead><tr><th>library</th><th>version</th></tr></thead>'
            f"<tbody>{lib_rows}</tbody></table>"
        )
    return html


def build_index(
    output_dir: str | os.PathLike[str],
    executed: Sequence[ExecutedNotebook],
    *,
    environment: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<output_dir>/index.html``, a self-contained page summarising the executed notebooks.

    For each notebook: its name (linking to its HTML), status (ok, or failed with the
    error), its key findings (see :func:`key_findings`), and links to its findings JSON and
    Chrome trace (which opens in https://ui.perfetto.dev). Then every notebook's figures
    (PNG thumbnails, or links to interactive HTML pages), a table of every key finding
    across notebooks and the environment (CPU, cores, memory, Python, library versions).
    All text is HTML-escaped; links and images are relative to ``output_dir``; the page has
    inline CSS and no scripts; nothing is fetched from elsewhere.

    Args:
        output_dir: Where ``index.html`` goes (created if missing).
        executed: The notebooks, in the order to show them.
        environment: What :func:`lab.env.collect_environment` returns; collected now when None.

    Returns:
        The path of ``index.html``.
    """
    base = Path(output_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    env = dict(environment) if environment is not None else collect_environment()
    rows = [_row(nb) for nb in executed]
    if env.get("gpu") is None:  # collect_environment sees a GPU only where torch is loaded: ask the notebooks
        envs = [r.findings.get("environment") for r in rows if r.findings]
        env["gpu"] = next((e["gpu"] for e in envs if isinstance(e, Mapping) and e.get("gpu")), None)
    made = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    where = ", ".join(str(v) for v in (env.get("hostname"), env.get("platform")) if v)
    failed = [row.notebook.name for row in rows if not row.notebook.ok]
    summary = f"{len(rows)} notebook{'s' if len(rows) != 1 else ''}: {len(rows) - len(failed)} ok, {len(failed)} failed"
    if failed:
        summary += " (" + ", ".join(failed) + ")"
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Inference Lab report</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Inference Lab report</h1>
<div class="meta">made {escape(made)}{" on " + escape(where) if where else ""}</div>
<div class="summary">{escape(summary)}</div>
<h2>Notebooks</h2>
{_notebook_rows(rows, base) if rows else '<p class="note">No notebooks were executed.</p>'}
<p class="note">Traces are Chrome trace JSON: open them in <a href="{PERFETTO_URL}">{PERFETTO_URL}</a>
(drag the file onto the page) or in chrome://tracing.</p>
<h2>Figures</h2>
{_figures_section(rows, base)}
<h2>Findings across notebooks</h2>
{_findings_table(rows, base)}
{_sweeps_section(base)}
<h2>Environment</h2>
{_environment_section(env)}
</body>
</html>
"""
    path = base / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
