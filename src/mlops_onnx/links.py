"""MLflow UI addresses for a DAG run, shared by the tasks (which push them) and the Airflow plugin."""

from __future__ import annotations

from urllib.parse import quote

from mlops_onnx.catalog import PIPELINES

MLFLOW_RUN_XCOM = "mlflow_run_url"
MLFLOW_MODEL_XCOM = "mlflow_model_url"
PIPELINE_DAG_IDS = frozenset(p.dag_id for p in PIPELINES.values())


def mlflow_ui_base() -> str:
    """Where users open the MLflow UI (`make up` serves it on 127.0.0.1:5000)."""
    from mlops_onnx.settings import get_settings

    return get_settings().mlflow_ui_url


def run_url(experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui_base()}/#/experiments/{experiment_id}/runs/{run_id}"


def model_url(model: str, version: str | None = None) -> str:
    url = f"{mlflow_ui_base()}/#/models/{quote(model)}"
    return f"{url}/versions/{version}" if version else url
