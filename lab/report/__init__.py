"""The report: execute every notebook with papermill, export HTML, write ``index.html``.

``build_report`` is what ``python -m lab report`` / ``make report`` run::

    from lab.report import build_report

    report = build_report("notebooks", "reports", quick=True)
    print(report.index_path, report.ok)

Importing this package is cheap: papermill, nbconvert and plotly are imported when a
notebook is executed or exported.
"""

from __future__ import annotations

from lab.report.build import Report, build_report, find_notebooks
from lab.report.index import build_index, format_value, key_findings
from lab.report.notebook import ExecutedNotebook, execute_notebook, export_html, notebook_to_html

__all__ = [
    "ExecutedNotebook",
    "Report",
    "build_index",
    "build_report",
    "execute_notebook",
    "export_html",
    "find_notebooks",
    "format_value",
    "key_findings",
    "notebook_to_html",
]
