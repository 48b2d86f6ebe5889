"""The report: execute every notebook with papermill, export HTML, write ``index.html``.

``build_report`` is what ``python -m lab report`` / ``make report`` run::

    from lab.report import build_report

    report = build_report("notebooks", "reports", quick=True)
    print(report.index_path, report.ok)

Each notebook's page in the report: its executed HTML (plotly figures render offline), its key
findings, its figures as files (static PNG where Chromium exists, interactive HTML otherwise),
its Chrome traces; then a findings table across notebooks and the environment.

Importing this package is cheap: papermill, nbconvert, plotly and kaleido are imported when a
notebook is executed or exported.
"""

from __future__ import annotations

from lab.report.build import Report, build_report, find_notebooks
from lab.report.figures import ExportedFigures, export_figures, find_browser, notebook_figures
from lab.report.index import build_index, format_value, key_findings
from lab.report.notebook import ExecutedNotebook, execute_notebook, export_html, notebook_to_html

__all__ = [
    "ExecutedNotebook",
    "ExportedFigures",
    "Report",
    "build_index",
    "build_report",
    "execute_notebook",
    "export_figures",
    "export_html",
    "find_browser",
    "find_notebooks",
    "format_value",
    "key_findings",
    "notebook_figures",
    "notebook_to_html",
]
