# Everything a fresh machine needs, from a clone: make run | make demo | make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= etc/monitor.toml
PYTEST_ARGS ?=
# Run the checkout's code (and find its twistd plugin) whatever is installed.
export PYTHONPATH := $(CURDIR)

.PHONY: install run demo test bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	mkdir -p var
	$(BIN)/twistd --nodaemon --pidfile= monitor --config $(CONFIG)

demo:
	$(MAKE) run CONFIG=etc/demo.toml

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info
