"""Every notebook runs under papermill with quick parameters; a notebook missing here fails the suite.

Each notebook ``notebooks/NN_name.ipynb`` has a module ``tests/notebook_checks/nb_NN_name.py``
with ``QUICK`` (its quick parameters; ``quick`` and ``output_dir`` are added here) and
``check(findings)`` asserting on the findings the notebook saved.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import ModuleType

import pytest

from lab.findings import load_findings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
CHECK_DIR = Path(__file__).resolve().parent / "notebook_checks"


def _checks() -> dict[str, ModuleType]:
    mods = {}
    for p in sorted(CHECK_DIR.glob("nb_*.py")):
        mods[p.stem[3:]] = importlib.import_module(f"notebook_checks.{p.stem}")
    return mods


def test_every_notebook_has_quick_params_and_a_check() -> None:
    stems = {p.stem for p in NOTEBOOKS}
    checks = _checks()
    assert stems, "no notebooks found"
    assert not stems - set(checks), f"notebooks with no tests/notebook_checks module: {sorted(stems - set(checks))}"
    assert not set(checks) - stems, f"check modules with no notebook: {sorted(set(checks) - stems)}"
    for stem, mod in checks.items():
        assert isinstance(mod.QUICK, dict) and callable(mod.check), stem


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import papermill as pm

    mod = _checks()[path.stem]
    out_dir = tmp_path / "results"
    params = {"quick": True, "output_dir": str(out_dir), **mod.QUICK}
    with caplog.at_level(logging.WARNING, logger="papermill"):
        pm.execute_notebook(str(path), str(tmp_path / path.name), parameters=params, kernel_name="python3",
                            cwd=str(path.parent), progress_bar=False)
    unknown = [r.getMessage() for r in caplog.records if "Passed unknown parameter" in r.getMessage()]
    assert not unknown, unknown
    doc = load_findings(out_dir / f"{path.stem}.findings.json")
    assert doc["parameters"]["quick"] is True
    assert (out_dir / doc["trace"]).is_file()
    mod.check(doc)
