"""Findings: the versioned JSON every notebook and ``lab bench`` run ends by writing.

Format history (bump :data:`FINDINGS_VERSION` and add a line when the shape changes):

- 1: ``{"format": "lab.findings", "version": 1, "name", "created", "parameters",
  "metrics", "environment", "trace"}``; ``trace`` is the path of the Chrome trace
  written next to it, or null.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping
from typing import Any

from lab.env import collect_environment
from lab.errors import TraceFormatError
from lab.trace import Trace, _jsonable

__all__ = ["FINDINGS_FORMAT", "FINDINGS_VERSION", "load_findings", "save_findings"]

FINDINGS_FORMAT = "lab.findings"
FINDINGS_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can load the file."""
    value = _jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def save_findings(
    output_dir: str | os.PathLike[str],
    *,
    name: str,
    metrics: Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
    trace: Trace | None = None,
    environment: Mapping[str, Any] | None = None,
) -> str:
    """Write ``<output_dir>/<name>.findings.json`` (and ``<name>.trace.json`` when a trace is given).

    Returns:
        The path of the findings file.
    """
    os.makedirs(output_dir, exist_ok=True)
    trace_path = None
    if trace is not None:
        trace_path = trace.save_chrome(os.path.join(output_dir, f"{name}.trace.json"))
    doc = {
        "format": FINDINGS_FORMAT,
        "version": FINDINGS_VERSION,
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": _clean(dict(parameters or {})),
        "metrics": _clean(dict(metrics)),
        "environment": _clean(dict(environment) if environment is not None else collect_environment()),
        "trace": os.path.basename(trace_path) if trace_path else None,
    }
    path = os.path.join(output_dir, f"{name}.findings.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, allow_nan=False)
    return path


def load_findings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a findings file, checking its format and version.

    Raises:
        TraceFormatError: not a findings file, or a version this lab does not read.
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise TraceFormatError(f"cannot read findings from {os.fspath(path)!r}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FINDINGS_FORMAT:
        raise TraceFormatError(f"{os.fspath(path)!r} is not a findings file (expected format {FINDINGS_FORMAT!r})")
    if doc.get("version") != FINDINGS_VERSION:
        raise TraceFormatError(
            f"{os.fspath(path)!r} has findings version {doc.get('version')!r}; this lab reads {FINDINGS_VERSION}"
        )
    return doc
