# Everyday commands. `make demo` and `make test` set themselves up (a .venv from requirements.lock).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1


.PHONY: system-packages setup demo bench scale test test-fast lint lock summary clean-state up down status serve dashboard loadtest

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@echo "setting up $(VENV) from requirements.lock (a few minutes the first time; log in $(VENV)/setup.log)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@mkdir -p $(VENV)
	@$(PY) -m pip install -r requirements.lock > $(VENV)/setup.log 2>&1 || { grep -v '^WARNING: Location' $(VENV)/setup.log | tail -30; exit 1; }
	@$(PY) -m pip install --no-deps -e . >> $(VENV)/setup.log 2>&1 || { tail -30 $(VENV)/setup.log; exit 1; }
	@touch $(STAMP)
	@echo "environment ready: $(VENV)"

# Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser) and
# docker-compose v1 to validate docker-compose.yaml without an engine: the tests' only (`make demo` needs
# neither). Skipped, with a note, without apt/root; nothing to do once both are on the PATH.
system-packages:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } >> $(VENV)/setup.log 2>&1 \
	      || echo "apt-get install$$missing failed; the tests that need them will skip (see $(VENV)/setup.log)"; \
	  else echo "not installed:$$missing (needs root + apt-get); the tests that need them will skip"; fi; \
	fi

demo: setup
	$(PY) -m mlops_onnx.cli demo

# After `make demo`: the registered version (champion, else newest) of every model and the other candidate
# architectures of its night that got through export, every variant, provider
# (MLOPS_BENCH_PROVIDERS) and batch size (MLOPS_BENCH_BATCHES) in one run; writes reports/benchmark.{json,md},
# PNG charts and the performance table of docs/performance.md, and logs them to MLflow.
bench: setup
	$(PY) -m mlops_onnx.benchmarks all

# One night of every task on synthetic data at Kaggle's sizes times each of SIZES (default 1/16, 1/8, 1/4;
# `make scale SIZES=1` for the full-size night), default candidates; merges into reports/scale.{json,md,png}
# the sizes measured before. Long (the full-size night alone is most of an hour); not part of `make test`.
scale: setup
	$(PY) -m mlops_onnx.benchmarks.scale $(if $(SIZES),--sizes $(SIZES))

up: setup
	$(PY) -m mlops_onnx.services up

down:
	$(PY) -m mlops_onnx.services down

status:
	$(PY) -m mlops_onnx.services status

serve: setup
	$(VENV)/bin/uvicorn mlops_onnx.serving.app:app --host $${MLOPS_BIND_HOST:-127.0.0.1} --port $${MLOPS_SERVE_PORT:-8000}

# After `make demo`: the API in uvicorn on loopback under 1, 8 and 32 concurrent clients (20 s each) on
# the champion of $MLOPS_HOME; writes reports/loadtest.{json,md}. Options: make loadtest LOADTEST_ARGS='--duration 5'
loadtest: setup
	$(PY) -m mlops_onnx.serving.loadtest $(LOADTEST_ARGS)

dashboard: setup
	$(VENV)/bin/streamlit run src/mlops_onnx/serving/dashboard.py --server.headless true \
	  --server.address $${MLOPS_BIND_HOST:-127.0.0.1} --server.port $${MLOPS_DASHBOARD_PORT:-8501} \
	  --browser.gatherUsageStats false

summary: setup
	$(PY) -m mlops_onnx.cli summary

# Two workers (pytest-xdist), each taking whole test modules (a module's fixtures stay in one process);
# the 25 slowest tests are listed at the end, for the 40-minute budget.
test: setup system-packages lint
	$(PY) -m pytest -n 2 --dist loadfile --durations=25

# The edit-run loop: unit, data and DAG-integrity tests, no server, no apt (tests/integration, tests/model,
# tests/faults and tests/e2e start servers or train real models: make test).
test-fast: setup lint
	$(PY) -m pytest tests/unit tests/data tests/dags -m "not slow and not e2e"

lint: setup
	$(PY) -m ruff check src dags plugins tests
	$(PY) -m ruff format --check src dags plugins tests

lock:
	@{ echo '# Full lock (pip freeze) of requirements.in; `make setup` installs exactly this.'; echo '# Regenerate: make lock'; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.lock

clean-state:
	rm -rf .mlops reports/demo-summary.json
