# Everything a fresh machine needs, from a clone: make run | make demo | make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= etc/monitor.toml
PYTEST_ARGS ?=
# Run the checkout's code (and find its twistd plugin) whatever is installed.
export PYTHONPATH := $(CURDIR)

.PHONY: install run demo offline cluster test lint bench clean vendor system-deps docs
# apt-get needs root; use sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '.[test]'
	touch $@

install: $(VENV)/.installed

# The pages work without the charts' and map's libraries (tables instead),
# so a machine without npm still runs.
# The console shows the start, the sources, incidents and errors
# (monitor.logs.console); Ctrl-C stops the hub cleanly, and the trap keeps
# make from adding its "*** Interrupt" to that.
run: install
	-@$(MAKE) --no-print-directory vendor || echo "warning: no npm: the web UI shows tables instead of charts and map"
	@mkdir -p var
	@trap 'exit 0' INT; $(BIN)/twistd --nodaemon --pidfile= --logger monitor.logs.console monitor --config $(CONFIG)

demo:
	@trap 'exit 0' INT; $(MAKE) --no-print-directory run CONFIG=etc/demo.toml

# The real Bluesky and Mastodon collectors, fed by the test suite's fake
# servers on localhost (etc/offline.toml); the fakes stop with the hub.
offline: install vendor
	mkdir -p var
	$(BIN)/python -m tests.fakes.jetstream --port 8765 > var/fake-jetstream.log 2>&1 & js=$$!; \
	$(BIN)/python -m tests.fakes.mastodon --port 8766 > var/fake-mastodon.log 2>&1 & md=$$!; \
	trap 'kill $$js $$md 2>/dev/null' EXIT INT TERM; \
	$(BIN)/twistd --nodaemon --pidfile= monitor --config etc/offline.toml

# Two hubs on this machine (etc/cluster.toml, web UI on ports 8080 and
# 8081) on a PostgreSQL and a Redis of their own, from Debian's packages,
# their data under var/cluster/ (kept; rm -rf var/cluster var/hub-* starts
# over): README.rst, "Running several hubs".  Ctrl-C stops the hubs, then
# the servers.
cluster: system-deps install
	-@$(MAKE) --no-print-directory vendor || echo "warning: no npm: the web UI shows tables instead of charts and map"
	@trap 'exit 0' INT; $(BIN)/python -m tests.local_cluster

test: system-deps install vendor lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Pyflakes' checks, the banned module-level reactor import and the code's
# format (pyproject.toml's [tool.ruff]; `ruff format` applies it); make test
# runs it first.
lint: install
	$(BIN)/ruff check monitor tests bench twisted docs
	$(BIN)/ruff format --check monitor tests bench twisted docs

# The manual (docs/*.rst) as HTML in build/docs/; warnings are errors.
docs: install
	$(BIN)/sphinx-build -W -q -b html docs build/docs
	@echo "the manual: build/docs/index.html"

bench: install
	$(BIN)/python bench/pipeline.py

# The web UI's charts and map (pinned npm packages, checked by SHA-512) in
# monitor/web/static/vendor/; quick when already there.
vendor:
	@$(PYTHON) -m monitor.web.vendor

# What the tests and the vendor step need from Debian: Chromium (driven by
# Playwright; never a downloaded browser), npm, redis-server and the
# PostgreSQL server (the tests start throwaway servers of their own, as the
# postgres user when run as root).  Quick when all are there.
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium fonts-dejavu-core"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -x /usr/lib/postgresql/15/bin/postgres ] || [ -x /usr/local/bin/postgres ] || \
	  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info
