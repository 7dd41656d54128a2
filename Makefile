# Everything a fresh machine needs: `make demo` runs the main job on the bundled
# data, `make test` runs lint + the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
# Pinned so pip never resolves an unpinned (multi-GB CUDA) torch by accident.
# On Linux with a GPU, PyPI's torch==2.13.0 is the CUDA build; elsewhere the CPU one.
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin

.PHONY: demo test lint format clean

demo: $(VENV)/.installed
	$(BIN)/emda demo

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n auto --dist loadfile

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
