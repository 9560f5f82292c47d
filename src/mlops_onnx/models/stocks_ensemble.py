"""Stock prices, ensemble candidate: the mean of an LSTM's and a Transformer's next-day log-return forecasts.

Candidates train side by side (the DAG maps them in parallel), so the ensemble cannot wait for the LSTM and
Transformer candidates' checkpoints: its `train` fits its two members, each exactly as its candidate
fits it, on the same data: the same tickers, scaler, windows, target scale and shuffled batches, the
same config and seed (`StockSpec.fit_models` seeds right before each build), so each member is the
candidate of its architecture trained again (on the sample, bit for bit: the test checks it to 1e-6).
When a candidate of the same night on the same machine has already fitted a member (or fits it after the
ensemble did), its Keras file is copied instead of fitted twice (`mlops_onnx.models.stock_members`; the
run's param `lstm_fitted_in` says where it was fitted). Each member's per-epoch curves are logged under its
architecture (`lstm_train_loss`, `transformer_val_loss`, ...) on the run that fitted it; everything `train`
reports after fitting (test MASE, baselines,
Diebold–Mariano, per-ticker metrics, plots) is computed by the shared `StockSpec.train` code from the
mean forecast.

The checkpoint is a folder (`members/`: `lstm.keras`, `transformer.keras`); the stages move it between
tasks as a whole (`storage.RunFiles.pull` takes everything under a folder it is asked for). The ONNX
model is ONE graph: both members exported by the shared tf2onnx path and averaged by a `Mean` node
(`mlops_onnx.onnx_ensemble`), one input `window`, one output `log_return`. The native reference for
parity and the benchmarks is the mean of the two Keras members. The variants (int8 dynamic, fp16) are
made from that graph like any other fp32 model and checked against the same rules.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlops_onnx.models import EpochCallback, Predictor
from mlops_onnx.models.stock_splits import SplitData
from mlops_onnx.models.stocks import SPEC as LSTM
from mlops_onnx.models.stocks import FittedModel, StockConfig, StockSpec
from mlops_onnx.models.stocks_transformer import SPEC as TRANSFORMER
from mlops_onnx.settings import Settings

MEMBERS: tuple[StockSpec, ...] = (LSTM, TRANSFORMER)


def member_checkpoints(checkpoint: Path) -> list[Path]:
    """The members' .keras files in the ensemble's checkpoint folder, in `MEMBERS` order."""
    return [checkpoint / f"{member.architecture}.keras" for member in MEMBERS]


def prefixed(on_epoch: EpochCallback, prefix: str) -> EpochCallback:
    """`on_epoch` with every metric name under `prefix` (`train_loss` -> `lstm_train_loss`)."""
    return lambda epoch, metrics: on_epoch(epoch, {f"{prefix}_{name}": value for name, value in metrics.items()})


class StockEnsembleSpec(StockSpec):
    architecture = "ensemble"
    checkpoint_name = "members"

    def fit_models(
        self,
        cfg: StockConfig,
        batches: Callable[[], Any],
        val: SplitData,
        target_scale: float,
        checkpoint: Path,
        on_epoch: EpochCallback,
        workdir: Path | None = None,
    ) -> FittedModel:
        """Fit every member as its own candidate would (its `fit_models`), one after the other, into the folder
        `checkpoint`; the ensemble's forecast is their mean, its validation loss that mean's (MAE, as theirs)."""
        checkpoint.mkdir(parents=True, exist_ok=True)
        fitted = [
            member.fit_models(cfg, batches, val, target_scale, path, prefixed(on_epoch, member.architecture), workdir)
            for member, path in zip(MEMBERS, member_checkpoints(checkpoint), strict=True)
        ]

        def predict(inputs: np.ndarray) -> np.ndarray:
            return np.mean([f.predict(inputs) for f in fitted], axis=0)

        metrics = {f"{m.architecture}_{k}": v for m, f in zip(MEMBERS, fitted) for k, v in f.metrics.items()}
        metrics["best_val_loss"] = float(np.mean(np.abs(predict(val.inputs) - val.targets)))
        params = {f"{m.architecture}_{k}": v for m, f in zip(MEMBERS, fitted) for k, v in f.params.items()}
        params["parameters"] = sum(f.params["parameters"] for f in fitted)
        return FittedModel(predict, metrics, params)

    def model_params(self, cfg: StockConfig) -> dict:
        member_params = {f"{m.architecture}_{k}": v for m in MEMBERS for k, v in m.model_params(cfg).items()}
        return {
            "members": ",".join(m.architecture for m in MEMBERS),
            "combination": "mean of the members' log-return forecasts",
            **member_params,
        }

    def export_onnx(self, checkpoint: Path, out_path: Path) -> None:
        """Each member through the shared tf2onnx export, then one graph averaging them."""
        from mlops_onnx.models.keras_native import export_keras_onnx
        from mlops_onnx.onnx_ensemble import mean_ensemble

        with tempfile.TemporaryDirectory(prefix="ensemble-members-") as tmp:
            member_paths = []
            for member, keras_file in zip(MEMBERS, member_checkpoints(checkpoint), strict=True):
                path = Path(tmp) / f"{member.architecture}.onnx"
                export_keras_onnx(keras_file, path, self.onnx_input_name, "float32")
                member_paths.append(path)
            mean_ensemble(member_paths, out_path)

    def native_predictors(
        self, checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
    ) -> dict[str, Predictor]:
        """The mean of the Keras members: eager, `predict`, and with `compiled` both traced in one `tf.function`."""
        from mlops_onnx.models.keras_native import mean_keras_predictors

        return mean_keras_predictors(member_checkpoints(checkpoint), settings, device, compiled)


SPEC = StockEnsembleSpec()
