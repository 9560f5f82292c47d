"""Native inference for the Keras specs (fake news, stocks): eager call and `predict`, same threads as ONNX Runtime."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from mlops_onnx.models import Predictor
from mlops_onnx.settings import Settings

log = logging.getLogger(__name__)


def keras_predictors(
    checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
) -> dict[str, Predictor]:
    """`native_eager` (model(x, training=False)) and `native_predict` (model.predict) of a saved .keras model;
    with `compiled`, `native_compiled`: the call traced once by `tf.function` for any batch size."""
    if device != "cpu":  # tensorflow-cpu: the Keras models have no GPU to run on here
        return {}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
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
    model = keras.models.load_model(checkpoint)

    def eager(inputs: np.ndarray) -> np.ndarray:
        return model(inputs, training=False).numpy()

    def predict(inputs: np.ndarray) -> np.ndarray:
        return model.predict(inputs, verbose=0)

    predictors = {"native_eager": eager, "native_predict": predict}
    if compiled:
        signature = [tf.TensorSpec([None, *model.input_shape[1:]], model.inputs[0].dtype)]
        traced = tf.function(lambda x: model(x, training=False), input_signature=signature, reduce_retracing=True)

        def compiled_call(inputs: np.ndarray) -> np.ndarray:
            return traced(inputs).numpy()

        predictors["native_compiled"] = compiled_call
    return predictors
