# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint setup

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/vitscope demo --out out/demo

# the floors of the house (pyproject.toml [tool.importlinter]): no import runs back up
lint: $(BIN)/.installed
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q
