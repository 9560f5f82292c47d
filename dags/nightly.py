"""Airflow DAGs: one nightly DAG per model in the catalog (`mlops_onnx.catalog.PIPELINES`), built by one factory.

A new model needs no DAG file: its catalog entry is enough (see the README, "Adding a model").
"""

from mlops_onnx.catalog import PIPELINES
from mlops_onnx.dag_factory import nightly_dag

for _pipeline in PIPELINES.values():
    globals()[_pipeline.dag_id] = nightly_dag(_pipeline.model)
