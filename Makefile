# Inference Lab. `make report` runs the main job, `make test` the tests; both set up .venv first.
# Idempotent: the venv is rebuilt only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU build through the constraints file: an unpinned torch pulls CUDA wheels
PIP_INSTALL := $(PIP) install --quiet --constraint constraints.txt

.PHONY: all setup report report-quick test test-fast lab bench data benchmarks gpu-check clean distclean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel setuptools

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP_INSTALL) "torch==2.13.0"
	$(PIP_INSTALL) -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (inference-lab)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

## the main job: execute every notebook with papermill and write reports/index.html
report: $(STAMP)
	$(PY) -m lab report --output reports

report-quick: $(STAMP)
	$(PY) -m lab report --output reports --quick

## the tests (unit, integration, every notebook under papermill with quick parameters)
test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not notebook and not slow"

## JupyterLab on the notebooks
lab: $(STAMP)
	$(PY) -m lab lab

bench: $(STAMP)
	$(PY) -m lab bench --model digits --runtime onnx --mode async --workers 2 --json reports/bench.json --trace reports/bench.trace.json

## regenerate the shipped digits model and test split (seconds, offline)
data: $(STAMP)
	$(PY) data/make_digits.py

benchmarks: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/dispatch_overhead.py
	$(PY) benchmarks/pipeline_efficiency.py
	$(PY) benchmarks/timing_accuracy.py

## GPU checks on a lent CUDA machine (prints "gpu_check: skipped: no CUDA (...)" and succeeds without one).
## The venv pins the CPU build of torch; on a GPU machine install a CUDA build of torch 2.13.0 first.
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py
	$(PY) -m pytest -m gpu tests/test_gpu.py

clean:
	rm -rf reports .pytest_cache

distclean: clean
	rm -rf $(VENV)
