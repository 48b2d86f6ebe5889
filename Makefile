# Inference Lab. `make report` runs the main job, `make test` the tests; both set up .venv first.
# Idempotent: the venv is rebuilt only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU build through the constraints file: an unpinned torch pulls CUDA wheels
PIP_INSTALL := $(PIP) install --quiet --constraint constraints.txt

.PHONY: all setup chromium report report-quick test test-fast test-browser sweep lab bench data benchmarks gpu-check clean distclean

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

## Debian's chromium, where it can be installed (root + apt-get): the real-browser test and PNG figures in the
## report use it; without it the browser test is deselected and report figures are interactive HTML.
CHROMIUM_BIN := /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM_BIN) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium (browser test, PNG figures)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	     chromium fonts-liberation >/dev/null) || echo "chromium could not be installed: browser test skipped"; \
	else echo "no chromium and no root apt-get: the browser test is skipped, report figures are HTML"; fi

# pyproject's addopts deselect `browser`; with Chromium present the test target selects it again
TEST_MARKERS = $$(if [ -x $(CHROMIUM_BIN) ]; then echo "not gpu"; else echo "not gpu and not browser"; fi)

## the main job: execute every notebook with papermill and write reports/index.html
report: $(STAMP) chromium
	$(PY) -m lab report --output reports

report-quick: $(STAMP)
	$(PY) -m lab report --output reports --quick

## the tests (unit, integration, every notebook under papermill with quick parameters, and the
## real-browser test of the explorer in JupyterLab when Chromium is installed)
test: $(STAMP) chromium
	$(PY) -m pytest -m "$(TEST_MARKERS)"

test-browser: $(STAMP) chromium
	$(PY) -m pytest -m browser tests/test_browser.py

test-fast: $(STAMP)
	$(PY) -m pytest -m "not notebook and not slow"

## a parameter grid on Dask (a LocalCluster of one single-threaded worker; GRID=..., SWEEP_ARGS="--workers 2")
GRID ?= examples/sweep_grid.yaml
sweep: $(STAMP)
	$(PY) -m lab sweep $(GRID) $(SWEEP_ARGS)

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
	$(PY) benchmarks/prediction_accuracy.py

## GPU checks on a lent CUDA machine (prints "gpu_check: skipped: no CUDA (...)" and succeeds without one).
## The venv pins the CPU build of torch; on a GPU machine install a CUDA build of torch 2.13.0 first.
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py
	$(PY) -m pytest -m gpu tests/test_gpu.py

clean:
	rm -rf reports .pytest_cache

distclean: clean
	rm -rf $(VENV)
