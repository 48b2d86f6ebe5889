"""lab.report: execute notebooks with papermill, export offline HTML, write index.html."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from lab.errors import ConfigError
from lab.findings import save_findings
from lab.report import (
    ExecutedNotebook,
    Report,
    build_index,
    build_report,
    execute_notebook,
    export_figures,
    find_browser,
    format_value,
    key_findings,
    notebook_figures,
    notebook_to_html,
)

DATA = Path(__file__).parent / "data" / "report"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PERFETTO = "https://ui.perfetto.dev"


class _Links(HTMLParser):
    """Collects href/src attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key == "href" and value is not None:
                self.hrefs.append(value)
            elif key == "src" and value is not None:
                self.srcs.append(value)


def _links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    out = tmp_path_factory.mktemp("reports")
    return build_report(DATA, out, quick=True, parameters={"good": {"scale": 3}}, progress=False, timeout=120)


# -- the whole pipeline over tests/data/report ------------------------------------------------


@pytest.mark.notebook
def test_report_runs_every_notebook_and_records_the_failure(report: Report) -> None:
    assert [nb.name for nb in report.notebooks] == ["failing", "good"]
    assert not report.ok
    failing, good = report.notebooks
    assert good.ok and good.error is None
    assert not failing.ok
    assert failing.error == "ValueError: deliberate failure <for the report test>"
    assert failing.findings_path is None
    # the executed notebook (with papermill's error banner) and its HTML are still written
    assert failing.notebook_path.is_file()
    assert failing.html_path is not None and failing.html_path.is_file()
    assert "An Exception was encountered" in failing.html_path.read_text(encoding="utf-8")
    assert good.duration_s > 0


@pytest.mark.notebook
def test_notebooks_get_quick_output_dir_and_extra_parameters(report: Report) -> None:
    good = report.notebooks[1]
    assert good.notebook_path == report.index_path.parent / "good" / "good.ipynb"
    assert good.findings_path == good.notebook_path.parent / "good.findings.json"
    doc = json.loads(good.findings_path.read_text(encoding="utf-8"))
    assert doc["parameters"] == {"quick": True, "scale": 3}
    assert doc["metrics"]["headline"]["quick"] is True
    assert (good.notebook_path.parent / doc["trace"]).is_file()


@pytest.mark.notebook
def test_index_lists_notebooks_with_findings_and_errors(report: Report) -> None:
    html = report.index_path.read_text(encoding="utf-8")
    assert report.index_path.name == "index.html"
    assert "<title>Inference Lab report</title>" in html
    for name in ("failing", "good"):
        assert f">{name}</a>" in html
    # headline values, formatted
    assert "throughput_rps" in html and "1,234.6" in html
    assert "p50_ms" in html and "0.01235" in html
    # the failure, escaped
    assert "failed" in html
    assert "ValueError: deliberate failure &lt;for the report test&gt;" in html
    assert "<for the report test>" not in html
    assert PERFETTO in html
    assert "Libraries" in html and "plotly" in html


@pytest.mark.notebook
def test_index_links_are_relative_and_resolve(report: Report) -> None:
    page = _links(report.index_path.read_text(encoding="utf-8"))
    # nothing fetched from elsewhere: the only sources are the figures' PNGs next to the page
    for src in page.srcs:
        assert src.endswith(".png") and not urlsplit(src).scheme and not src.startswith("/"), src
        assert (report.index_path.parent / unquote(src)).is_file(), src
    local = [h for h in page.hrefs if not h.startswith(PERFETTO) and not h.startswith("#")]
    assert {"good/good.html", "failing/failing.html", "good/good.findings.json", "good/good.trace.json"} <= set(local)
    for href in local:
        parts = urlsplit(href)
        assert not parts.scheme and not parts.netloc and not href.startswith("/"), href
        assert (report.index_path.parent / unquote(parts.path)).is_file(), href


@pytest.mark.notebook
def test_notebook_html_shows_the_plotly_figure_offline(report: Report) -> None:
    good = report.notebooks[1]
    assert good.html_path is not None
    html = good.html_path.read_text(encoding="utf-8")
    assert html.count('class="plotly-graph-div"') == 1
    assert "Plotly.newPlot" in html and "report-test-figure" in html
    assert html.count(_plotlyjs()) == 1  # plotly.js inlined, once
    # nothing is fetched from the network when the page is opened (no require.js, MathJax, CDN)
    assert _links(html).srcs == []
    assert html.index(_plotlyjs()) < html.index("Plotly.newPlot")
    # the failing notebook has no figure, so no plotly.js either
    assert report.notebooks[0].html_path is not None
    assert "Plotly" not in report.notebooks[0].html_path.read_text(encoding="utf-8")


@pytest.mark.notebook
def test_a_cell_past_the_timeout_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("import time\ntime.sleep(60)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "sleepy.ipynb"
    nbformat.write(nb, path)
    result = execute_notebook(path, tmp_path / "out", timeout=1)
    assert not result.ok
    assert result.error is not None and result.error.startswith("CellTimeoutError")
    assert result.notebook_path.is_file()
    assert result.html_path is not None and result.html_path.is_file()


# -- argument checking (no kernel) ------------------------------------------------------------


def test_empty_or_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no notebooks"):
        build_report(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        build_report(tmp_path / "missing", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_only_or_parameters_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'nope'"):
        build_report(DATA, tmp_path, only=["good", "nope"], progress=False)
    with pytest.raises(ConfigError, match="'nope'"):
        build_report(DATA, tmp_path, parameters={"nope": {"x": 1}}, progress=False)
    assert not list(tmp_path.iterdir())


def test_execute_notebook_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ipynb"):
        execute_notebook(tmp_path / "missing.ipynb", tmp_path)
    notebook = tmp_path / "good.ipynb"
    shutil.copy(DATA / "good.ipynb", notebook)
    with pytest.raises(ConfigError, match="output_dir"):
        execute_notebook(notebook, tmp_path, parameters={"output_dir": "elsewhere"})
    with pytest.raises(ConfigError, match="timeout"):
        execute_notebook(notebook, tmp_path, timeout=0)


# -- index and HTML export on synthetic inputs (no kernel) --------------------------------------


def test_format_value() -> None:
    assert format_value(1234.5678) == "1,234.6"
    assert format_value(3.14159) == "3.142"
    assert format_value(0.0123456) == "0.01235"
    assert format_value(1.5e-7) == "1.500e-07"
    assert format_value(12345) == "12,345"
    assert format_value(0.0) == "0"
    assert format_value(True) == "yes"
    assert format_value(None) == "n/a"
    assert format_value("x" * 200).endswith("\u2026")


def test_key_findings_prefers_headline_else_first_scalars() -> None:
    assert key_findings({"headline": {"a": 1, "b": 2.5}, "c": 3}) == [("a", 1), ("b", 2.5)]
    metrics = {"series": [1, 2], "nested": {"x": 1}, **{f"m{i}": i for i in range(10)}}
    assert key_findings(metrics) == [(f"m{i}", i) for i in range(8)]


def test_build_index_escapes_and_tolerates_missing_files(tmp_path: Path) -> None:
    nb_dir = tmp_path / "evil"
    findings = save_findings(
        nb_dir,
        name="evil",
        metrics={"<b>bold</b>": 1.0, "series": [1, 2, 3]},
        environment={"cpu": "<cpu>", "cpu_count": 4, "python": "3.x", "libraries": {"numpy": "2"}},
    )
    (nb_dir / "evil.sync.trace.json").write_text('{"traceEvents": []}', encoding="utf-8")
    executed = [
        ExecutedNotebook(
            name="evil<script>",
            notebook_path=nb_dir / "evil.ipynb",  # never written: shown without a link
            html_path=None,
            findings_path=Path(findings),
            ok=False,
            error='boom "<img src=x>"',
            duration_s=75.0,
        )
    ]
    index = build_index(tmp_path, executed, environment={"cpu": "<cpu>", "cpu_count": 4, "libraries": {}})
    html = index.read_text(encoding="utf-8")
    assert "<script" not in html and "<img" not in html and "<b>bold" not in html
    assert "evil&lt;script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html and "&lt;cpu&gt;" in html
    assert "ran 1 min 15 s" in html
    assert 'href="evil/evil.findings.json"' in html
    assert (
        '<a href="evil/evil.sync.trace.json"' in html and ">trace: evil.sync</a>" in html
    )  # the name differs from the file stem here
    assert "notebook (.ipynb)" in html and 'href="evil/evil.ipynb"' not in html


def test_html_export_inlines_plotly_once_and_drops_plotly_loaders() -> None:
    import plotly.graph_objects as go
    import plotly.io as pio
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    bundle = json.loads(pio.to_json(fig))
    # what the ``notebook`` renderer leaves: an activation output that inlines plotly.js, and
    # figures with plotly's own text/html next to the plotly mime type
    loader_html = f"<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script><script>{_plotlyjs()}</script>"
    figure_outputs = [
        new_output(
            "display_data",
            data={"application/vnd.plotly.v1+json": bundle, "text/html": "<div>renderer-html-to-replace</div>"},
        )
        for _ in range(2)
    ]
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Figures"),
            new_code_cell("fig.show()", outputs=[new_output("display_data", data={"text/html": loader_html})]),
            new_code_cell("fig.show(); fig.show()", outputs=figure_outputs),
        ]
    )
    html = notebook_to_html(nb)
    assert html.count(_plotlyjs()) == 1
    assert html.count('class="plotly-graph-div"') == 2
    assert "renderer-html-to-replace" not in html
    assert _links(html).srcs == []


def test_html_export_loads_mathjax_only_for_math() -> None:
    from nbformat.v4 import new_markdown_cell, new_notebook

    plain = notebook_to_html(new_notebook(cells=[new_markdown_cell("# No math here, costs $5")]))
    assert not re.search(r"<script[^>]+src=", plain)
    maths = notebook_to_html(new_notebook(cells=[new_markdown_cell(r"Latency $t = \frac{n}{r}$")]))
    assert "mathjax" in maths.lower() and re.search(r"<script[^>]+src=", maths)


def test_importing_lab_report_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, lab.report; print([m for m in ('papermill', 'nbconvert', 'plotly') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]"


# -- figures as files, widgets in exports, sweeps, the quickstart --------------------------------


def _png_possible() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return find_browser() is not None


@pytest.mark.notebook
def test_each_notebooks_figures_are_files_shown_in_the_index(report: Report) -> None:
    failing, good = report.notebooks
    assert failing.figures == ()
    assert len(good.figures) == 1 and good.figures[0].is_file()
    assert good.figures[0].parent == good.output_dir / "figures"
    html = report.index_path.read_text(encoding="utf-8")
    assert '<h2>Figures</h2>' in html and 'href="#figures-good"' in html and 'id="figures-good"' in html
    assert good.figure_titles == ("report-test-figure",) and "figure 1: report-test-figure" in html
    if _png_possible():  # Chromium here: a static PNG, shown as a thumbnail
        assert good.figures[0].name == "good-fig1.png" and good.figures_note is None
        assert good.figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert '<img src="good/figures/good-fig1.png"' in html
    else:  # no Chromium: an interactive page, linked
        assert good.figures[0].suffix == ".html" and good.figures_note
        assert 'href="good/figures/good-fig1.html"' in html


def _figure_notebook(path: Path, count: int) -> Path:
    import nbformat
    import plotly.graph_objects as go
    import plotly.io as pio
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    outputs = [new_output("display_data", data={"application/vnd.plotly.v1+json": json.loads(pio.to_json(
        go.Figure(go.Bar(x=[1, 2], y=[i, 2 * i]), layout={"title": f"fig {i}", "height": 300})))})
        for i in range(count)]
    nbformat.write(new_notebook(cells=[new_code_cell("figs", outputs=outputs)]), path)
    return path


def test_export_figures_writes_interactive_html_offline(tmp_path: Path) -> None:
    nb = _figure_notebook(tmp_path / "two.ipynb", 2)
    out = export_figures(nb, tmp_path / "figs", prefix="two", static=False)
    assert out.kind == "html" and [p.name for p in out.paths] == ["two-fig1.html", "two-fig2.html"]
    assert out.titles == ("fig 0", "fig 1")
    page = out.paths[0].read_text(encoding="utf-8")
    assert '<script src="plotly.min.js"' in page.replace("charset=\"utf-8\" ", "")  # one shared local copy
    assert (tmp_path / "figs" / "plotly.min.js").is_file()
    none = export_figures(_figure_notebook(tmp_path / "none.ipynb", 0), tmp_path / "nofigs", prefix="none")
    assert none.kind == "none" and none.paths == () and not (tmp_path / "nofigs").exists()


def test_export_figures_falls_back_to_html_without_a_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))
    assert find_browser() is None
    nb = _figure_notebook(tmp_path / "one.ipynb", 1)
    out = export_figures(nb, tmp_path / "figs", prefix="one")
    assert out.kind == "html" and out.note and ("Chromium" in out.note or "Kaleido" in out.note)
    with pytest.raises(RuntimeError):
        export_figures(nb, tmp_path / "figs2", prefix="one", static=True)


@pytest.mark.skipif(not _png_possible(), reason="needs Kaleido and Chromium")
def test_export_figures_writes_png_with_chromium(tmp_path: Path) -> None:
    out = export_figures(_figure_notebook(tmp_path / "two.ipynb", 2), tmp_path / "figs", prefix="two", static=True)
    assert out.kind == "png" and len(out.paths) == 2
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000 for p in out.paths)


def test_html_export_shows_a_widgets_fallback_not_the_widget() -> None:
    import plotly.graph_objects as go
    import plotly.io as pio
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    fig = json.loads(pio.to_json(go.Figure(go.Bar(x=[1], y=[1]), layout={"title": "widget-fallback-figure"})))
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb = new_notebook(cells=[
        new_code_cell("explorer", outputs=[new_output("execute_result", execution_count=1, data={
            "application/vnd.jupyter.widget-view+json": view, "application/vnd.plotly.v1+json": fig,
            "text/plain": "Explorer"})]),
        new_code_cell("slider", outputs=[new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": view, "text/plain": "IntSlider(value=3)"})]),
    ])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                            "version_minor": 0}}
    html = notebook_to_html(nb)
    assert "widget-fallback-figure" in html and html.count('class="plotly-graph-div"') == 1
    assert "IntSlider(value=3)" in html
    assert "widget-view+json" not in html and "widget-state+json" not in html
    assert _links(html).srcs == []  # no widget manager from a CDN


def test_notebook_figures_reads_plotly_outputs_in_order() -> None:
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook(cells=[new_markdown_cell("x"), new_code_cell("a", outputs=[
        new_output("stream", name="stdout", text="hi"),
        new_output("display_data", data={"application/vnd.plotly.v1+json": {"data": [], "layout": {"title": "A"}}}),
        new_output("execute_result", execution_count=1,
                   data={"application/vnd.plotly.v1+json": {"data": [{"type": "bar"}]}})])])
    figs = notebook_figures(nb)
    assert [f["layout"].get("title") for f in figs] == ["A", None] and figs[1]["data"] == [{"type": "bar"}]


def test_index_lists_sweeps_written_under_the_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "grid-a"
    sweep.mkdir(parents=True)
    (sweep / "index.html").write_text("<html></html>", encoding="utf-8")
    (sweep / "sweep.json").write_text(json.dumps({
        "format": "lab.sweep", "version": 1, "created": "2026-01-01T00:00:00+00:00",
        "spec": {"name": "grid-a", "kind": "bench"}, "cluster": {"workers": 2},
        "rows": [{"ok": True}, {"ok": False}]}), encoding="utf-8")
    (tmp_path / "sweeps" / "junk").mkdir()
    (tmp_path / "sweeps" / "junk" / "sweep.json").write_text("not json", encoding="utf-8")
    html = build_index(tmp_path, [], environment={"cpu": "x"}).read_text(encoding="utf-8")
    assert "<h2>Sweeps</h2>" in html and '<a href="sweeps/grid-a/index.html">grid-a</a>' in html
    assert "2 bench points, 1 ok, on 2 Dask worker(s)" in html


@pytest.mark.notebook
def test_the_report_runs_the_quickstart_with_findings_and_its_figure(tmp_path: Path) -> None:
    report = build_report(NOTEBOOKS, tmp_path, quick=True, only=["00_quickstart"], progress=False, timeout=300,
                          parameters={"00_quickstart": {"requests": 30}})
    (nb,) = report.notebooks
    assert nb.ok, nb.error
    assert nb.findings_path is not None and len(nb.figures) == 1
    html = report.index_path.read_text(encoding="utf-8")
    assert ">00_quickstart</a>" in html and "throughput_rps" in html and "1 notebook: 1 ok, 0 failed" in html
    page = nb.html_path.read_text(encoding="utf-8") if nb.html_path else ""
    assert "Timeline of run 1" in page and "widget-state+json" not in page
    assert nb.notebook_path.stat().st_size < 1_000_000
