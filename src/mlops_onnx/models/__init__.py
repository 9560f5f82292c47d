"""Model specs: what differs between the three pipelines.

A spec says how to validate its dataset, train, export to ONNX, feed ONNX Runtime and score
outputs; everything else (snapshots, quantized variants, parity, benchmarks, the gate, MLflow)
is shared and lives outside this package. Specs import torch and TensorFlow only inside the
functions that need them (tasks that only read data or ONNX files never pay for that import), and
are loaded through `load_spec` from the module the catalog (`mlops_onnx.catalog`) names for each
model. The two Keras specs share their compile, fit, epoch timer and export in `keras_native`.
"""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlops_onnx.datasets import DatasetSpec
from mlops_onnx.parity import ParityRules
from mlops_onnx.settings import Settings
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.validation import ValidationReport

# Where `train` keeps a candidate's `Scored` validation outputs, in its run folder.
VALIDATION_OUTPUTS = "validation_outputs.npz"
# One opset for every export: the newest tf2onnx 1.17 supports (torch's dynamo exporter takes 18 and up).
ONNX_OPSET = 18

EpochCallback = Callable[[int, dict[str, float]], None]
Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, float]  # headline test metrics, logged to MLflow as-is
    artifacts: list[Path] = field(default_factory=list)  # plots and reports to log
    params: dict[str, Any] = field(default_factory=dict)
    # Files the ONNX model needs at inference (a vocabulary, a scaler), registered beside it.
    preprocessing: list[Path] = field(default_factory=list)
    # Other files of the run folder that `evaluation_data` reads (stocks: the tickers `train` chose).
    evaluation_files: list[Path] = field(default_factory=list)
    # The trained model's outputs on its validation rows (`Scored`): the night's candidates are compared on
    # the rows they share, by a paired test, before the best meets the champion on the test rows.
    validation: Scored | None = None


@dataclass
class TestRows:
    """The test split as the models see it, in a fixed order.

    `ids` name each row the same way on every night (an image's pixel hash, an article's cleaned-text hash,
    `ticker:date`), so two models are compared on the same rows; `inputs` are exactly what ONNX Runtime is
    fed; `extra` holds what a metric needs beyond the targets (stocks: closes and tickers)."""

    ids: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Scored:
    """A model's outputs on rows of a split (`rows.inputs` may be empty: the outputs are what is compared)."""

    rows: TestRows
    outputs: np.ndarray

    def save(self, path: Path) -> Path:
        extra = {f"extra_{k}": _storable(np.asarray(v)) for k, v in self.rows.extra.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(handle, ids=self.rows.ids.astype(str), targets=self.rows.targets, outputs=self.outputs, **extra)
        return path

    @classmethod
    def load(cls, path: Path) -> Scored:
        with np.load(path) as data:  # numpy never unpickles by default
            extra = {k.removeprefix("extra_"): data[k] for k in data.files if k.startswith("extra_")}
            rows = TestRows(ids=data["ids"], inputs=np.empty(0, np.float32), targets=data["targets"], extra=extra)
            return cls(rows, data["outputs"])

    def subset(self, ids: np.ndarray) -> Scored:
        """These rows, in the order of `ids` (each must be here)."""
        where = {row_id: i for i, row_id in enumerate(self.rows.ids.tolist())}
        index = np.array([where[row_id] for row_id in ids.tolist()], dtype=np.int64)
        rows = TestRows(
            ids=self.rows.ids[index],
            inputs=self.rows.inputs[index] if len(self.rows.inputs) else self.rows.inputs,
            targets=self.rows.targets[index],
            extra={k: np.asarray(v)[index] for k, v in self.rows.extra.items()},
        )
        return Scored(rows, self.outputs[index])


def _storable(values: np.ndarray) -> np.ndarray:
    """Python objects (tickers as `str` objects) as a numpy string array: no pickle in a run's files."""
    return values.astype(str) if values.dtype == object else values


class ModelSpec(ABC):
    name: str  # registered model name: the task's, shared by its candidates
    architecture: str  # the candidate's architecture ("cnn", "lstm", …): tagged on its runs and versions
    dataset: DatasetSpec
    primary_metric: str  # gate and champion metric, e.g. "test_accuracy"
    higher_is_better: bool = True
    default_gate_min: float
    parity_rules: ParityRules
    variants: tuple[str, ...]  # names from mlops_onnx.variants.VARIANTS
    onnx_input_name: str

    gate_hard_limit: float | None = None  # a bound no configuration may loosen (stocks: MASE ≤ 1.0)
    framework: str  # "torch" or "keras": what runs the native model (named in benchmark rows)
    checkpoint_name: str  # the native model's file in a run's folder, as `train` writes it
    # Benchmark target: ONNX fp32 at least this many times faster than the native path at batch 1 on the
    # CPU; measured against `speedup_baseline`, or against the fastest native path when that is None.
    speedup_target: float | None  # None: no target (a baseline: numpy is as fast as a graph this small)
    speedup_baseline: str | None = None
    # The libraries (import names) whose versions decide what training and export produce: their installed
    # versions are in `resolved_config`, so an upgrade retrains. Every framework the spec's code imports is
    # here (tests/unit/test_fingerprint.py); ONNX and ONNX Runtime make every variant and score parity.
    toolchain: tuple[str, ...] = ("onnx", "onnxruntime")

    def gate_min(self, settings: Settings) -> float:
        """The gate threshold: MLOPS_GATE_<MODEL> when set, else the spec's default, never past the hard limit."""
        value = settings.gate_overrides.get(self.name, self.default_gate_min)
        if self.gate_hard_limit is not None:
            value = max(value, self.gate_hard_limit) if self.higher_is_better else min(value, self.gate_hard_limit)
        return value

    @abstractmethod
    def train_config(self, settings: Settings) -> Any: ...

    @abstractmethod
    def validate(self, snapshot: Snapshot, settings: Settings) -> ValidationReport: ...

    @abstractmethod
    def train(self, snapshot: Snapshot, workdir: Path, settings: Settings, on_epoch: EpochCallback) -> TrainResult: ...

    @abstractmethod
    def export_onnx(self, checkpoint: Path, out_path: Path) -> None: ...

    def trial_articles(self, snapshot: Snapshot, settings: Settings, rows: int, max_chars: int) -> list[dict[str, str]]:
        """The requests a would-be champion answers in the API before `champion` moves (`serving.trial`):
        only the model the API serves has them."""
        raise NotImplementedError(f"{self.name}: no API serves it, so it has no server trial")

    @abstractmethod
    def evaluation_data(
        self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None
    ) -> TestRows:
        """The test split of tonight's configuration: its stable row ids, model inputs and targets.

        `workdir` holds what `train` wrote (e.g. which tickers it used) and `reports/validation.json`;
        `preprocessing` is the folder of the preprocessing files (a tokenizer, a scaler) the inputs are
        encoded with: tonight's (`workdir`, the default) or another model's, e.g. the champion's, so both
        models see the same rows.
        """

    @abstractmethod
    def calibration_data(self, snapshot: Snapshot, settings: Settings, workdir: Path, rows: int) -> np.ndarray:
        """A sample of training inputs for static quantization."""

    @abstractmethod
    def native_predictors(
        self, checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
    ) -> dict[str, Predictor]:
        """Native (PyTorch/Keras) inference functions by variant name, e.g. {"native_eager": f};
        with `compiled`, also `native_compiled` (torch.compile / tf.function) where one exists."""

    @abstractmethod
    def quality(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """The parity quality figure (accuracy, F1, MAE) of model outputs."""

    def labels(self, outputs: np.ndarray) -> np.ndarray | None:
        """Predicted labels for agreement checks; None for regression."""
        return None

    def decision_margin(self, outputs: np.ndarray) -> np.ndarray | None:
        """How far each output must move for its label to change (None for regression): a label flip
        between two fp32 runtimes within this margin is rounding at the decision boundary."""
        return None

    def parity_strata(self, rows: TestRows) -> np.ndarray | None:
        """What parity's sample of a large test split is stratified by, one value per row, known without
        running a model (a classifier: the target class); None: evenly spaced rows."""
        return None

    def drift_frame(self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None):
        """A table of the snapshot's meaningful columns for the drift report (`mlops_onnx.drift`), at most
        `settings.drift_max_rows` rows; `preprocessing` is the champion's (e.g. its tokenizer), if any."""
        return None

    def resolved_config(self, settings: Settings) -> dict[str, Any]:
        """Everything configurable that decides what training produces and how it is judged: hashed into
        the run's fingerprint, so a change to any of it retrains."""
        return {
            "model": self.name,
            "architecture": self.architecture,
            "profile": settings.profile,
            "train": asdict(self.train_config(settings)),
            "variants": list(self.variants),
            "parity": asdict(self.parity_rules),
            "gate_min": self.gate_min(settings),
            "promotion_alpha": settings.promotion_alpha,
            "toolchain": toolchain_versions(self.toolchain),
        }

    def head_to_head(self, candidate: np.ndarray, champion: np.ndarray, rows: TestRows):
        """Tonight's model against the champion on the same rows (a classifier's default: the primary
        metric from `quality`, and the exact McNemar test on which rows each gets right)."""
        from mlops_onnx.decisions import classifier_head_to_head

        return classifier_head_to_head(self, candidate, champion, rows)


def toolchain_versions(imports: tuple[str, ...]) -> dict[str, str]:
    """`name==version` of the installed distributions that provide each import name (tensorflow is the
    `tensorflow_cpu` wheel in the lock): read from package metadata, without importing anything."""
    from importlib import metadata

    provided_by = _distributions()
    return {
        name: ",".join(f"{d}=={metadata.version(d)}" for d in sorted(set(provided_by.get(name, ())))) or "missing"
        for name in imports
    }


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return dict(metadata.packages_distributions())


def sklearn_native(device: str, settings: Settings, predictor: Callable[[], Predictor]) -> dict[str, Predictor]:
    """A scikit-learn model's one native path, `native_eager` (`predictor()` builds it), with as many BLAS
    threads as ONNX Runtime gets in the benchmark; none on a GPU (scikit-learn runs on the CPU)."""
    if device != "cpu":
        return {}
    from threadpoolctl import threadpool_limits

    threadpool_limits(settings.bench_threads)
    return {"native_eager": predictor()}


def profile_config(settings: Settings, full: Any, quick: Any, **from_settings: str) -> Any:
    """The profile's config (`full` or `quick`) with the seed and the MLOPS_* overrides that are set;
    `from_settings` maps a config field to the Settings attribute that overrides it."""
    config = quick if settings.profile == "quick" else full
    overrides = {field: getattr(settings, attribute) for field, attribute in from_settings.items()}
    return replace(config, seed=settings.seed, **{k: v for k, v in overrides.items() if v is not None})


def load_spec(name: str, architecture: str | None = None) -> ModelSpec:
    """The spec of the catalog's model `name` and candidate `architecture` (None: the task's default
    candidate), its module's `SPEC` (or the entry's `spec_name`), checked against its catalog entry."""
    from mlops_onnx.catalog import PIPELINES

    if name not in PIPELINES:
        raise KeyError(f"unknown model {name!r}; the catalog has: {', '.join(PIPELINES)}")
    pipeline = PIPELINES[name]
    candidate = pipeline.candidate(architecture)
    spec = getattr(importlib.import_module(candidate.spec_module), candidate.spec_name)
    if spec.name != name or spec.dataset != pipeline.dataset or spec.architecture != candidate.architecture:
        raise ValueError(
            f"{candidate.spec_module}.{candidate.spec_name} is {spec.name!r} ({spec.architecture!r}) on dataset "
            f"{spec.dataset.name!r}, but the catalog entry says {name!r} ({candidate.architecture!r}) on "
            f"{pipeline.dataset.name!r}"
        )
    return spec
