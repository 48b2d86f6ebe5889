"""Fleet sweeps: a parameter grid of ``bench`` runs or notebooks on Dask distributed.

``python -m lab sweep GRID.yaml`` does this::

    from lab.sweep import load_grid, run_sweep

    spec = load_grid("examples/sweep_grid.yaml")        # what to run, over which values
    result = run_sweep(spec, "reports/sweeps/" + spec.name, workers=1)   # or scheduler="tcp://..."
    result.table                                         # one merged pandas table
    result.index_path                                    # one report page

Importing this package does not import Dask (it is imported when a sweep runs).
"""

from __future__ import annotations

from lab.sweep.grid import KINDS, SweepSpec, load_grid, parse_grid
from lab.sweep.run import SWEEP_FORMAT, SWEEP_VERSION, SweepResult, run_sweep
from lab.sweep.tasks import run_bench_point, run_notebook_point, worker_info

__all__ = [
    "KINDS",
    "SWEEP_FORMAT",
    "SWEEP_VERSION",
    "SweepResult",
    "SweepSpec",
    "load_grid",
    "parse_grid",
    "run_bench_point",
    "run_notebook_point",
    "run_sweep",
    "worker_info",
]
