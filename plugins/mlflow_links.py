"""Airflow plugin: an "MLflow run" and an "MLflow model" extra link on every task of the nightly
pipelines, opening the MLflow UI at the DAG run's MLflow run and at the registered model.

The task that knows the MLflow run pushes the URLs as XComs (`mlops_onnx.dag_factory`); the API
server reads them back here, so rendering a link costs one metadata-DB lookup and no MLflow call.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from mlops_onnx.links import MLFLOW_MODEL_XCOM, MLFLOW_RUN_XCOM, PIPELINE_DAG_IDS


class _PipelineXComLink(BaseOperatorLink):
    xcom: str = ""

    def get_link(self, operator, *, ti_key) -> str:
        if ti_key.dag_id not in PIPELINE_DAG_IDS:
            return ""
        from airflow.serialization.definitions.operatorlink import XComOperatorLink

        return XComOperatorLink(name=self.name, xcom_key=self.xcom).get_link(operator, ti_key=ti_key)


class MlflowRunLink(_PipelineXComLink):
    name = "MLflow run"
    xcom = MLFLOW_RUN_XCOM


class MlflowModelLink(_PipelineXComLink):
    name = "MLflow model"
    xcom = MLFLOW_MODEL_XCOM


class MlflowLinksPlugin(AirflowPlugin):
    name = "mlflow_links"
    global_operator_extra_links = [MlflowRunLink(), MlflowModelLink()]
