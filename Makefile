# xai-lab: `make help` lists the targets.
SHELL := /bin/bash
# The Python of .venv: 3.10 or 3.11 (TensorFlow 2.14's); scripts/find-python finds one, or has uv
# provision CPython 3.11 where the system has only newer ones. PYTHON_FOR_VENV=... overrides it.
PYTHON_FOR_VENV ?=
VENV := .venv
PY := $(VENV)/bin/python
STORE ?= $(CURDIR)/mlruns
# The UI and the server listen on loopback only unless HOST says otherwise on make's command
# line (`make ui HOST=0.0.0.0`): `:=`, so a HOST or PORT in the environment (tcsh exports its
# host name as HOST) does not open them to the network by accident.
HOST := 127.0.0.1
PORT := 5000
# The store's SQLite URI, its path escaped (a `?`, `%` or space in STORE is part of the path).
STORE_URI = $$($(PY) -c 'import sys, urllib.parse; print("sqlite:///" + urllib.parse.quote(sys.argv[1], safe="/ "))' "$(STORE)/mlflow.db")
# The server's run database and where it keeps artifacts: the project's store by default.
BACKEND ?= $(STORE_URI)
ARTIFACTS ?= $(STORE)/artifacts
ARGS ?=
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# MLflow would otherwise send usage data from the UI and the client to its makers.
export MLFLOW_DISABLE_TELEMETRY ?= true
# The link each run prints points at the UI where `make ui` serves it: `make train PORT=5123`.
export XAI_LAB_UI_HOST := $(HOST)
export XAI_LAB_UI_PORT := $(PORT)

.DEFAULT_GOAL := help

.PHONY: help install install-system-tests train sweep report repair ui server test test-slow support-table bench lint clean slurm slurm-stop

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@python="$(PYTHON_FOR_VENV)"; [ -n "$$python" ] || python=$$(scripts/find-python) || exit 2; \
		echo "$$python -m venv $(VENV)" && "$$python" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" --config-settings editable_mode=compat
	touch $@

install: $(VENV)/.installed ## Create .venv at the project root and install the project with its dev tools

$(VENV)/.installed-system-tests: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev,browser,postgres]" --config-settings editable_mode=compat
	touch $@

# Today's Keras 3, apart from the project (which cannot import it): the tests use it only to
# make model files the way users make them (tests/makers/keras3_files.py).
KERAS3_VENV := .venv-keras3
$(KERAS3_VENV)/.installed: $(VENV)/.installed
	@python="$(PYTHON_FOR_VENV)"; [ -n "$$python" ] || python=$$(scripts/find-python) || exit 2; \
		echo "$$python -m venv $(KERAS3_VENV)" && "$$python" -m venv $(KERAS3_VENV)
	$(KERAS3_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(KERAS3_VENV)/bin/python -m pip install --quiet "tensorflow-cpu>=2.16,<3" h5py
	touch $@

install-system-tests: $(VENV)/.installed-system-tests $(KERAS3_VENV)/.installed ## What the system tests need: Playwright, psycopg2, a Keras 3 environment (.venv-keras3) to make model files, and Debian's chromium, chromium-driver, postgresql, slurm-wlm, slurmdbd, munge, mariadb-server (root or sudo)
	@if ! command -v chromium >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmdbd ] || [ ! -x /usr/sbin/mariadbd ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver postgresql \
			slurm-wlm slurmdbd munge mariadb-server; \
	fi

train: install ## One run (the default config); pass overrides with ARGS="dataset=digits train.epochs=1"
	$(PY) -m src.train $(ARGS)

sweep: install ## The headline sweep: three analyzers x three seeds x 1/3/5 epochs (extra overrides in ARGS)
	$(PY) -m src.train -m analyzer=deep_taylor,gradient,input_t_gradient seed=0,1,2 train.epochs=1,3,5 $(ARGS)

repair: install ## Mark KILLED the runs left RUNNING by a process that is gone (SIGKILL, a crash); ARGS="dry_run=true" only lists them
	$(PY) -m src.repair "tracking.dir='$(STORE)'" $(ARGS)

ui: install ## The MLflow UI on http://127.0.0.1:5000 (PORT=..., HOST=..., STORE=...) against the project's store
	$(VENV)/bin/mlflow ui --backend-store-uri "$(STORE_URI)" --host $(HOST) --port $(PORT) $(ARGS)

server: install ## A tracking server for a team on http://127.0.0.1:5000 (BACKEND=postgresql+psycopg2://..., ARTIFACTS=..., HOST=...)
	$(VENV)/bin/mlflow server --backend-store-uri "$(BACKEND)" --artifacts-destination "$(ARTIFACTS)" \
		--host $(HOST) --port $(PORT) $(ARGS)

test: install ## The fast test suite (about 8 min on 2 cores)
	$(PY) -m pytest -q

support-table: install-system-tests ## Measure the support table of docs/models.md (every analyzer on every model family, Keras 3 files too) and write it there
	XAI_LAB_WRITE_SUPPORT_TABLE=1 $(PY) -m pytest -q -m slow tests/explain/test_support_table.py

test-slow: install ## The slow end-to-end tests (real CLI in subprocesses)
	$(PY) -m pytest -q -m slow

slurm: ## Start a one-node SLURM cluster on this machine for the SLURM tests (Debian's slurm-wlm, munge, slurmdbd, mariadb; root or sudo)
	scripts/slurm-cluster start

slurm-stop: ## Stop the SLURM cluster of `make slurm` and the jobs still running on it
	scripts/slurm-cluster stop

bench: install ## Project vs bare Keras + iNNvestigate, side by side (~45 min on 2 cores; ARGS="--quick" for ~4)
	$(PY) -m benchmarks.run $(ARGS)

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check src tests benchmarks hydra_plugins
	$(VENV)/bin/ruff format --check src tests benchmarks hydra_plugins

clean: ## Remove caches and Hydra's output folders (keeps .venv, .bootstrap and the tracking store)
	rm -rf outputs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

report: install ## Rebuild the latest sweep's comparison (or PARENT=<run id>) into reports/ and onto its parent run
	$(PY) -m src.report $(if $(PARENT),parent=$(PARENT)) $(ARGS)
