"""The one list of models: every nightly pipeline, as Airflow sees it; light enough to import at DAG-parse time.

A pipeline is one task on one dataset, with one registered model named for the task and a list of
candidate architectures. Everything heavy about a candidate lives in its spec (`spec_module`, a
`ModelSpec` subclass instance named in the module's `SPEC`, or in `spec_name` when a module holds several),
loaded inside tasks by `models.load_spec`. Adding a model is a spec module and one entry here (a new task,
or a new candidate of a task); the DAG, the pools, the MLflow accounts, the demo and the benchmarks all
read this list. A baseline candidate (the stock task's naive, drift and ETS forecasts as ONNX models) runs
whenever its task runs: it is what a model has to beat, on every night's validation rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_onnx.datasets import FAKE_NEWS, FASHION_MNIST, STOCKS, DatasetSpec

NIGHTLY = "0 2 * * *"  # 02:00 UTC, every night


@dataclass(frozen=True)
class Candidate:
    architecture: str  # the `architecture` tag of its MLflow runs and registered versions
    spec_module: str  # the module whose `SPEC` (or `spec_name`) is the candidate's spec
    # Runs when MLOPS_CANDIDATES_<TASK> is unset. False for a candidate too slow for a night on a CPU host
    # (docs/models.md): it runs only when named.
    by_default: bool = True
    # A floor the task's models must beat (a scikit-learn model, a statistical forecaster; seconds to fit): it
    # runs in `first_only` nights too, so even a first look compares the model with what it must beat.
    # MLOPS_CANDIDATES_<TASK> still runs only what it names.
    baseline: bool = False
    spec_name: str = "SPEC"


@dataclass(frozen=True)
class Pipeline:
    model: str  # registered model name and MLflow experiment name, named for the task
    task: str  # MLOPS_CANDIDATES_<TASK> picks which candidates run (default: see `active`)
    dag_id: str
    title: str
    dataset: DatasetSpec
    candidates: tuple[Candidate, ...]  # the first is the default (ingest and validate use its spec)
    schedule: str = NIGHTLY
    served_by: str | None = None  # the app that serves its champion: "api" (FastAPI) or "dashboard" (Streamlit)

    def candidate(self, architecture: str | None = None) -> Candidate:
        """The candidate of that architecture (None: the default one)."""
        if architecture is None:
            return self.candidates[0]
        for candidate in self.candidates:
            if candidate.architecture == architecture:
                return candidate
        known = ", ".join(c.architecture for c in self.candidates)
        raise KeyError(f"{self.model} has no candidate architecture {architecture!r}; its candidates: {known}")

    def first_only(self, settings) -> bool:
        """Synthetic data (a first look: no data configured) and no MLOPS_CANDIDATES_<TASK>: only the first
        candidate (and the baselines) run, so a first `make demo` takes minutes (the MiniLM candidate alone
        takes 6 on 2 cores)."""
        return settings.data_source == "synthetic" and not settings.candidates.get(self.task)

    def active(self, settings) -> tuple[str, ...]:
        """The architectures that run tonight: MLOPS_CANDIDATES_<TASK> (comma-separated, exactly those), else the
        default set, or its first candidate and the baselines only (`first_only`)."""
        if self.first_only(settings):
            first, *others = self.candidates
            return (first.architecture, *(c.architecture for c in others if c.baseline))
        chosen = settings.candidates.get(self.task)
        if not chosen:
            return tuple(c.architecture for c in self.candidates if c.by_default)
        unknown = [a for a in chosen if a not in {c.architecture for c in self.candidates}]
        if unknown:
            known = ", ".join(c.architecture for c in self.candidates)
            raise ValueError(
                f"MLOPS_CANDIDATES_{self.task.upper()} names {', '.join(unknown)}, which {self.model} does not "
                f"have; its candidates: {known}"
            )
        return tuple(dict.fromkeys(chosen))


PIPELINES: dict[str, Pipeline] = {
    p.model: p
    for p in (
        Pipeline(
            "fashion_mnist_classifier",
            "fashion",
            "fashion_mnist_nightly",
            "Fashion-MNIST classifier",
            FASHION_MNIST,
            (
                Candidate("cnn", "mlops_onnx.models.fashion"),
                Candidate("logreg", "mlops_onnx.models.fashion_logreg", baseline=True),  # the scikit-learn floor
                # About 6 minutes an epoch on the quick profile on 2 CPU cores, and from scratch it needs many
                # epochs: named in MLOPS_CANDIDATES_FASHION (with pretrained weights, ideally on a GPU host).
                Candidate("mobilenet_v2", "mlops_onnx.models.fashion_mobilenet", by_default=False),
            ),
        ),
        Pipeline(
            "fake_news_classifier",
            "fake_news",
            "fake_news_nightly",
            "Fake-news classifier",
            FAKE_NEWS,
            (
                Candidate("lstm", "mlops_onnx.models.fake_news"),
                Candidate("tfidf", "mlops_onnx.models.fake_news_tfidf", baseline=True),  # the scikit-learn floor
                Candidate("minilm", "mlops_onnx.models.fake_news_minilm"),
            ),
            served_by="api",
        ),
        Pipeline(
            "stock_forecaster",
            "stocks",
            "stock_forecast_nightly",
            "Stock price forecaster",
            STOCKS,
            (
                Candidate("lstm", "mlops_onnx.models.stocks"),
                Candidate("transformer", "mlops_onnx.models.stocks_transformer"),
                Candidate("ensemble", "mlops_onnx.models.stocks_ensemble"),
                Candidate("naive", "mlops_onnx.models.stock_baselines", baseline=True, spec_name="NAIVE"),
                Candidate("drift", "mlops_onnx.models.stock_baselines", baseline=True, spec_name="DRIFT"),
                Candidate("ets", "mlops_onnx.models.stock_baselines", baseline=True, spec_name="ETS"),
            ),
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
