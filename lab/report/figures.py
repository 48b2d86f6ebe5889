"""A notebook's plotly figures as files: static PNG where Chromium exists, interactive HTML otherwise.

The report shows every figure a notebook drew next to its findings. The figures are read
back from the *executed* notebook (outputs holding ``application/vnd.plotly.v1+json``, which
is what plotly saves in a kernel, and what the explorer widget's output carries), so nothing
is re-run. PNG export uses Kaleido (``pip install kaleido``), which drives a Chromium-based
browser it finds on ``PATH`` (Debian's ``chromium``) or at ``$BROWSER_PATH``; all of a
notebook's figures go through one browser start. Without Kaleido or a browser -- or when
the export fails -- each figure is written as a standalone interactive HTML page instead,
next to one shared copy of plotly.js (offline; no CDN).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BROWSER_NAMES",
    "FIGURE_WIDTH_PX",
    "ExportedFigures",
    "export_figures",
    "find_browser",
    "notebook_figures",
]

logger = logging.getLogger(__name__)

PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"

#: Executables searched on ``PATH`` for PNG export (``$BROWSER_PATH`` wins when set).
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

#: Width of exported PNGs, in CSS pixels (heights come from each figure's layout).
FIGURE_WIDTH_PX = 1100
_DEFAULT_HEIGHT_PX = 500
_PNG_SCALE = 1.0


@dataclass(frozen=True)
class ExportedFigures:
    """What :func:`export_figures` wrote.

    Attributes:
        paths: One file per figure, in notebook order (``.png`` or ``.html``).
        kind: ``"png"``, ``"html"``, or ``"none"`` when the notebook drew no figure.
        titles: Each figure's title (empty when it has none).
        note: Why the figures are HTML rather than PNG, when they are; else None.
    """

    paths: tuple[Path, ...]
    kind: str
    titles: tuple[str, ...] = ()
    note: str | None = None


def find_browser() -> str | None:
    """The Chromium-based browser Kaleido would use: ``$BROWSER_PATH``, else the first of
    :data:`BROWSER_NAMES` on ``PATH``; None when there is none."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def notebook_figures(nb: Any) -> list[dict[str, Any]]:
    """Every plotly figure in a notebook's outputs, in order, as plotly figure dicts."""
    figures = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            fig = output.get("data", {}).get(PLOTLY_MIMETYPE)
            if isinstance(fig, dict) and ("data" in fig or "layout" in fig):
                figures.append({"data": fig.get("data", []), "layout": fig.get("layout", {})})
    return figures


def _title(fig: dict[str, Any]) -> str:
    title = fig.get("layout", {}).get("title")
    if isinstance(title, dict):
        title = title.get("text")
    return str(title) if title else ""


def _height(fig: dict[str, Any]) -> int:
    height = fig.get("layout", {}).get("height")
    return int(height) if isinstance(height, (int, float)) and height > 0 else _DEFAULT_HEIGHT_PX


def _write_png(figures: Sequence[dict[str, Any]], paths: Sequence[Path]) -> None:
    import plotly.io as pio

    pio.write_images(
        list(figures),
        [str(p) for p in paths],
        format="png",
        width=FIGURE_WIDTH_PX,
        height=[_height(f) for f in figures],
        scale=_PNG_SCALE,
        validate=False,
    )


def _write_html(figures: Sequence[dict[str, Any]], paths: Sequence[Path]) -> None:
    import plotly.io as pio

    for fig, path in zip(figures, paths, strict=True):
        # "directory": the page loads plotly.min.js from its own folder (copied there once)
        pio.write_html(fig, str(path), include_plotlyjs="directory", full_html=True, validate=False,
                       default_width="100%", default_height=_height(fig))


def export_figures(
    notebook_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    prefix: str,
    static: bool | None = None,
) -> ExportedFigures:
    """Write the plotly figures of an executed notebook to ``out_dir`` (see the module docstring).

    Files are ``<prefix>-fig<N>.png`` (or ``.html``), N from 1. ``out_dir`` is created only
    when there is a figure.

    Args:
        notebook_path: The executed ``.ipynb``.
        out_dir: Where the files go.
        prefix: The start of every file name (the notebook's stem).
        static: True: PNG (an export failure is an error); False: interactive HTML; None:
            PNG when Kaleido and a browser are available and the export works, else HTML.

    Returns:
        The :class:`ExportedFigures`.

    Raises:
        RuntimeError: ``static=True`` and the PNG export is impossible or failed.
    """
    import nbformat

    nb = nbformat.read(os.fspath(notebook_path), as_version=4)
    figures = notebook_figures(nb)
    titles = tuple(_title(f) for f in figures)
    if not figures:
        return ExportedFigures(paths=(), kind="none")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note: str | None = None
    if static is not False:
        browser = find_browser()
        try:
            import kaleido  # noqa: F401 - probe only: plotly calls it
        except ImportError:
            note = "static PNG needs Kaleido: pip install kaleido"
        else:
            if browser is None:
                note = f"static PNG needs Chromium (none of {', '.join(BROWSER_NAMES)} on PATH, no $BROWSER_PATH)"
        if note is None:
            paths = [out / f"{prefix}-fig{i}.png" for i in range(1, len(figures) + 1)]
            try:
                _write_png(figures, paths)
            except Exception as exc:  # noqa: BLE001 - fall back to HTML; the reason goes in the report
                note = f"PNG export failed ({type(exc).__name__}: {exc}); figures written as HTML"
                logger.warning("%s: %s", notebook_path, note)
                for p in paths:
                    p.unlink(missing_ok=True)
            else:
                return ExportedFigures(paths=tuple(paths), kind="png", titles=titles)
        if static:
            raise RuntimeError(note)
    paths = [out / f"{prefix}-fig{i}.html" for i in range(1, len(figures) + 1)]
    _write_html(figures, paths)
    return ExportedFigures(paths=tuple(paths), kind="html", titles=titles, note=note or "interactive HTML requested")
