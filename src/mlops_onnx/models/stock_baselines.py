"""Stock prices, baseline candidates: the naive, drift and ETS forecasts as models of the forecaster's interface.

A baseline is a candidate like any model, so the night's choice (`decisions.choose`: the simplest candidate
unless a more complex one beats every simpler one significantly on the validation rows) always has what a
model must beat, and serves it when no model wins clearly. Each is a `StockSpec` in everything but the fit:
the same tickers, scaler, splits, metrics, reports and evaluation rows as the LSTM under the same settings
(so its validation and test rows have the LSTM's ids, `ticker:YYYY-MM-DD`), and an ONNX model with the
LSTM's input (`window`: [batch, window, len(FEATURES)] float32, the `FeatureScaler`-scaled features) and
output (`log_return`: [batch, 1], the next-day log return). The scaler JSON is its preprocessing, as the LSTM's.

Every baseline reads the window's `ret_1` column x (scaled) and unscales it, r = x·std + mean, with the
scaler's `ret_1` statistics. The scaler clips scaled features at ±`feature_clip` (8) standard deviations, so
a day whose return lies beyond that (a split, a bad tick) counts at the clipped value: the baselines see what
the neural models see, not the raw return. Over the window's days j (oldest first) the forecast is Σ w_j·r_j:

- naive: w = 0, the forecast is 0 (tomorrow's close is today's); the graph is a `ConstantOfShape`, whatever
  the input.
- drift: w_j = 1/window, the mean daily log return over the window (`ReduceMean`): a random walk with drift
  whose drift is the last `window` days' (`baselines.drift_forecast`, for the reports, takes the whole
  training part instead).
- ets: simple exponential smoothing of the daily log return over the window, w_j ∝ α(1-α)^k for the day k
  days before the last, normalised to sum 1 over the window: a linear filter, one `MatMul`. α is the one of
  `ALPHAS` whose forecasts have the least squared error on the training windows (never a validation day).

The checkpoint, `baseline.json`, holds the weights, α, the window and the `ret_1` statistics; the native
model is the same formula in numpy (`forecast`), which parity compares with ONNX Runtime and the benchmarks
time. Their ONNX graphs have 1, 4 and window + 2 initializer values (the complexity `decisions.choose`
orders candidates by): naive, drift, ets, then the neural models. No quantized variant: int8 or fp16 weights
of a graph this small save nothing and cost accuracy, so each serves its fp32 model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlops_onnx.models import ONNX_OPSET, EpochCallback, Predictor
from mlops_onnx.models.stock_splits import SplitData, TrainingWindows
from mlops_onnx.models.stocks import FittedModel, StockConfig, StockSpec
from mlops_onnx.settings import Settings
from mlops_onnx.timeseries import FEATURES

RET_1 = FEATURES.index("ret_1")
ALPHAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # ets: the smoothing constants tried on the training windows
OUTPUT = "log_return"


def ses_weights(alpha: float, window: int) -> np.ndarray:
    """Simple exponential smoothing's weights over a window, oldest day first: α(1-α)^k for the day k days before
    the last, normalised to sum 1 (α = 1: the last day's return alone)."""
    days_back = np.arange(window - 1, -1, -1)
    weights = alpha * (1.0 - alpha) ** days_back
    return weights / weights.sum()


def unscaled_returns(inputs: np.ndarray, model: dict) -> np.ndarray:
    """The daily log returns of each window [rows, window], from its scaled (and clipped) `ret_1` column."""
    return inputs[:, :, RET_1].astype(np.float64) * model["ret_1_std"] + model["ret_1_mean"]


def forecast(model: dict, inputs: np.ndarray) -> np.ndarray:
    """The baseline's native model (a `baseline.json`'s dict): Σ_j weights_j · r_j for each window [rows]."""
    return (unscaled_returns(inputs, model) @ np.asarray(model["weights"], dtype=np.float64)).astype(np.float32)


def choose_alpha(training: TrainingWindows, model: dict, chunk: int = 65536) -> tuple[float, dict[str, float]]:
    """The α of `ALPHAS` whose forecasts have the least mean squared error on the training windows (the smaller
    α on a tie), and every α's error."""
    squared = np.zeros(len(ALPHAS))
    weights = np.stack([ses_weights(alpha, training.window) for alpha in ALPHAS], axis=1)
    for start in range(0, len(training.origins), chunk):  # the windows of one chunk at a time, never all
        picked = slice(start, start + chunk)
        predicted = unscaled_returns(training.inputs(picked), model) @ weights
        squared += ((predicted - training.targets[picked, None].astype(np.float64)) ** 2).sum(axis=0)
    errors = squared / max(len(training.origins), 1)
    return ALPHAS[int(np.argmin(errors))], {f"{alpha:g}": float(e) for alpha, e in zip(ALPHAS, errors)}


class StockBaselineSpec(StockSpec):
    """One baseline (`architecture`: naive, drift or ets) of the stock forecaster."""

    variants = ()  # fp32 only: see the module's docstring
    framework = "numpy"
    # numpy computes the baseline; the Keras toolchain comes with `StockSpec`'s shared code, whose modules
    # import it for the neural candidates (an upgrade retrains a baseline too: seconds).
    toolchain = (*StockSpec.toolchain, "numpy")
    checkpoint_name = "baseline.json"
    # No speed target: the native path is a numpy dot product of `window` weights, which ONNX Runtime's
    # per-call overhead cannot beat; the benchmark still times both.
    speedup_target = None

    def __init__(self, architecture: str) -> None:
        if architecture not in ("naive", "drift", "ets"):
            raise ValueError(f"no stock baseline {architecture!r}: naive, drift or ets")
        self.architecture = architecture

    def fit_models(
        self,
        cfg: StockConfig,
        batches: TrainingWindows,
        val: SplitData,
        target_scale: float,
        checkpoint: Path,
        on_epoch: EpochCallback,
        workdir: Path | None = None,
    ) -> FittedModel:
        """Write `baseline.json` (ets: α chosen on the training windows `batches`): no epochs, no Keras."""
        scaler = batches.scaler
        model = {
            "baseline": self.architecture,
            "formula": FORMULAS[self.architecture],
            "window": cfg.window,
            "ret_1_mean": float(scaler.mean[RET_1]),
            "ret_1_std": float(scaler.std[RET_1]),
            "clip": float(scaler.clip),
            "alpha": None,
        }
        metrics, params = {}, {"parameters": 0, "loss": "none: nothing is fitted"}
        if self.architecture == "naive":
            weights = np.zeros(cfg.window)
        elif self.architecture == "drift":
            weights = np.full(cfg.window, 1.0 / cfg.window)
        else:
            alpha, errors = choose_alpha(batches, model)
            weights = ses_weights(alpha, cfg.window)
            model |= {"alpha": alpha, "training_mse_by_alpha": errors}
            metrics["alpha"] = alpha
            params = {"parameters": 1, "loss": "mse of the training windows (alpha)", "alpha_grid": str(ALPHAS)}
        model["weights"] = weights.tolist()
        checkpoint.write_text(json.dumps(model, indent=2))

        def predict(inputs: np.ndarray) -> np.ndarray:
            return forecast(model, inputs)

        metrics["best_val_loss"] = float(np.mean(np.abs(predict(val.inputs) - val.targets)))  # MAE, as the models'
        return FittedModel(predict, metrics, params)

    def model_params(self, cfg: StockConfig) -> dict:
        return {"baseline": self.architecture, "formula": FORMULAS[self.architecture]}

    def export_onnx(self, checkpoint: Path, out_path: Path) -> None:
        import onnx

        model = baseline_onnx(json.loads(checkpoint.read_text()), self.onnx_input_name)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(out_path))

    def native_predictors(
        self, checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
    ) -> dict[str, Predictor]:
        """The formula in numpy, on the CPU only (nothing to compile)."""
        if device != "cpu":
            return {}
        model = json.loads(Path(checkpoint).read_text())
        return {"native_eager": lambda inputs: forecast(model, inputs)[:, None]}


FORMULAS = {
    "naive": "0: tomorrow's close is today's",
    "drift": "the mean daily log return over the window",
    "ets": "simple exponential smoothing of the daily log return over the window, alpha on the training windows",
}


def baseline_onnx(model: dict, input_name: str):
    """The ONNX graph of a `baseline.json` (see the module's docstring), at `ONNX_OPSET`."""
    from onnx import TensorProto, helper

    window, kind = int(model["window"]), model["baseline"]
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", window, len(FEATURES)])]
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 1])]

    def scalar(name: str, value: float):
        return helper.make_tensor(name, TensorProto.FLOAT, [], [value])

    if kind == "naive":
        zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])  # an attribute, not a weight
        nodes = [
            helper.make_node("Shape", [input_name], ["batch"], start=0, end=1),
            helper.make_node("Concat", ["batch", "one"], ["output_shape"], axis=0),
            helper.make_node("ConstantOfShape", ["output_shape"], [OUTPUT], value=zero),
        ]
        initializers = [helper.make_tensor("one", TensorProto.INT64, [1], [1])]
    else:
        column = helper.make_node("Gather", [input_name, "ret_1_column"], ["ret_1_scaled"], axis=2)
        initializers = [helper.make_tensor("ret_1_column", TensorProto.INT64, [], [RET_1])]
        if kind == "drift":
            nodes = [
                column,
                helper.make_node("ReduceMean", ["ret_1_scaled", "window_axis"], ["mean_scaled"], keepdims=1),
                helper.make_node("Mul", ["mean_scaled", "ret_1_std"], ["mean_return_centred"]),
                helper.make_node("Add", ["mean_return_centred", "ret_1_mean"], [OUTPUT]),
            ]
            initializers += [
                helper.make_tensor("window_axis", TensorProto.INT64, [1], [1]),
                scalar("ret_1_std", model["ret_1_std"]),
                scalar("ret_1_mean", model["ret_1_mean"]),
            ]
        else:  # Σ w_j (x_j·std + mean) = x · (w·std) + mean·Σw: the unscaling folded into the filter's weights
            weights = np.asarray(model["weights"], dtype=np.float64)
            nodes = [
                column,
                helper.make_node("MatMul", ["ret_1_scaled", "weights"], ["smoothed_centred"]),
                helper.make_node("Add", ["smoothed_centred", "offset"], [OUTPUT]),
            ]
            initializers += [
                helper.make_tensor("weights", TensorProto.FLOAT, [window, 1], (weights * model["ret_1_std"]).tolist()),
                scalar("offset", model["ret_1_mean"] * weights.sum()),
            ]
    graph = helper.make_graph(nodes, f"stock_{kind}", inputs, outputs, initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="mlops_onnx")
    proto.ir_version = 9
    return proto


NAIVE, DRIFT, ETS = (StockBaselineSpec(a) for a in ("naive", "drift", "ets"))
