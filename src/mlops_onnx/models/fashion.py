"""Fashion-MNIST: a small PyTorch CNN over 28x28 grayscale images, 10 clothing classes.

The network takes raw pixel values (0..255, float32, shape [batch, 1, 28, 28]) and normalises
inside `forward`, so the exported ONNX model needs no preprocessing beyond reshaping a CSV row.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops_onnx.datasets import FASHION_MNIST
from mlops_onnx.models import (
    ONNX_OPSET,
    EpochCallback,
    ModelSpec,
    Predictor,
    Scored,
    TestRows,
    TrainResult,
    profile_config,
)
from mlops_onnx.parity import ParityRules
from mlops_onnx.settings import Settings
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.validation import ValidationReport
from mlops_onnx.validation.fashion import PIXEL_COLUMNS, validate_snapshot

TRAIN_FILE, TEST_FILE = FASHION_MNIST.file_patterns
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@dataclass(frozen=True)
class FashionConfig:
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    validation_fraction: float = 0.1
    max_train_rows: int | None = None
    max_test_rows: int | None = None
    max_train_batches: int | None = None  # per epoch; None = the whole training split
    seed: int = 42


QUICK = FashionConfig(epochs=3, max_train_rows=1500, max_test_rows=600)


def load_split(snapshot: Snapshot, name: str, max_rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [n, 1, 28, 28] raw pixel values, labels as int64."""
    import pandas as pd

    frame = pd.read_csv(snapshot.path / name, nrows=max_rows)
    images = frame[PIXEL_COLUMNS].to_numpy(dtype=np.float32, copy=True).reshape(-1, 1, 28, 28)
    return images, frame["label"].to_numpy(dtype=np.int64, copy=True)


def image_ids(images: np.ndarray) -> np.ndarray:
    """A stable id per image: the hash of its pixels (the same image has the same id in any file order)."""
    import hashlib

    return np.array([hashlib.blake2b(image.tobytes(), digest_size=8).hexdigest() for image in images])


def validation_split(rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) row indices of the training file: one seeded split for every candidate, so
    the candidates are compared on the same validation images and none of them trained on those."""
    order = np.random.default_rng(seed).permutation(rows)
    n_val = max(1, int(rows * fraction))
    return order[:n_val], order[n_val:]


class FashionSpec(ModelSpec):
    """The CNN candidate, and everything the Fashion-MNIST candidates share: data, training loop, evaluation,
    export. Another architecture is a subclass that overrides `network` (and `initial_network`, if training
    starts from pretrained weights)."""

    name = "fashion_mnist_classifier"
    architecture = "cnn"
    dataset = FASHION_MNIST
    primary_metric = "test_accuracy"
    default_gate_min = 0.85
    parity_rules = ParityRules(quality_name="accuracy")
    variants = ("int8_static", "int8_dynamic", "fp16")
    onnx_input_name = "image"
    framework = "torch"
    checkpoint_name = "model.pt"
    speedup_target = 3.0
    speedup_baseline = "native_eager"  # issue 9's target for the CNN: ONNX fp32 vs PyTorch eager
    toolchain = ("torch", "onnxscript", "onnx", "onnxruntime")  # torch.onnx's dynamo exporter writes with onnxscript
    full_config, quick_config = FashionConfig(), QUICK

    def network(self):
        """A freshly initialised network of this architecture: the layout of the checkpoint `train` writes."""
        from mlops_onnx.models.fashion_net import FashionCNN

        return FashionCNN()

    def initial_network(self, settings: Settings) -> tuple[Any, dict[str, Any]]:
        """The network training starts from, and the params that say how it was made (logged with the run)."""
        return self.network(), {}

    def train_config(self, settings: Settings) -> FashionConfig:
        return profile_config(
            settings,
            self.full_config,
            self.quick_config,
            epochs="epochs",
            max_train_rows="max_train_rows",
            max_test_rows="max_test_rows",
            max_train_batches="max_train_batches",
        )

    def resolved_config(self, settings: Settings) -> dict[str, Any]:
        return super().resolved_config(settings) | {
            "validation": {
                "min_train_rows": settings.fashion_min_train_rows,
                "min_test_rows": settings.fashion_min_test_rows,
            }
        }

    def validate(self, snapshot: Snapshot, settings: Settings) -> ValidationReport:
        min_rows = {TRAIN_FILE: settings.fashion_min_train_rows, TEST_FILE: settings.fashion_min_test_rows}
        return validate_snapshot(snapshot.path, snapshot.content_hash, list(FASHION_MNIST.file_patterns), min_rows)

    def train(self, snapshot: Snapshot, workdir: Path, settings: Settings, on_epoch: EpochCallback) -> TrainResult:
        import torch
        from torch import nn

        from mlops_onnx.models.fashion_net import evaluate

        cfg = self.train_config(settings)
        torch.manual_seed(cfg.seed)
        images, labels = load_split(snapshot, TRAIN_FILE, cfg.max_train_rows)
        val_idx, train_idx = validation_split(len(images), cfg.validation_fraction, cfg.seed)
        x_train, y_train = torch.from_numpy(images[train_idx]), torch.from_numpy(labels[train_idx])
        x_val, y_val = torch.from_numpy(images[val_idx]), torch.from_numpy(labels[val_idx])

        model, network_params = self.initial_network(settings)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        best_loss, best_state, stale, epochs_run = float("inf"), None, 0, 0
        for epoch in range(1, cfg.epochs + 1):
            started = time.perf_counter()
            model.train()
            permutation = torch.randperm(len(x_train), generator=generator)
            total_loss, correct, seen = 0.0, 0, 0
            for i in range(0, len(x_train), cfg.batch_size)[: cfg.max_train_batches]:
                idx = permutation[i : i + cfg.batch_size]
                batch, target = x_train[idx], y_train[idx]
                flip = torch.rand(len(batch), generator=generator) < 0.5  # clothes are left-right symmetric
                batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
                optimizer.zero_grad()
                logits = model(batch)
                loss = nn.functional.cross_entropy(logits, target)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(batch)
                correct += int((logits.argmax(1) == target).sum())
                seen += len(batch)
            val_loss, val_accuracy, _ = evaluate(model, x_val, y_val)
            epochs_run = epoch
            on_epoch(
                epoch,
                {
                    "train_loss": total_loss / seen,
                    "train_accuracy": correct / seen,
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                    "epoch_seconds": time.perf_counter() - started,
                },
            )
            if val_loss < best_loss - 1e-4:
                best_loss, stale = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        model.load_state_dict(best_state)
        _, _, val_logits = evaluate(model, x_val, y_val)
        validation = Scored(TestRows(image_ids(images[val_idx]), np.empty(0, np.float32), labels[val_idx]), val_logits)
        checkpoint = workdir / "model.pt"
        torch.save(model.state_dict(), checkpoint)

        test_images, test_labels = load_split(snapshot, TEST_FILE, cfg.max_test_rows)
        test_loss, test_accuracy, logits = evaluate(model, torch.from_numpy(test_images), torch.from_numpy(test_labels))
        from mlops_onnx.reporting import classification_report_artifacts

        metrics, artifacts = classification_report_artifacts(
            test_labels, logits.argmax(1), CLASS_NAMES, workdir, title="Fashion-MNIST test set"
        )
        metrics.update(
            {
                "test_loss": test_loss,
                "test_accuracy": test_accuracy,
                "best_val_loss": best_loss,
                "epochs_run": float(epochs_run),
                "train_rows": float(len(x_train)),
                "val_rows": float(len(x_val)),
                "test_rows": float(len(test_images)),
            }
        )
        params = asdict(cfg) | network_params
        params["architecture"] = self.architecture
        params["parameters"] = sum(p.numel() for p in model.parameters())
        return TrainResult(
            checkpoint=checkpoint, metrics=metrics, artifacts=artifacts, params=params, validation=validation
        )

    def _load(self, checkpoint: Path):
        import torch

        model = self.network()
        model.load_state_dict(torch.load(checkpoint, weights_only=True))
        return model.eval()

    def export_onnx(self, checkpoint: Path, out_path: Path) -> None:
        import torch

        model = self._load(checkpoint)
        example = torch.zeros(2, 1, 28, 28)
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[self.onnx_input_name],
            output_names=["logits"],
            dynamic_shapes={"image": {0: torch.export.Dim("batch")}},
            external_data=False,
        )
        program.save(str(out_path))

    def evaluation_data(
        self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None
    ) -> TestRows:
        """Kaggle's test file, which never enters training; a row's id is the hash of its pixels."""
        images, labels = load_split(snapshot, TEST_FILE, self.train_config(settings).max_test_rows)
        return TestRows(ids=image_ids(images), inputs=images, targets=labels)

    def calibration_data(self, snapshot: Snapshot, settings: Settings, workdir: Path, rows: int) -> np.ndarray:
        images, _ = load_split(snapshot, TRAIN_FILE, rows)
        return images

    def native_predictors(
        self, checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
    ) -> dict[str, Predictor]:
        import torch

        torch.set_num_threads(settings.bench_threads)
        model = self._load(checkpoint).to(device)

        def runner(module: torch.nn.Module) -> Predictor:
            def predict(inputs: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return module(torch.from_numpy(inputs).to(device)).cpu().numpy()

            return predict

        predictors = {"native_eager": runner(model)}
        if compiled:  # compiles on the first call of each new batch shape (the benchmark's warm-up)
            predictors["native_compiled"] = runner(torch.compile(model, dynamic=False))
        return predictors

    def quality(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return float(np.mean(outputs.argmax(1) == targets))

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.argmax(1)

    def parity_strata(self, rows: TestRows) -> np.ndarray:
        return rows.targets

    def drift_frame(self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None):
        """Per image: its class, its file, and how bright, how contrasted and how much ink it has."""
        import pandas as pd

        from mlops_onnx.drift import sample

        frames = []
        for name in (TRAIN_FILE, TEST_FILE):
            images, labels = load_split(snapshot, name, None)
            flat = images.reshape(len(images), -1)
            frames.append(
                pd.DataFrame(
                    {
                        "label": np.array(CLASS_NAMES)[labels],
                        "file": name,
                        "pixel_mean": flat.mean(1),
                        "pixel_std": flat.std(1),
                        "ink_fraction": (flat > 0).mean(1),
                    }
                )
            )
        return sample(pd.concat(frames, ignore_index=True), settings.drift_max_rows, settings.seed)

    def decision_margin(self, outputs: np.ndarray) -> np.ndarray:
        """Half the gap between the two largest logits: moving each by that much swaps the label."""
        top2 = np.sort(outputs, axis=1)[:, -2:]
        return (top2[:, 1] - top2[:, 0]) / 2


SPEC = FashionSpec()
