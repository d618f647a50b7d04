# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# On machines without CUDA install the CPU build pinned below first, so that the
# `torch>=2.2` requirement is already met and pip does not fetch a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: setup demo test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install --quiet torch; \
	  else $(PY) -m pip install --quiet "$(TORCH_CPU)"; fi
	$(PY) -m pip install --quiet -e ".[dev,plot]"
	touch $@

demo: setup
	$(PY) examples/quickstart.py --output output/quickstart
	$(VENV)/bin/mdnkit demo --all --output output/demos

test: setup
	$(PY) -m pytest -n 2 --durations=10

test-fast: setup
	$(PY) -m pytest -n 2 -m "not slow"

bench: setup
	$(PY) benchmarks/edward_fit.py

clean:
	rm -rf $(VENV) output .pytest_cache
