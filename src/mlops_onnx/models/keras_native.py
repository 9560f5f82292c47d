"""What the Keras specs (fake news, stocks) share: one compile-and-fit with the epoch timer, one ONNX
export (tf2onnx at `ONNX_OPSET`), and native inference (eager call and `predict` of one model or the mean
of an ensemble's members, as many threads as ONNX Runtime gets). TensorFlow is imported inside each
function, never when this module loads.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlops_onnx.models import ONNX_OPSET, EpochCallback, Predictor
from mlops_onnx.settings import Settings

log = logging.getLogger(__name__)


def load_keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ info logs in task output
    import keras

    return keras


def epoch_timer(on_epoch: EpochCallback, logged: dict[str, str]):
    """A Keras callback passing each epoch's logs (our metric name -> Keras log name) and its wall time to
    `on_epoch`, numbered from 1."""
    keras = load_keras()

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            metrics = {name: float(logs[key]) for name, key in logged.items()}
            on_epoch(epoch + 1, {**metrics, "epoch_seconds": time.perf_counter() - self.started})

    return EpochTimer()


def compile_and_fit(
    model,
    train: Any,
    validation: tuple[np.ndarray, np.ndarray],
    *,
    learning_rate: float,
    loss: str,
    epochs: int,
    patience: int,
    on_epoch: EpochCallback,
    logged: dict[str, str],
    metrics: tuple[str, ...] = (),
    clipnorm: float | None = None,
    batch_size: int | None = None,
):
    """Adam, early stopping on the validation loss (the best weights restored) and the epoch timer.
    `train` is `(inputs, targets)` or a `keras.utils.PyDataset` of batches; returns the Keras history."""
    keras = load_keras()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=clipnorm), loss=loss, metrics=list(metrics))
    inputs, targets = train if isinstance(train, tuple) else (train, None)
    return model.fit(
        inputs,
        targets,
        validation_data=validation,
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
            epoch_timer(on_epoch, logged),
        ],
    )


def export_keras_onnx(checkpoint: Path, out_path: Path, input_name: str, input_dtype: str) -> None:
    """tf2onnx of a saved .keras model with one input named `input_name` and a dynamic batch axis."""
    keras = load_keras()
    import tensorflow as tf
    import tf2onnx

    model = keras.models.load_model(checkpoint)
    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.as_dtype(input_dtype), name=input_name)]
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET, output_path=str(out_path))


def keras_predictors(
    checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
) -> dict[str, Predictor]:
    """`native_eager` (model(x, training=False)) and `native_predict` (model.predict) of a saved .keras model;
    with `compiled`, `native_compiled`: the call traced once by `tf.function` for any batch size."""
    return mean_keras_predictors([checkpoint], settings, device, compiled)


def mean_keras_predictors(
    checkpoints: list[Path], settings: Settings, device: str = "cpu", compiled: bool = False
) -> dict[str, Predictor]:
    """`keras_predictors` of the mean output of saved .keras models that share their input (an ensemble's
    members; one checkpoint: that model's output as it is). The compiled call traces all of them in one graph."""
    if device != "cpu":  # tensorflow-cpu: the Keras models have no GPU to run on here
        return {}
    keras = load_keras()
    import tensorflow as tf

    try:  # as many threads as ONNX Runtime gets in the benchmark; possible only before TF's first op
        tf.config.threading.set_intra_op_parallelism_threads(settings.bench_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.warning(
            "TensorFlow already started in this process: Keras keeps %s intra-op thread(s), not %d",
            tf.config.threading.get_intra_op_parallelism_threads() or "all",
            settings.bench_threads,
        )
    models = [keras.models.load_model(checkpoint) for checkpoint in checkpoints]

    def mean(outputs: list) -> Any:
        return outputs[0] if len(outputs) == 1 else sum(outputs[1:], outputs[0]) / len(outputs)

    def eager(inputs: np.ndarray) -> np.ndarray:
        return mean([model(inputs, training=False).numpy() for model in models])

    def predict(inputs: np.ndarray) -> np.ndarray:
        return mean([model.predict(inputs, verbose=0) for model in models])

    predictors = {"native_eager": eager, "native_predict": predict}
    if compiled:
        signature = [tf.TensorSpec([None, *models[0].input_shape[1:]], models[0].inputs[0].dtype)]
        traced = tf.function(
            lambda x: mean([model(x, training=False) for model in models]),
            input_signature=signature,
            reduce_retracing=True,
        )

        def compiled_call(inputs: np.ndarray) -> np.ndarray:
            return traced(inputs).numpy()

        predictors["native_compiled"] = compiled_call
    return predictors
