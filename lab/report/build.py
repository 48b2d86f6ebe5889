"""``build_report``: execute every notebook of a folder and write ``index.html``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.report.index import build_index
from lab.report.notebook import ExecutedNotebook, execute_notebook

__all__ = ["Report", "build_report", "find_notebooks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """What :func:`build_report` produced.

    Attributes:
        index_path: The ``index.html`` written.
        notebooks: One :class:`ExecutedNotebook` per executed notebook, in execution order.
    """

    index_path: Path
    notebooks: tuple[ExecutedNotebook, ...]

    @property
    def ok(self) -> bool:
        """True when every notebook ran without an error (a CLI exits non-zero otherwise)."""
        return all(nb.ok for nb in self.notebooks)

    @property
    def failed(self) -> tuple[ExecutedNotebook, ...]:
        """The notebooks that did not run through."""
        return tuple(nb for nb in self.notebooks if not nb.ok)


def find_notebooks(notebooks_dir: str | os.PathLike[str]) -> list[Path]:
    """The ``*.ipynb`` directly in ``notebooks_dir``, sorted by name (hidden files skipped).

    Raises:
        ConfigError: ``notebooks_dir`` is not a folder.
    """
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise ConfigError(f"notebooks folder {os.fspath(notebooks_dir)!r} does not exist")
    return sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))


def _progress(items: list[Path], enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=len(items), desc="notebooks", unit="nb")


def build_report(
    notebooks_dir: str | os.PathLike[str] = "notebooks",
    output_dir: str | os.PathLike[str] = "reports",
    *,
    quick: bool = False,
    only: Iterable[str] | None = None,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    kernel_name: str | None = "python3",
    timeout: float | None = None,
    figures: bool = True,
    static_figures: bool | None = None,
) -> Report:
    """Execute every notebook in ``notebooks_dir`` and write ``<output_dir>/index.html``.

    Notebooks run one after another in name order (see :func:`execute_notebook`); each
    writes to ``<output_dir>/<stem>/``. A notebook that fails does not stop the others: the
    index shows it as failed and :attr:`Report.ok` is False.

    Args:
        notebooks_dir: The folder whose ``*.ipynb`` are executed (not recursive).
        output_dir: The report folder.
        quick: Run the notebooks with ``quick=True`` (small sizes).
        only: Notebook stems to run; None or empty: all of them.
        parameters: Extra parameters per notebook stem, e.g. ``{"latency": {"batch": 8}}``.
        progress: Show a tqdm progress bar over the notebooks.
        kernel_name: The Jupyter kernel; None uses each notebook's own kernelspec.
        timeout: Seconds one cell may run; None: no limit.
        figures: Write each notebook's plotly figures to ``<stem>/figures/`` and show them.
        static_figures: PNG (True), interactive HTML (False), or PNG where Chromium and
            Kaleido are available (None).

    Returns:
        The :class:`Report` (index path and the executed notebooks).

    Raises:
        ConfigError: The folder is missing or holds no notebooks, an ``only`` name or a
            ``parameters`` key is not a notebook there, or a notebook's parameters are invalid.
    """
    available = find_notebooks(notebooks_dir)
    if not available:
        raise ConfigError(f"no notebooks (*.ipynb) in {os.fspath(notebooks_dir)!r}")
    stems = [p.stem for p in available]
    wanted = [only] if isinstance(only, str) else list(only or [])
    unknown = sorted(set(wanted) - set(stems))
    if unknown:
        raise ConfigError(
            f"no notebook named {', '.join(map(repr, unknown))} in {os.fspath(notebooks_dir)!r}; "
            f"there are: {', '.join(stems)}"
        )
    params = dict(parameters or {})
    unknown = sorted(set(params) - set(stems))
    if unknown:
        raise ConfigError(
            f"parameters given for {', '.join(map(repr, unknown))}, which is not a notebook in "
            f"{os.fspath(notebooks_dir)!r}; there are: {', '.join(stems)}"
        )
    selected = [p for p in available if not wanted or p.stem in wanted]

    out = Path(output_dir)
    executed: list[ExecutedNotebook] = []
    bar = _progress(selected, progress)
    try:
        for path in selected:
            if bar is not None:
                bar.set_postfix_str(path.stem)
            result = execute_notebook(
                path,
                out,
                parameters=params.get(path.stem),
                quick=quick,
                kernel_name=kernel_name,
                timeout=timeout,
                figures=figures,
                static_figures=static_figures,
            )
            executed.append(result)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    index = build_index(out, executed)
    logger.info("wrote %s (%d notebooks, %d failed)", index, len(executed), sum(not nb.ok for nb in executed))
    return Report(index_path=index, notebooks=tuple(executed))
