# Everyday commands. `make demo` and `make test` set themselves up (a .venv from requirements.lock).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test lint lock summary clean-state up down status serve

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@echo "setting up $(VENV) from requirements.lock (a few minutes the first time; log in $(VENV)/setup.log)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@mkdir -p $(VENV)
	@$(PY) -m pip install -r requirements.lock > $(VENV)/setup.log 2>&1 || { grep -v '^WARNING: Location' $(VENV)/setup.log | tail -30; exit 1; }
	@$(PY) -m pip install --no-deps -e . >> $(VENV)/setup.log 2>&1 || { tail -30 $(VENV)/setup.log; exit 1; }
	@touch $(STAMP)
	@echo "environment ready: $(VENV)"

demo: setup
	$(PY) -m mlops_onnx.cli demo

up: setup
	$(PY) -m mlops_onnx.services up

down:
	$(PY) -m mlops_onnx.services down

status:
	$(PY) -m mlops_onnx.services status

serve: setup
	$(VENV)/bin/uvicorn mlops_onnx.serving.app:app --host $${MLOPS_BIND_HOST:-127.0.0.1} --port $${MLOPS_SERVE_PORT:-8000}

summary: setup
	$(PY) -m mlops_onnx.cli summary

test: setup
	$(PY) -m ruff check src dags plugins tests
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check src dags plugins tests
	$(PY) -m ruff format --check src dags plugins tests

lock:
	$(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock

clean-state:
	rm -rf .mlops reports/demo-summary.json
