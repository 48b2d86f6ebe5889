"""``Explorer``: change a knob, press Run, watch the timeline and the numbers change.

Layout, top to bottom: the :class:`~lab.widgets.RunControls`; Run and Stop buttons, a
progress bar and a status line; the Gantt of the newest run above the previous one on the
same time axis; their metrics side by side; and, when ``lab.analysis`` offers a prediction,
the prediction next to the measurement.

The buttons only call :meth:`Explorer.run` and :meth:`Explorer.stop`; a run is
``lab.run(controls.config)`` in a :class:`~lab.widgets.task.BackgroundRun`, so the kernel stays
responsive and Stop really stops it (no request is issued after Stop). What is drawn comes from
:mod:`lab.widgets.views`.

The Gantt is a ``plotly`` ``FigureWidget``, updated in place, once a frontend has drawn the
explorer: a tiny probe widget inside it sends one message from the browser when it is
rendered (JupyterLab, Notebook 7, VS Code). Until then -- and for good under papermill or
nbconvert, where no browser renders anything -- the figure is drawn into an
``ipywidgets.Output``: a FigureWidget would store plotly.js itself (about 5 MB) in an executed
notebook's widget state. The explorer's display output also carries the figure as plain
plotly JSON, which the report's HTML export renders offline. ``Explorer(..., live=True/False)``
chooses explicitly.
"""

from __future__ import annotations

import json
import logging
import threading
from html import escape
from typing import Any

import ipywidgets as W

from lab.config import RunConfig
from lab.widgets.controls import RunControls
from lab.widgets.task import BackgroundRun
from lab.widgets.views import (
    ExplorerRun,
    comparison_figure,
    find_predictor,
    metrics_table,
    predicted_vs_measured,
)

__all__ = ["Explorer", "RenderProbe"]

logger = logging.getLogger(__name__)

PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"

_TABLE_CSS = (
    "<style>.lab-explorer table.lab-table{border-collapse:collapse;font-size:12px}"
    ".lab-explorer table.lab-table th,.lab-explorer table.lab-table td{padding:2px 10px;"
    "border-bottom:1px solid #d1d9e0;text-align:right;white-space:nowrap}"
    ".lab-explorer table.lab-table th:first-child{text-align:left}"
    ".lab-explorer table.lab-table td.text{text-align:left;white-space:normal;max-width:280px}</style>"
)


_PROBE_ESM = """
function render({ model, el }) {
  el.style.display = "none";
  model.send({ event: "rendered" });
}
export default { render };
"""


def _probe_class() -> type:
    import anywidget

    class RenderProbe(anywidget.AnyWidget):  # type: ignore[misc]
        """An invisible widget whose view tells the kernel it was rendered by a browser."""

        _esm = _PROBE_ESM

    return RenderProbe


def RenderProbe() -> Any:  # noqa: N802 - a factory that reads as the class it makes
    """A new render probe (anywidget is imported on first use)."""
    global _RENDER_PROBE
    if _RENDER_PROBE is None:
        _RENDER_PROBE = _probe_class()
    return _RENDER_PROBE()


_RENDER_PROBE: type | None = None


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:  # counts in a float column (pandas)
            return f"{int(value):,}"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_TEXT_CELL = ' class="text"'  # long text wraps; numbers stay on one line


def _fmt_cell(column: str, value: Any) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if number and column == "error":
        return f"{value:+.1%}"
    if number and column == "new / old":
        return f"x{value:.2f}"
    return _fmt(value)


def _html_table(frame: Any, caption: str) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in [frame.index.name or "", *frame.columns])
    rows = []
    for name, row in frame.iterrows():
        cells = "".join(
            f"<td{_TEXT_CELL if isinstance(v, str) and len(v) > 24 else ''}>{escape(_fmt_cell(str(c), v))}</td>"
            for c, v in zip(frame.columns, row.tolist(), strict=True))
        rows.append(f"<tr><th>{escape(str(name))}</th>{cells}</tr>")
    return (f'{_TABLE_CSS}<table class="lab-table"><caption style="text-align:left"><b>{escape(caption)}</b>'
            f"</caption><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


class Explorer:
    """Controls, Run/Stop, progress, a live Gantt of two runs, their metrics (module docstring).

    Example::

        explorer = Explorer(lab.RunConfig(model="digits", runtime="simnpu", preset="teaching"))
        explorer.run(wait=True)      # or press Run
        explorer                     # display it

    Args:
        config: the starting config (``RunConfig()`` when None).
        timeline_requests: measured requests drawn per run in the Gantt.
        live: a ``FigureWidget`` from the start (True), never (False), or once a frontend has
            rendered the explorer (None; see the module docstring).
        workload: a workload to reuse across runs whose ``model`` matches its name.

    Attributes:
        controls: the :class:`RunControls` (``explorer.controls.config`` is what Run runs).
        runs: every finished run, oldest first.
        task: the current or last :class:`BackgroundRun`, or None before the first run.
        widget: the explorer's root widget (``display(explorer)`` shows it).
        probe: the :class:`RenderProbe` (None with an explicit ``live``).
    """

    def __init__(self, config: RunConfig | None = None, *, timeline_requests: int = 16, live: bool | None = None,
                 workload: Any = None) -> None:
        self.controls = RunControls(config)
        self.timeline_requests = timeline_requests
        self.live = bool(live)
        self.runs: list[ExplorerRun] = []
        self.task: BackgroundRun | None = None
        self.figure: Any = None  # the last plotly go.Figure drawn
        self._workload = workload
        self._lock = threading.Lock()
        self._draw_lock = threading.RLock()

        self.run_button = W.Button(description="Run", button_style="primary", icon="play",
                                   tooltip="run the configuration above")
        self.stop_button = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True,
                                    tooltip="issue no further request")
        self.run_button.add_class("lab-explorer-run")
        self.stop_button.add_class("lab-explorer-stop")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="240px"))
        self.progress.add_class("lab-explorer-progress")
        self.status = W.HTML(value="ready: press Run", layout=W.Layout(margin="0 0 0 8px"))
        self.status.add_class("lab-explorer-status")
        self.run_button.on_click(lambda _button: self.run())
        self.stop_button.on_click(lambda _button: self.stop())
        self.controls.on_change(lambda config, error: self._show_config_state(error))

        self.figure_view: W.Widget = self._new_figure_widget() if self.live else W.Output()
        self.figure_view.add_class("lab-explorer-figure")
        self.figure_box = W.VBox([self.figure_view], layout=W.Layout(width="100%"))
        self.metrics_view = W.HTML(value="")
        self.metrics_view.add_class("lab-explorer-metrics")
        self.prediction_view = W.HTML(value="")
        self.prediction_view.add_class("lab-explorer-prediction")
        self.prediction_view.layout = W.Layout(margin="0 0 0 24px")
        buttons = W.HBox([self.run_button, self.stop_button, self.progress, self.status],
                         layout=W.Layout(align_items="center"))
        children = [self.controls.box, buttons, self.figure_box, W.HBox([self.metrics_view, self.prediction_view])]
        self.probe: Any = None
        if live is None:
            self.probe = RenderProbe()
            self.probe.on_msg(self._on_probe)
            children.append(self.probe)
        self.widget = W.VBox(children)
        self.widget.add_class("lab-explorer")
        self.widget.add_class("lab-explorer-live" if self.live else "lab-explorer-static")

    # -- actions (what the buttons call) -------------------------------------------------
    @property
    def config(self) -> RunConfig:
        """What Run runs: the controls' config."""
        return self.controls.config

    @property
    def result(self) -> Any:
        """The newest finished run's :class:`~lab.runners.RunResult` (None before the first)."""
        return self.runs[-1].result if self.runs else None

    def run(self, *, wait: bool = False, timeout: float | None = None) -> BackgroundRun:
        """Run :attr:`config` in the background; with ``wait``, block until it has been drawn.

        A run already under way is stopped first. Returns the run's :class:`BackgroundRun`.

        Raises:
            ConfigError: the controls hold an invalid combination.
            Exception: with ``wait``, the error of a run that failed (the status line shows it too).
        """
        from lab.errors import ConfigError

        if self.controls.error is not None:
            raise ConfigError(self.controls.error)
        with self._lock:
            previous = self.task
            if previous is not None and previous.is_running:
                previous.stop()
                previous.wait()
            config = self.controls.config
            workload = self._workload if getattr(self._workload, "name", None) == config.model else None
            task = BackgroundRun(config, workload=workload, on_progress=self._show_progress, on_done=self._finish)
            self.task = task
            self.progress.max = task.total
            self.progress.value = 0
            self.progress.bar_style = ""
            self.status.value = f"running {escape(ExplorerRun(len(self.runs) + 1, config, None).label)} ..."
            self.run_button.disabled = True
            self.stop_button.disabled = False
            task.start()
        if wait:
            task.wait(timeout)
            if task.state == "failed" and task.error is not None:
                raise task.error
        return task

    def stop(self) -> None:
        """Stop the run under way (no further request is issued); nothing happens when idle."""
        task = self.task
        if task is not None and task.is_running:
            self.status.value = "stopping ..."  # before stop(): the run's end writes the final status
            task.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run has ended and been drawn; False on timeout."""
        return True if self.task is None else self.task.wait(timeout)

    # -- rendering (called from the run's thread) ----------------------------------------
    def _show_progress(self, issued: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = issued

    def _show_config_state(self, error: str | None) -> None:
        busy = self.task is not None and self.task.is_running
        self.run_button.disabled = busy or error is not None

    def _finish(self, task: BackgroundRun) -> None:
        self.stop_button.disabled = True
        self.run_button.disabled = self.controls.error is not None
        if task.state != "done":
            self.progress.bar_style = "warning" if task.state == "stopped" else "danger"
            what = "stopped" if task.state == "stopped" else "failed"
            reason = f"{type(task.error).__name__}: {task.error}" if task.error is not None else ""
            self.status.value = (f"{what} after {task.elapsed_s:.1f} s, {task.issued:,} of {task.total:,} requests "
                                 f"issued ({escape(reason)}); the figure shows the last finished runs")
            return
        run = ExplorerRun(len(self.runs) + 1, task.config, task.result)
        self.runs.append(run)
        self.progress.bar_style = "success"
        self.render()
        m = run.result.metrics
        self.status.value = (f"{escape(run.label)}: {m.throughput_rps:,.0f} req/s, "
                             f"p50 {m.latency_ns['p50'] / 1e6:.2f} ms, {m.errors} errors ({task.elapsed_s:.1f} s)")

    def _new_figure_widget(self) -> Any:
        import plotly.graph_objects as go

        return go.FigureWidget()

    def _on_probe(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "rendered":
            self.go_live()

    def go_live(self) -> None:
        """Swap the static figure for a ``FigureWidget`` (what a rendered explorer does itself)."""
        with self._draw_lock:
            if self.live:
                return
            old = self.figure_view
            fw = self._new_figure_widget()
            fw.add_class("lab-explorer-figure")
            self.figure_view = fw
            self.live = True
            if self.figure is not None:
                self._draw(self.figure)
            self.figure_box.children = (fw,)
            old.close()
            self.widget.remove_class("lab-explorer-static")
            self.widget.add_class("lab-explorer-live")

    def _draw(self, fig: Any) -> None:
        if self.live:
            fw = self.figure_view
            fw.data = ()
            fw.add_traces(list(fig.data))
            fw.layout = fig.layout
        else:
            self.figure_view.outputs = ({"output_type": "display_data", "metadata": {},
                                         "data": _figure_bundle(fig)},)

    def render(self) -> None:
        """Draw the newest runs: the Gantt, the metrics table and, when available, the prediction."""
        if not self.runs:
            return
        fig = comparison_figure(self.runs, timeline_requests=self.timeline_requests)
        with self._draw_lock:
            self.figure = fig
            self._draw(fig)
        self.metrics_view.value = _html_table(metrics_table(self.runs), "Measured (newest run first)")
        predictor = find_predictor()
        table = predicted_vs_measured(self.runs[-1], predictor) if predictor is not None else None
        self.prediction_view.value = (
            "" if table is None else _html_table(table, f"Predicted vs measured ({self.runs[-1].label})"))

    # -- display ---------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        # frontends pick the widget; exports without widget state fall back to these
        data["text/plain"] = self.summary()
        if self.figure is not None:
            data.update(_figure_bundle(self.figure))
            data["text/plain"] = self.summary()
        return (data, metadata) if metadata else data

    def summary(self) -> str:
        """The newest runs in a few lines of text."""
        if not self.runs:
            return "Explorer: no run yet (press Run)"
        return "\n\n".join(f"{r.label}\n{r.result.summary()}" for r in self.runs[-2:][::-1])

    def __repr__(self) -> str:
        return f"Explorer(config={self.config!r}, runs={len(self.runs)})"


def _figure_bundle(fig: Any) -> dict[str, Any]:
    """A figure as a plain plotly mime bundle (JSON-safe, no widget)."""
    import plotly.io as pio

    return {PLOTLY_MIMETYPE: json.loads(pio.to_json(fig, validate=False)),
            "text/plain": f"<Figure: {fig.layout.title.text}>"}
