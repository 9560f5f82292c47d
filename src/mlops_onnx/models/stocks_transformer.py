"""Stock prices, transformer candidate: one small Keras self-attention encoder block in place of the LSTM.

Everything but the layers between the input window and the log-return head is `StockSpec`'s: the
features, windows, target (next-day log return), scaler, splits, training loop, baselines, metrics,
evaluation rows and the tf2onnx export at `ONNX_OPSET`. The block:

    window [batch, window, 10]
    -> causal Conv1D (kernel 3) to `units` channels: the input projection, and the order signal
       (self-attention alone is blind to the order of the days; a causal convolution tells each day
       from its predecessors without a custom positional layer, so the .keras file loads anywhere)
    -> MultiHeadAttention (2 heads) + residual, LayerNorm; feed-forward (2·units, ReLU) + residual, LayerNorm
    -> the last day's vector (Cropping1D + Flatten) -> dropout -> the shared zero-initialised head.

tf2onnx turns it into these ONNX ops (listed from the exported graph of the quick profile; the test
checks the list): Add, Cast, Concat, Conv, Gather, MatMul, Mul, Neg, Pad, Reciprocal, ReduceMean, Relu,
Reshape, Shape, Slice, Softmax, Sqrt, Squeeze, Sub, Transpose, Unsqueeze. The causal convolution is a `Pad`
and a `Conv`; the attention's einsums became `MatMul`/`Transpose`/`Reshape`; each LayerNormalization is
spelled out (`ReduceMean`, `Sub`, `Mul`, `Sqrt`, `Reciprocal`), not the fused opset-17 op; no `Loop` or `Scan`.
"""

from __future__ import annotations

from mlops_onnx.models.stocks import StockConfig, StockSpec, forecast_head
from mlops_onnx.timeseries import FEATURES

HEADS = 2


class StockTransformerSpec(StockSpec):
    architecture = "transformer"

    def build_model(self, cfg: StockConfig, target_scale: float):
        from mlops_onnx.models.keras_native import load_keras

        keras = load_keras()
        layers = keras.layers
        inputs = keras.Input((cfg.window, len(FEATURES)), name="window")
        x = layers.Conv1D(cfg.units, 3, padding="causal", name="causal_projection")(inputs)
        attended = layers.MultiHeadAttention(
            HEADS, max(cfg.units // HEADS, 1), dropout=cfg.dropout, name="self_attention"
        )(x, x)
        x = layers.LayerNormalization(name="attention_norm")(layers.Add(name="attention_residual")([x, attended]))
        hidden = layers.Dense(2 * cfg.units, activation="relu", name="feed_forward_in")(x)
        hidden = layers.Dense(cfg.units, name="feed_forward_out")(hidden)
        x = layers.LayerNormalization(name="feed_forward_norm")(layers.Add(name="feed_forward_residual")([x, hidden]))
        x = layers.Flatten(name="last_day")(layers.Cropping1D((cfg.window - 1, 0), name="keep_last_day")(x))
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
        return keras.Model(inputs, forecast_head(keras, x, target_scale), name="stock_transformer")

    def model_params(self, cfg: StockConfig) -> dict:
        return {
            "encoder": "causal Conv1D(3) + MultiHeadAttention + feed-forward, post-norm",
            "attention_heads": HEADS,
            "model_width": cfg.units,
        }


SPEC = StockTransformerSpec()
