"""The nightly pipelines as Airflow sees them: light enough to import at DAG-parse time.

Everything heavy about a model lives in its spec (`mlops_onnx.models.<module>`), loaded inside tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

NIGHTLY = "0 2 * * *"  # 02:00 UTC, every night


@dataclass(frozen=True)
class Pipeline:
    model: str  # registered model name and MLflow experiment name
    dag_id: str
    title: str
    schedule: str = NIGHTLY


PIPELINES: dict[str, Pipeline] = {
    p.model: p
    for p in (
        Pipeline("fashion_mnist_cnn", "fashion_mnist_nightly", "Fashion-MNIST PyTorch CNN"),
        Pipeline("fake_news_rnn", "fake_news_nightly", "Fake-news Keras RNN classifier"),
        Pipeline("stock_lstm", "stock_forecast_nightly", "Stock price Keras LSTM forecaster"),
    )
}


def pipeline_for_dag(dag_id: str) -> Pipeline:
    for pipeline in PIPELINES.values():
        if pipeline.dag_id == dag_id:
            return pipeline
    raise KeyError(f"no pipeline has dag_id {dag_id!r}")
