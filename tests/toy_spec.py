"""A toy model spec: what adding a model to the pipeline takes (this module plus one catalog entry).

Two overlapping Gaussian blobs in a CSV (`points.csv`: x1, x2, label), a softmax regression fitted
with numpy, exported by writing its two-node ONNX graph directly. Everything else (snapshots, the GX
suite runner, variants, parity, benchmarks, the gate, the registry) is the pipeline's own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mlops_onnx.datasets import DatasetSpec
from mlops_onnx.models import ModelSpec, Scored, TestRows, TrainResult
from mlops_onnx.parity import ParityRules
from mlops_onnx.validation import FileReport, ValidationReport, expectations, read_csv_checked, run_suite

TOY_POINTS = DatasetSpec(name="toy_points", slug="example/toy-points", file_patterns=("points.csv",))
FILE = "points.csv"


def write_points(folder: Path, rows: int = 2000, seed: int = 0) -> Path:
    """The dataset in Kaggle's layout, `<folder>/toy-points/points.csv`: two blobs a few percent of points overlap."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    points = rng.normal(0, 1, (rows, 2)) + np.where(labels[:, None] == 1, 1.3, -1.3)
    path = folder / TOY_POINTS.folder / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["x1,x2,label"] + [f"{x:.6f},{y:.6f},{label}" for (x, y), label in zip(points, labels)]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class ToyConfig:
    seed: int = 0
    steps: int = 300
    learning_rate: float = 0.5


def _split(snapshot) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ids, inputs, labels, and which rows are test rows (a fifth, by the hash of the row's values; another
    fifth is validation, `_validation`)."""
    import pandas as pd

    frame = pd.read_csv(snapshot.path / FILE)
    ids = np.array([hashlib.sha256(f"{a:.6f},{b:.6f}".encode()).hexdigest()[:16] for a, b in zip(frame.x1, frame.x2)])
    test = np.array([int(i, 16) % 5 == 0 for i in ids])
    return ids, frame[["x1", "x2"]].to_numpy(np.float32), frame["label"].to_numpy(np.int64), test


def _validation(ids: np.ndarray) -> np.ndarray:
    return np.array([int(i, 16) % 5 == 1 for i in ids])


class ToySpec(ModelSpec):
    name = "toy_points_classifier"
    architecture = "softmax_regression"
    dataset = TOY_POINTS
    primary_metric = "test_accuracy"
    default_gate_min = 0.8
    parity_rules = ParityRules(quality_name="accuracy")
    variants = ("int8_dynamic",)
    onnx_input_name = "features"
    framework = "numpy"  # what runs the native model, named in benchmark rows
    checkpoint_name = "toy.npz"
    speedup_target = 1.0  # ONNX fp32 vs the fastest native path, at batch 1 on the CPU

    def train_config(self, settings) -> ToyConfig:
        return replace(ToyConfig(), seed=settings.seed)

    def validate(self, snapshot, settings) -> ValidationReport:
        frame, unreadable = read_csv_checked(snapshot.path / FILE)
        if unreadable is not None:
            return ValidationReport(self.dataset.name, snapshot.content_hash, {FILE: FileReport(None, [unreadable])})
        gx = expectations()
        checks = run_suite(
            frame,
            "toy_points",
            [
                gx.ExpectTableColumnsToMatchOrderedList(column_list=["x1", "x2", "label"]),
                gx.ExpectColumnValuesToNotBeNull(column="x1"),
                gx.ExpectColumnValuesToNotBeNull(column="x2"),
                gx.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
            ],
        )
        files = {FILE: FileReport(len(frame), checks)}
        return ValidationReport(self.dataset.name, snapshot.content_hash, files, summary={FILE: len(frame)})

    def train(self, snapshot, workdir: Path, settings, on_epoch) -> TrainResult:
        cfg = self.train_config(settings)
        ids, inputs, labels, test = _split(snapshot)
        val = _validation(ids)
        fit = ~test & ~val
        x, y = inputs[fit], np.eye(2, dtype=np.float32)[labels[fit]]
        weights, bias = np.zeros((2, 2), np.float32), np.zeros(2, np.float32)
        for step in range(1, cfg.steps + 1):
            logits = x @ weights + bias
            probabilities = np.exp(logits - logits.max(1, keepdims=True))
            probabilities /= probabilities.sum(1, keepdims=True)
            gradient = (probabilities - y) / len(x)
            weights -= cfg.learning_rate * x.T @ gradient
            bias -= cfg.learning_rate * gradient.sum(0)
            if step % 100 == 0:
                on_epoch(step // 100, {"train_accuracy": float(np.mean(logits.argmax(1) == labels[fit]))})
        checkpoint = workdir / self.checkpoint_name
        np.savez(checkpoint, weights=weights, bias=bias)
        accuracy = float(np.mean((inputs[test] @ weights + bias).argmax(1) == labels[test]))
        validation = Scored(TestRows(ids[val], inputs[val], labels[val]), inputs[val] @ weights + bias)
        return TrainResult(checkpoint, {"test_accuracy": accuracy}, params={"steps": cfg.steps}, validation=validation)

    def export_onnx(self, checkpoint: Path, out_path: Path) -> None:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        from mlops_onnx.models import ONNX_OPSET

        saved = np.load(checkpoint)
        graph = helper.make_graph(
            [
                helper.make_node("MatMul", ["features", "weights"], ["product"]),
                helper.make_node("Add", ["product", "bias"], ["logits"]),
            ],
            "toy_points_classifier",
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 2])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
            [numpy_helper.from_array(saved["weights"], "weights"), numpy_helper.from_array(saved["bias"], "bias")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], ir_version=10)
        onnx.save(model, str(out_path))

    def evaluation_data(self, snapshot, settings, workdir: Path, preprocessing: Path | None = None) -> TestRows:
        ids, inputs, labels, test = _split(snapshot)
        return TestRows(ids=ids[test], inputs=inputs[test], targets=labels[test])

    def calibration_data(self, snapshot, settings, workdir: Path, rows: int) -> np.ndarray:
        _, inputs, _, test = _split(snapshot)
        return inputs[~test][:rows]

    def native_predictors(self, checkpoint: Path, settings, device: str = "cpu", compiled: bool = False):
        saved = np.load(checkpoint)
        weights, bias = saved["weights"], saved["bias"]
        return {"native_eager": lambda inputs: inputs @ weights + bias}

    def quality(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return float(np.mean(outputs.argmax(1) == targets))

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.argmax(1)

    def decision_margin(self, outputs: np.ndarray) -> np.ndarray:
        return np.abs(outputs[:, 1] - outputs[:, 0]) / 2


SPEC = ToySpec()
