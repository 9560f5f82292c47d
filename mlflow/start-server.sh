#!/usr/bin/env bash
# Start an MLflow tracking server with UI on the same state `make demo` writes:
# SQLite backend and local artifacts under $MLOPS_HOME, served through the server, one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
MLOPS_HOME="${MLOPS_HOME:-$PWD/.mlops}"
MLOPS_HOME="$(cd "$(dirname "$MLOPS_HOME")" && pwd)/$(basename "$MLOPS_HOME")"
mkdir -p "$MLOPS_HOME/mlartifacts"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false   # ~430 MB instead of ~2.4 GB
exec .venv/bin/mlflow server \
  --backend-store-uri "sqlite:///$MLOPS_HOME/mlflow.db" \
  --artifacts-destination "$MLOPS_HOME/mlartifacts" \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}" --workers 1
