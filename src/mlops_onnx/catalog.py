"""The one list of models: every nightly pipeline, as Airflow sees it; light enough to import at DAG-parse time.

Everything heavy about a model lives in its spec (`spec_module`, a `ModelSpec` subclass named in the
module's `SPEC`), loaded inside tasks by `models.load_spec`. Adding a model is a spec module and one
entry here; the DAG, the pools, the MLflow accounts, the demo and the benchmarks all read this list.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_onnx.datasets import FAKE_NEWS, FASHION_MNIST, STOCKS, DatasetSpec

NIGHTLY = "0 2 * * *"  # 02:00 UTC, every night


@dataclass(frozen=True)
class Pipeline:
    model: str  # registered model name and MLflow experiment name
    dag_id: str
    title: str
    dataset: DatasetSpec
    spec_module: str  # the module whose `SPEC` is the model's spec
    schedule: str = NIGHTLY
    served_by: str | None = None  # the app that serves its champion: "api" (FastAPI) or "dashboard" (Streamlit)


PIPELINES: dict[str, Pipeline] = {
    p.model: p
    for p in (
        Pipeline(
            "fashion_mnist_cnn",
            "fashion_mnist_nightly",
            "Fashion-MNIST PyTorch CNN",
            FASHION_MNIST,
            "mlops_onnx.models.fashion",
        ),
        Pipeline(
            "fake_news_rnn",
            "fake_news_nightly",
            "Fake-news Keras RNN classifier",
            FAKE_NEWS,
            "mlops_onnx.models.fake_news",
            served_by="api",
        ),
        Pipeline(
            "stock_lstm",
            "stock_forecast_nightly",
            "Stock price Keras LSTM forecaster",
            STOCKS,
            "mlops_onnx.models.stocks",
            served_by="dashboard",
        ),
    )
}


def served_model(app: str) -> str:
    """The model whose champion `app` ("api" or "dashboard") serves."""
    return next(p.model for p in PIPELINES.values() if p.served_by == app)


def registry_pool(model: str) -> str:
    """The one-slot Airflow pool every `gate_and_register` of `model` runs in: one promotion at a time."""
    return f"registry_{model}"


def airflow_pools() -> list[tuple[str, int, str]]:
    """(name, slots, description) of every pool the DAGs use; created wherever Airflow is set up."""
    return [("gpu", 1, "GPU tasks (benchmark_gpu)")] + [
        (registry_pool(model), 1, f"one gate_and_register of {model} at a time") for model in PIPELINES
    ]


def pipeline_for_dag(dag_id: str) -> Pipeline:
    for pipeline in PIPELINES.values():
        if pipeline.dag_id == dag_id:
            return pipeline
    raise KeyError(f"no pipeline has dag_id {dag_id!r}")
