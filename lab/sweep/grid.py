"""A sweep's grid file: what to run (``bench`` configs or a notebook) and over which values.

Format (YAML)::

    name: async-knobs            # names the output folder and the report page
    kind: bench                  # bench: lab.run(RunConfig(**point)); notebook: papermill
    base:                        # what every point shares (RunConfig fields, or notebook parameters)
      model: digits
      runtime: simnpu
      preset: teaching
      mode: async
      requests: 200
    grid:                        # every combination of these values, in file order
      workers: [1, 2, 4, 8]
      max_inflight: [null, 4]
    points:                      # optional: more points, each merged over base
      - {mode: sync}
    repeats: 1                   # run every point this many times
    traces: true                 # bench: keep each point's Chrome trace

For ``kind: notebook`` add ``notebook: path/to/nb.ipynb`` (relative to the grid file);
``base``/``grid``/``points`` are then the notebook's parameters, checked against its
``parameters`` cell (``output_dir`` is set per point by the sweep).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

__all__ = ["KINDS", "SweepSpec", "load_grid", "parse_grid"]

#: What a sweep's points run.
KINDS = ("bench", "notebook")

_KEYS = {"name", "kind", "base", "grid", "points", "repeats", "traces", "notebook", "description"}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed grid file (see the module docstring).

    Attributes:
        name: The sweep's name (a folder name: letters, digits, ``-``, ``_``, ``.``).
        kind: ``"bench"`` or ``"notebook"``.
        base: Values every point shares.
        grid: Field -> the values it takes; the points are every combination.
        points: Extra points, each merged over ``base``.
        repeats: Runs per point.
        traces: Keep each bench point's Chrome trace.
        notebook: The notebook a ``notebook`` sweep runs (absolute path).
        description: Free text shown on the report page.
        source: The grid file, when read from one.
    """

    name: str
    kind: str = "bench"
    base: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    points: tuple[Mapping[str, Any], ...] = ()
    repeats: int = 1
    traces: bool = True
    notebook: str | None = None
    description: str = ""
    source: str | None = None

    def expand(self) -> list[dict[str, Any]]:
        """Every point's values, in order: the grid's combinations, then ``points``, each ``repeats`` times."""
        keys = list(self.grid)
        combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]
        if not keys:
            combos = [] if self.points else [{}]
        points = [{**self.base, **combo} for combo in combos] + [{**self.base, **dict(p)} for p in self.points]
        return [dict(p) for p in points for _ in range(self.repeats)]

    def varied(self) -> list[str]:
        """The fields whose value differs between points (grid keys first)."""
        expanded = self.expand()
        names = list(dict.fromkeys([*self.grid, *(k for p in self.points for k in p)]))
        return [n for n in names if len({repr(p.get(n)) for p in expanded}) > 1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the report page and ``sweep.json`` show)."""
        return {
            "name": self.name, "kind": self.kind, "base": dict(self.base),
            "grid": {k: list(v) for k, v in self.grid.items()}, "points": [dict(p) for p in self.points],
            "repeats": self.repeats, "traces": self.traces, "notebook": self.notebook,
            "description": self.description, "source": self.source,
        }


def _mapping(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where}: {key!r} must be a mapping of names to values, got {type(value).__name__}")
    return dict(value)


def _check_bench_points(spec: SweepSpec, where: str) -> None:
    from lab.config import RunConfig

    allowed = {f.name for f in fields(RunConfig)}
    for i, point in enumerate(spec.expand()):
        unknown = sorted(set(point) - allowed)
        if unknown:
            raise ConfigError(f"{where}: point {i} sets {unknown}, which are not RunConfig fields; "
                              f"expected some of {sorted(allowed)}")
        try:
            RunConfig(**point)
        except ConfigError as exc:
            raise ConfigError(f"{where}: point {i} ({point}) is not a valid RunConfig: {exc}") from None


def _check_notebook_points(spec: SweepSpec, where: str) -> None:
    import papermill as pm

    assert spec.notebook is not None
    declared = set(pm.inspect_notebook(spec.notebook))
    if not declared:
        raise ConfigError(f"{where}: {spec.notebook} has no cell tagged 'parameters'")
    for i, point in enumerate(spec.expand()):
        if "output_dir" in point:
            raise ConfigError(f"{where}: point {i} sets output_dir, which the sweep sets for every point")
        unknown = sorted(set(point) - declared)
        if unknown:
            raise ConfigError(f"{where}: point {i} sets {unknown}, which {Path(spec.notebook).name}'s "
                              f"parameters cell does not declare; it declares {sorted(declared)}")


def parse_grid(doc: Any, *, source: str | os.PathLike[str] | None = None, check: bool = True) -> SweepSpec:
    """Build a :class:`SweepSpec` from a parsed grid document.

    Args:
        doc: The YAML document (a mapping).
        source: The file it came from (relative notebook paths are resolved from its folder).
        check: Validate every point now: bench points must be valid ``RunConfig`` values,
            notebook points the notebook's declared parameters.

    Raises:
        ConfigError: Anything that does not fit the format, naming what was expected.
    """
    where = os.fspath(source) if source is not None else "grid"
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'kind', 'base', 'grid', got {type(doc).__name__}")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; expected some of {sorted(_KEYS)}")
    default_name = Path(where).stem if source is not None else "sweep"
    name = str(doc.get("name") or default_name)
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigError(f"{where}: name must be letters, digits, '-', '_' or '.', got {name!r}")
    kind = doc.get("kind", "bench")
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
    base = _mapping(doc, "base", where)
    grid: dict[str, tuple[Any, ...]] = {}
    for key, values in _mapping(doc, "grid", where).items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"{where}: grid.{key} must be a non-empty list of values, got {values!r}")
        grid[key] = tuple(values)
    raw_points = doc.get("points") or []
    if not isinstance(raw_points, Sequence) or isinstance(raw_points, (str, bytes)) or not all(
            isinstance(p, Mapping) for p in raw_points):
        raise ConfigError(f"{where}: points must be a list of mappings, got {raw_points!r}")
    repeats = doc.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"{where}: repeats must be an integer >= 1, got {repeats!r}")
    traces = doc.get("traces", True)
    if not isinstance(traces, bool):
        raise ConfigError(f"{where}: traces must be true or false, got {traces!r}")
    notebook = doc.get("notebook")
    if kind == "notebook":
        if not isinstance(notebook, str) or not notebook:
            raise ConfigError(f"{where}: a notebook sweep needs 'notebook: path/to/notebook.ipynb'")
        path = Path(notebook)
        if not path.is_absolute():
            path = (Path(where).parent if source is not None else Path.cwd()) / path
        if path.suffix != ".ipynb" or not path.is_file():
            raise ConfigError(f"{where}: notebook {notebook!r} is not an existing .ipynb file (looked at {path})")
        notebook = str(path.resolve())
    elif notebook is not None:
        raise ConfigError(f"{where}: 'notebook' is only for kind: notebook")
    spec = SweepSpec(name=name, kind=kind, base=base, grid=grid, points=tuple(dict(p) for p in raw_points),
                     repeats=repeats, traces=traces, notebook=notebook, description=str(doc.get("description") or ""),
                     source=os.fspath(source) if source is not None else None)
    if check:
        (_check_bench_points if kind == "bench" else _check_notebook_points)(spec, where)
    return spec


def load_grid(path: str | os.PathLike[str], *, check: bool = True) -> SweepSpec:
    """Read and validate a grid file (see the module docstring).

    Raises:
        ConfigError: The file is missing, not YAML, or not a valid grid.
    """
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read grid file {os.fspath(path)!r}: {exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)} is not valid YAML: {exc}") from exc
    return parse_grid(doc, source=path, check=check)
