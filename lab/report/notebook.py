"""Execute one notebook with papermill and export it to HTML that works offline.

Plotly figures in the exported HTML
-----------------------------------
Inside a papermill kernel plotly's default renderer is ``plotly_mimetype``: a figure is
saved only as ``application/vnd.plotly.v1+json``, a mime type nbconvert's HTML templates do
not render (the page would show nothing, or ``Figure({...})``). Other renderers
(``notebook``, ``notebook_connected``) add ``text/html`` that loads plotly.js from the CDN
or needs require.js. So the export does not trust what the kernel put there: a
preprocessor (``PlotlyOfflinePreprocessor``, built on first use) rewrites every output
holding a plotly figure into the ``text/html`` that :func:`plotly.io.to_html` makes
*without* plotly.js, drops the outputs that only load plotly.js (the ``notebook``
renderer's activation output), and the page template inlines plotly.js **once** in
``<head>`` when the notebook has at least one figure (about 4.8 MB). The template also
leaves out require.js (nothing needs it any more) and loads MathJax (from its CDN) only
when a markdown cell or output contains math. The resulting HTML shows every figure
without network access; the executed ``.ipynb`` is left as the kernel wrote it
(JupyterLab renders the plotly mime type itself).

Widgets in the exported HTML
----------------------------
Rendering saved widget state in a static page needs the widgets' JavaScript from a CDN, so
the export leaves widgets out: an output that carries a widget *and* another representation
(the explorer's output also carries its figure as plotly JSON) shows that representation, a
widget-only output shows its text, and the notebook's saved widget state is not embedded.

Figures as files
----------------
After the HTML export, every plotly figure of the executed notebook is also written to
``<stem>/figures/`` (static PNG where Chromium exists, interactive HTML otherwise; see
:mod:`lab.report.figures`), for the report's index.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, RuntimeUnavailable

__all__ = ["PLOTLY_MIMETYPE", "ExecutedNotebook", "execute_notebook", "export_html", "notebook_to_html"]

logger = logging.getLogger(__name__)

PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
WIDGET_MIMETYPE = "application/vnd.jupyter.widget-view+json"

#: Parameters every notebook receives; callers cannot override them through ``parameters``.
_RESERVED_PARAMETERS = ("output_dir",)

# Markdown that MathJax would typeset: $...$, $$...$$, \(...\), \[...\], \begin{...}.
_MATH_RE = re.compile(r"\$[^$\n]+\$|\\\(|\\\[|\\begin\{")

_TEMPLATE_NAME = "lab_report.html.j2"
_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{#- Inference Lab: no require.js, plotly.js inlined once, MathJax only when there is math. -#}
{%- block html_head_js -%}
{%- if resources.lab_report and resources.lab_report.plotlyjs %}
<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>
<script type="text/javascript">{{ resources.lab_report.plotlyjs }}</script>
{%- endif -%}
{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}
{%- if resources.lab_report and resources.lab_report.mathjax -%}
{{ super() }}
{%- endif -%}
{%- endblock html_head_js_mathjax -%}
"""


@dataclass(frozen=True)
class ExecutedNotebook:
    """What executing one notebook produced.

    Attributes:
        name: The notebook's stem (``latency`` for ``latency.ipynb``).
        notebook_path: The executed copy, ``<output_dir>/<name>/<name>.ipynb``.
        html_path: Its HTML export next to it, or None when the export itself failed.
        findings_path: The ``*.findings.json`` the notebook wrote during this run, or None.
        ok: True when every cell ran without an error.
        error: ``"<ename>: <evalue>"`` of the failure (``CellTimeoutError: ...`` for a cell
            that ran past ``timeout``, ``DeadKernelError: ...`` for a crashed kernel); None
            when ``ok``.
        duration_s: Seconds spent executing (kernel start included, HTML export not).
        source_path: The notebook that was executed.
        figures: Its plotly figures as files in ``<output_dir>/<name>/figures/`` (PNG or HTML).
        figures_note: Why the figures are HTML rather than PNG (or why none were written).
        figure_titles: Each figure's title, as drawn (empty when it has none).
    """

    name: str
    notebook_path: Path
    html_path: Path | None
    findings_path: Path | None
    ok: bool
    error: str | None
    duration_s: float
    source_path: Path | None = None
    figures: tuple[Path, ...] = ()
    figures_note: str | None = None
    figure_titles: tuple[str, ...] = ()

    @property
    def output_dir(self) -> Path:
        """The folder holding the executed notebook, its HTML, findings and trace."""
        return self.notebook_path.parent


def _require(module: str) -> Any:
    """Import an optional dependency of the report, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - the notebooks extra is part of dev installs
        raise RuntimeUnavailable(
            f"the report needs {module} (papermill, nbconvert, plotly): pip install 'inference-lab[notebooks]'"
        ) from exc


def execute_notebook(
    path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    parameters: Mapping[str, Any] | None = None,
    quick: bool = False,
    kernel_name: str | None = "python3",
    timeout: float | None = None,
    figures: bool = True,
    static_figures: bool | None = None,
) -> ExecutedNotebook:
    """Run a notebook with papermill, then export the result to offline-viewable HTML.

    The notebook runs with the parameters ``{"quick": quick, "output_dir":
    "<output_dir>/<stem>", **parameters}`` (``output_dir`` absolute) and with its own folder
    as the working directory, so relative imports and paths behave as in JupyterLab. The
    executed copy goes to ``<output_dir>/<stem>/<stem>.ipynb`` and its HTML next to it.
    A previous run's ``<stem>.findings.json``, ``<stem>*.trace.json`` and ``figures/`` there
    are removed first, so a failed run never shows stale numbers.

    A notebook that raises, times out or kills its kernel is not an exception here: the
    executed notebook (with papermill's error banner) and its HTML are still written, and
    the result has ``ok=False`` and the error. papermill changes the process's working
    directory while the notebook runs, so do not call this from several threads at once.

    Args:
        path: The ``.ipynb`` to execute.
        output_dir: The report folder; the notebook's outputs go to its ``<stem>`` subfolder.
        parameters: Extra notebook parameters (literals), added after ``quick``.
        quick: Passed to the notebook as ``quick`` (small sizes, for tests and smoke runs).
        kernel_name: The Jupyter kernel to run; None uses the notebook's own kernelspec.
        timeout: Seconds one *cell* may run before the execution is stopped; None: no limit.
        figures: Also write the notebook's plotly figures to ``<stem>/figures/``.
        static_figures: PNG (True), interactive HTML (False), or PNG where Chromium and
            Kaleido are available (None); see :func:`lab.report.figures.export_figures`.

    Returns:
        The :class:`ExecutedNotebook`.

    Raises:
        ConfigError: ``path`` is not a notebook file, ``parameters`` sets ``output_dir``,
            ``timeout`` is not positive, or there is no kernel named ``kernel_name``.
        RuntimeUnavailable: papermill / nbconvert are not installed.
    """
    source = Path(path).resolve()
    if source.suffix != ".ipynb" or not source.is_file():
        raise ConfigError(f"expected an existing .ipynb file, got {os.fspath(path)!r}")
    params = dict(parameters or {})
    for key in _RESERVED_PARAMETERS:
        if key in params:
            raise ConfigError(f"parameter {key!r} is set by the report (it is <output_dir>/<notebook stem>)")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds or None, got {timeout!r}")

    papermill = _require("papermill")
    _require("nbconvert")
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    name = source.stem
    nb_dir = (Path(output_dir) / name).resolve()
    nb_dir.mkdir(parents=True, exist_ok=True)
    executed_path = nb_dir / f"{name}.ipynb"
    html_path = nb_dir / f"{name}.html"
    stale = [nb_dir / f"{name}.findings.json", html_path, *nb_dir.glob(f"{glob.escape(name)}*.trace.json")]
    for old in stale:
        old.unlink(missing_ok=True)
    shutil.rmtree(nb_dir / "figures", ignore_errors=True)

    all_parameters = {"quick": bool(quick), "output_dir": str(nb_dir), **params}
    error: str | None = None
    logger.info("executing %s -> %s", source, executed_path)
    started_wall = time.time()
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(executed_path),
            parameters=all_parameters,
            kernel_name=kernel_name,
            cwd=str(source.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            # CurveZMQ-encrypt the kernel's sockets where the kernel supports it (ipykernel >= 7
            # warns about plain TCP otherwise); jupyter_client < 8.10 just logs that it lacks the option.
            config=_kernel_config(),
        )
    except PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}" if exc.evalue else str(exc.ename)
    except (CellTimeoutError, DeadKernelError) as exc:
        error = f"{type(exc).__name__}: {_first_line(exc)}"
    except NoSuchKernel as exc:
        raise ConfigError(f"no Jupyter kernel named {kernel_name!r} (see `jupyter kernelspec list`)") from exc
    duration = time.perf_counter() - started
    if error is not None:
        logger.info("%s failed: %s", name, error)
    if not executed_path.is_file():  # papermill failed before writing anything: keep a copy to look at
        import nbformat

        nbformat.write(nbformat.read(source, as_version=4), executed_path)

    exported: Path | None = html_path
    try:
        export_html(executed_path, html_path)
    except Exception as exc:  # noqa: BLE001 - one bad export must not lose the rest of the report
        logger.exception("exporting %s to HTML failed", executed_path)
        exported = None
        export_error = f"HTML export failed: {type(exc).__name__}: {exc}"
        error = export_error if error is None else f"{error}; {export_error}"

    figure_paths: tuple[Path, ...] = ()
    figure_titles: tuple[str, ...] = ()
    figures_note: str | None = None
    if figures:
        from lab.report.figures import export_figures

        try:
            exported_figures = export_figures(executed_path, nb_dir / "figures", prefix=name, static=static_figures)
        except Exception as exc:  # noqa: BLE001 - figures are an extra: the notebook's result stands
            logger.exception("exporting the figures of %s failed", executed_path)
            figures_note = f"figure export failed: {type(exc).__name__}: {exc}"
        else:
            figure_paths, figures_note = exported_figures.paths, exported_figures.note
            figure_titles = exported_figures.titles

    return ExecutedNotebook(
        name=name,
        notebook_path=executed_path,
        html_path=exported,
        findings_path=_find_findings(nb_dir, name, since=started_wall),
        ok=error is None,
        error=error,
        duration_s=duration,
        source_path=source,
        figures=figure_paths,
        figures_note=figures_note,
        figure_titles=figure_titles,
    )


def _kernel_config() -> Any:
    """Traitlets config for the kernel manager: CurveZMQ where libzmq and the kernelspec support it."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):  # "auto" is refused outright without curve support
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _find_findings(folder: Path, name: str, *, since: float) -> Path | None:
    """``<name>.findings.json``, else the only other findings file written during this run."""
    expected = folder / f"{name}.findings.json"
    if expected.is_file():
        return expected
    fresh = [p for p in sorted(folder.glob("*.findings.json")) if p.stat().st_mtime >= since - 2.0]
    return fresh[0] if len(fresh) == 1 else None


# -- HTML export ----------------------------------------------------------------------------


def _is_plotly_loader(html: str) -> bool:
    """An output that only loads plotly.js (the ``notebook`` renderers' activation output)."""
    return (
        "window.PlotlyConfig" in html
        and "plotly-graph-div" not in html
        and ("plotly.js v" in html or "cdn.plot.ly" in html)
    )


def _joined(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _figure_html(fig: Mapping[str, Any]) -> str:
    import plotly.io as pio

    fig_dict = {key: value for key, value in fig.items() if key != "config"}
    return pio.to_html(
        fig_dict,
        config=dict(fig.get("config") or {}),
        include_plotlyjs=False,
        include_mathjax=False,
        full_html=False,
        validate=False,
        default_width="100%",
        default_height=525,
    )


def _make_preprocessor() -> Any:
    from nbconvert.preprocessors import Preprocessor

    class PlotlyOfflinePreprocessor(Preprocessor):  # type: ignore[misc]
        """Give plotly outputs offline ``text/html``; note whether plotly.js and MathJax are needed."""

        def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            figures = 0
            math = False
            nb.metadata.pop("widgets", None)  # saved widget state would need the widgets' JS from a CDN
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    math = math or bool(_MATH_RE.search(_joined(cell.source)))
                    continue
                if cell.cell_type != "code":
                    continue
                kept = []
                for output in cell.get("outputs", []):
                    data = (
                        output.get("data") if output.get("output_type") in ("display_data", "execute_result") else None
                    )
                    if data is None:
                        kept.append(output)
                        continue
                    if WIDGET_MIMETYPE in data:  # no widget manager offline: show the other representation
                        data.pop(WIDGET_MIMETYPE)
                    if PLOTLY_MIMETYPE in data:
                        data["text/html"] = _figure_html(data[PLOTLY_MIMETYPE])
                        data.pop("application/javascript", None)  # would win over text/html
                        figures += 1
                    elif "text/html" in data and _is_plotly_loader(_joined(data["text/html"])):
                        continue  # plotly.js comes once, from the page head
                    if "text/latex" in data or (
                        "text/markdown" in data and _MATH_RE.search(_joined(data["text/markdown"]))
                    ):
                        math = True
                    kept.append(output)
                cell.outputs = kept
            lab_report = dict(resources.get("lab_report") or {})
            lab_report["mathjax"] = math
            if figures:
                from plotly.offline import get_plotlyjs

                lab_report["plotlyjs"] = get_plotlyjs()
            resources["lab_report"] = lab_report
            return nb, resources

    return PlotlyOfflinePreprocessor()


def notebook_to_html(nb: Any) -> str:
    """Export a notebook node to one HTML page whose plotly figures render offline.

    Args:
        nb: An ``nbformat`` v4 notebook node (it is modified: plotly outputs get ``text/html``).

    Returns:
        The HTML text (JupyterLab look, plotly.js inlined once when there are figures).
    """
    _require("nbconvert")
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        template_file=_TEMPLATE_NAME,
    )
    exporter.register_preprocessor(_make_preprocessor(), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    return str(body)


def export_html(notebook_path: str | os.PathLike[str], html_path: str | os.PathLike[str]) -> Path:
    """Write the HTML export of a notebook file (see :func:`notebook_to_html`).

    Returns:
        ``html_path`` as a :class:`~pathlib.Path`.
    """
    import nbformat

    nb = nbformat.read(os.fspath(notebook_path), as_version=4)
    out = Path(html_path)
    out.write_text(notebook_to_html(nb), encoding="utf-8")
    return out
