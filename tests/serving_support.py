"""A fake-news model version the serving tests register: a tiny real ONNX classifier with its tokenizer, in a
real (temporary) MLflow registry, as `registry._register` lays a version out. Shared by the in-process API
tests (tests/unit) and those that start real servers (tests/integration)."""

import onnx
from conftest import mlflow_client
from onnx import TensorProto, helper

from mlops_onnx.serving.artifacts import attach_serving_files
from mlops_onnx.text import Tokenizer, clean_text

NAME = "fake_news_classifier"
TEXTS = ["the senator said the bill passed", "shocking truth they hide from you", "markets rose on tuesday"]


def tiny_classifier(scale: float) -> onnx.ModelProto:
    """probability = sigmoid(scale * mean(token ids) - 1), shape [batch, 1]: real ONNX, fed int32 ids."""
    nodes = [
        helper.make_node("Cast", ["tokens"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ids"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "one"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("tokens", TensorProto.INT32, ["batch", 8])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


METRICS = {"test_f1": 0.95, "parity_fp32_max_abs_diff": 1e-7, "bench_cpu_onnx_fp32_b1_p50_ms": 0.2}


def register(home, folder, scale: float, alias: str = "champion", broken: bool = False) -> str:
    """A self-contained version as `registry._register` makes one: the tokenizer and the serving variant (here
    an int8 file, or, `broken`, a file ONNX Runtime cannot read) in its model directory; nothing in its run."""
    import mlflow

    client = mlflow_client(home)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.fit([clean_text("", t) for t in TEXTS], vocab_size=50, sequence_length=8)
    path = tokenizer.save(folder / "tokenizer.json")
    serving = folder / "model_int8_dynamic.opt.onnx"
    if broken:
        serving.write_bytes(b"not an onnx graph" * 64)
    else:
        onnx.save(tiny_classifier(scale), str(serving))
    with mlflow.start_run():
        mlflow.log_metrics(METRICS)
        info = mlflow.onnx.log_model(
            tiny_classifier(scale),
            name="model",
            save_as_external_data=False,
            onnx_execution_providers=["CPUExecutionProvider"],
            pip_requirements=["onnx", "onnxruntime"],  # not inferred: that spawns a Python process per model
        )
        attach_serving_files(info.model_id, "int8_dynamic", serving, [path], METRICS)
    version = mlflow.register_model(
        info.model_uri,
        NAME,
        tags={"serving_variant": "int8_dynamic", "data_hash": "ab" * 32, "parity_status": "passed"},
    )
    client.set_registered_model_alias(NAME, alias, version.version)
    return str(version.version)
