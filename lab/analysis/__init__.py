"""Analysis that predicts: service demand, bounds, mean value analysis, a virtual-time twin, an advisor.

``import lab.analysis`` stays light (numpy only); tables are built with pandas when asked for.
Measured sweeps live in :mod:`lab.analysis.studies` and the ``advise`` command in
:mod:`lab.analysis.cli`, imported on their own.
"""

from __future__ import annotations

from lab.analysis.advisor import (
    TARGET,
    BatchAdvice,
    PeModeAdvice,
    WorkerAdvice,
    recommend_batch,
    recommend_pe_mode,
    recommend_workers,
    stage_function,
)
from lab.analysis.bounds import Bounds, asymptotic_bounds, bounds, knee, seed_bound
from lab.analysis.demand import (
    PipelineModel,
    Station,
    model_from_run,
    model_from_stages,
    simulator_stages,
    what_if,
)
from lab.analysis.idle import CAUSES, idle_attribution, idle_summary
from lab.analysis.littles import check_littles_law
from lab.analysis.mva import MvaResult, OpenLoopResult, erlang_c, mva, mva_network, open_loop
from lab.analysis.predict import (
    METHODS,
    Prediction,
    compare,
    predict,
    predict_sweep,
    predict_variants,
    relative_error,
    side_by_side,
)
from lab.analysis.twin import TwinRun, simulate

__all__ = [
    "CAUSES",
    "METHODS",
    "TARGET",
    "BatchAdvice",
    "Bounds",
    "MvaResult",
    "OpenLoopResult",
    "PeModeAdvice",
    "PipelineModel",
    "Prediction",
    "Station",
    "TwinRun",
    "WorkerAdvice",
    "asymptotic_bounds",
    "bounds",
    "check_littles_law",
    "compare",
    "erlang_c",
    "idle_attribution",
    "idle_summary",
    "knee",
    "model_from_run",
    "model_from_stages",
    "mva",
    "mva_network",
    "open_loop",
    "predict",
    "predict_sweep",
    "predict_variants",
    "recommend_batch",
    "recommend_pe_mode",
    "recommend_workers",
    "relative_error",
    "seed_bound",
    "side_by_side",
    "simulate",
    "simulator_stages",
    "stage_function",
    "what_if",
]
