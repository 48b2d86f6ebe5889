"""Widgets: the explorer (controls, Run/Stop, live Gantt, metrics) over ``lab.run``.

Imports ipywidgets (and plotly when drawing); ``import lab`` does not import this package::

    from lab.widgets import Explorer

    explorer = Explorer(lab.RunConfig(model="digits", runtime="simnpu", preset="teaching"))
    explorer.run(wait=True)
    explorer

Controls only edit the :class:`~lab.config.RunConfig` a notebook's parameters build
(:class:`RunControls`); runs happen in a :class:`BackgroundRun` that Stop really stops; what
is drawn is computed in :mod:`lab.widgets.views`.
"""

from __future__ import annotations

from lab.widgets.controls import CONTROLLED_FIELDS, RunControls
from lab.widgets.explorer import Explorer, RenderProbe
from lab.widgets.task import BackgroundRun, StoppableSamples, planned_requests
from lab.widgets.views import (
    ExplorerRun,
    comparison_figure,
    describe_config,
    find_predictor,
    metrics_table,
    predicted_vs_measured,
    timeline_window,
)

__all__ = [
    "CONTROLLED_FIELDS",
    "BackgroundRun",
    "Explorer",
    "ExplorerRun",
    "RenderProbe",
    "RunControls",
    "StoppableSamples",
    "comparison_figure",
    "describe_config",
    "find_predictor",
    "metrics_table",
    "planned_requests",
    "predicted_vs_measured",
    "timeline_window",
]
