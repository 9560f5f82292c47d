"""The fake-news model: leakage handling, tokenizer identity, and a real Keras -> tf2onnx -> ONNX Runtime trip."""

import numpy as np
import onnx
import pandas as pd
import pytest
from conftest import settings_with, train_and_export

from mlops_onnx.models import ONNX_OPSET
from mlops_onnx.models.fake_news import SPEC, FakeNewsConfig, leakage_probe
from mlops_onnx.models.news_data import (
    choose_threshold,
    deduplicate,
    load_articles,
    load_liar,
    split_articles,
    text_ids,
)
from mlops_onnx.runtime import make_session, run_batched
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.text import Tokenizer, clean_text
from mlops_onnx.variants import LOOP_OPS, graph_op_types


@pytest.fixture(scope="module")
def quick_settings(tmp_path_factory):
    return settings_with(tmp_path_factory.mktemp("home"), EPOCHS="2")


@pytest.fixture(scope="module")
def trained(news_folder, quick_settings, tmp_path_factory):
    """Quick real training on the sample, and the real tf2onnx export of the checkpoint."""
    workdir = tmp_path_factory.mktemp("news-work")
    snapshot = Snapshot("fake_news", "0" * 64, news_folder, {})
    return snapshot, workdir, *train_and_export(SPEC, snapshot, workdir, quick_settings)


def test_no_article_is_in_two_splits(news_folder):
    splits = split_articles(news_folder, FakeNewsConfig())
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        assert not set(parts[a]["clean"]) & set(parts[b]["clean"]), (a, b)
        pairs = lambda frame: set(zip(frame["title"], frame["text"]))  # noqa: E731
        assert not pairs(parts[a]) & pairs(parts[b]), (a, b)
    assert splits.counts["dedup_exact_rows"] >= 1  # both the real and the synthetic files hold a duplicate
    assert abs(splits.test["label"].mean() - splits.train["label"].mean()) < 0.02  # stratified


def test_split_is_the_same_on_every_call(news_folder):
    first, second = (split_articles(news_folder, FakeNewsConfig()) for _ in range(2))
    assert first.test.index.equals(second.test.index) and first.train["clean"].equals(second.train["clean"])


def test_duplicates_go_before_the_split_and_conflicting_labels_are_dropped():
    body = "The senate voted on the bill on Tuesday."
    articles = pd.DataFrame(
        {
            "title": ["Vote", "Vote", "VOTE", "Other", "Other", "BREAKING: the vote", "Title only", "Title two"],
            "text": [
                body,
                body,
                "WASHINGTON (Reuters) -  " + body.upper(),
                "Same words.",
                "Same words.",
                body,
                "",
                " ",
            ],
            "subject": ["News", "politics", "politicsNews", "News", "worldnews", "News", "News", "News"],
            "date": ["Dec 31, 2017", "2017-12-31", "December 31, 2017 ", "x", "y", "z", "z", "z"],
            "label": [1, 1, 1, 1, 0, 1, 1, 1],
        }
    )
    articles["clean"] = [clean_text(t, x) for t, x in zip(articles["title"], articles["text"])]
    kept, counts = deduplicate(articles)
    # The same body under another title goes too; two title-only articles are not duplicates of each other.
    assert kept["clean"].tolist() == ["vote the senate voted on the bill on tuesday.", "title only", "title two"]
    assert counts == {
        "dedup_conflicting_label_rows": 2.0,
        "dedup_exact_rows": 1.0,
        "dedup_normalised_rows": 1.0,
        "dedup_same_body_rows": 1.0,
    }


def test_subject_and_date_never_reach_the_model_input(trained, quick_settings, tmp_path):
    snapshot, workdir, _, _, _ = trained
    for name in ("Fake.csv", "True.csv"):
        frame = pd.read_csv(snapshot.path / name, dtype=str, keep_default_na=False)
        frame.assign(subject="politicsNews" if name == "Fake.csv" else "News", date="garbage").to_csv(
            tmp_path / name, index=False
        )
    swapped = Snapshot("fake_news", "1" * 64, tmp_path, {})
    rows = SPEC.evaluation_data(snapshot, quick_settings, workdir)
    swapped_rows = SPEC.evaluation_data(swapped, quick_settings, workdir)
    assert np.array_equal(rows.inputs, swapped_rows.inputs) and np.array_equal(rows.targets, swapped_rows.targets)
    assert np.array_equal(rows.ids, swapped_rows.ids)
    articles, _ = load_articles(snapshot.path)
    assert not articles["clean"].str.contains("reuters").any()
    assert not articles["clean"].str.contains("politicsnews").any()


def test_evaluation_data_is_the_test_split_through_the_saved_tokenizer(trained, quick_settings):
    snapshot, workdir, result, _, _ = trained
    assert result.preprocessing == [workdir / "tokenizer.json"]
    rows = SPEC.evaluation_data(snapshot, quick_settings, workdir)
    inputs, labels = rows.inputs, rows.targets
    test = split_articles(snapshot.path, SPEC.train_config(quick_settings)).test
    tokenizer = Tokenizer.load(workdir / "tokenizer.json")
    assert np.array_equal(inputs, tokenizer.encode(test["clean"]))
    assert list(rows.ids) == list(text_ids(test["clean"])) and len(set(rows.ids)) == len(rows.ids)
    assert inputs.dtype == np.int32 and inputs.shape == (len(test), tokenizer.sequence_length)
    assert labels.tolist() == test["label"].tolist() and len(labels) == result.metrics["test_rows"]


def test_quick_training_reports_metrics_probes_and_liar(trained):
    _, _, result, _, epochs = trained
    metrics = result.metrics
    for key in (
        "test_accuracy",
        "test_precision",
        "test_recall",
        "test_f1",
        "test_roc_auc",
        "test_macro_f1",
        "test_accuracy_raw_text",
        "leakage_probe_subject_date_accuracy",
        "leakage_probe_date_accuracy",
        "leakage_probe_reuters_marker_accuracy",
        "liar_accuracy",
        "liar_f1",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test_f1"] > 0.6 and metrics["liar_rows"] > 0
    assert metrics["leakage_probe_subject_date_accuracy"] > 0.9  # the shortcut the model is kept away from
    assert [e for e, _ in epochs] == [1, 2] and {"train_loss", "val_loss", "val_accuracy"} <= set(epochs[0][1])
    assert result.checkpoint.name == "model.keras"
    assert "confusion_matrix.png" in {p.name for p in result.artifacts}
    assert result.params["recurrent_layer"] == "LSTM" and result.params["onnx_input_dtype"] == "int32"


def test_leakage_probe_without_the_shortcuts_only_finds_the_majority_class(news_folder):
    splits = split_articles(news_folder, FakeNewsConfig())
    for part in (splits.train, splits.test):
        part["subject"], part["date"], part["text"] = "News", "December 1, 2017", "WASHINGTON (Reuters) - words"
    probe = leakage_probe(splits, seed=0)
    fake_share = splits.test["label"].mean()
    assert probe["leakage_probe_subject_date_accuracy"] <= max(fake_share, 1 - fake_share) + 1e-9
    assert probe["leakage_probe_reuters_marker_accuracy"] == pytest.approx(1 - fake_share)


def test_export_is_one_fused_lstm_with_a_dynamic_batch(trained):
    _, _, _, onnx_path, _ = trained
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == ONNX_OPSET
    (tokens,) = model.graph.input
    assert tokens.name == "tokens" and tokens.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert tokens.type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    ops = graph_op_types(onnx_path)
    assert "LSTM" in ops and not ops & LOOP_OPS, sorted(ops)
    session = make_session(onnx_path)
    for batch in (1, 5):
        out = session.run(None, {"tokens": np.zeros((batch, tokens.type.tensor_type.shape.dim[1].dim_value), np.int32)})
        assert out[0].shape == (batch, 1)


def test_onnx_fp32_matches_keras_on_the_whole_test_split(trained, quick_settings):
    snapshot, workdir, result, onnx_path, _ = trained
    rows = SPEC.evaluation_data(snapshot, quick_settings, workdir)
    inputs, labels = rows.inputs, rows.targets
    natives = SPEC.native_predictors(result.checkpoint, quick_settings)
    assert set(natives) == {"native_eager", "native_predict"}
    eager = natives["native_eager"](inputs)
    onnx_out = run_batched(make_session(onnx_path), inputs)
    assert float(np.abs(eager - onnx_out).max()) <= 1e-4
    assert np.array_equal(SPEC.labels(eager), SPEC.labels(onnx_out))
    assert np.abs(natives["native_predict"](inputs) - eager).max() <= 1e-5
    assert SPEC.quality(onnx_out, labels) == pytest.approx(result.metrics["test_f1"], abs=1e-9)
    assert SPEC.native_predictors(result.checkpoint, quick_settings, device="cuda") == {}


def test_liar_labels_map_to_binary_and_a_missing_liar_is_noted(tmp_path):
    rows = [
        [f"{i}.json", label, f"Statement {label}.", *["x"] * 11]
        for i, label in enumerate(["pants-fire", "false", "barely-true", "half-true", "mostly-true", "true"])
    ]
    (tmp_path / "liar").mkdir()
    (tmp_path / "liar" / "train.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n")
    texts, labels, note = load_liar(tmp_path / "liar", None)
    assert labels.tolist() == [1, 1, 1, 0, 0, 0] and texts[0] == "statement pants-fire."
    assert "6 statements" in note
    texts, labels, note = load_liar(tmp_path / "missing", None)
    assert texts == [] and len(labels) == 0 and "liar_rows=0" in note


def test_an_article_keeps_its_split_when_the_snapshot_grows(news_folder, tmp_path):
    """Splits by text hash: adding articles (a new snapshot) never moves an earlier test article into training,
    so tonight's test rows are rows the champion never trained on."""
    cfg = FakeNewsConfig()
    before = split_articles(news_folder, cfg)
    grown = tmp_path / "grown"
    grown.mkdir()
    for name in ("Fake.csv", "True.csv"):
        frame = pd.read_csv(news_folder / name, dtype=str, keep_default_na=False)
        extra = frame.head(300).assign(title=lambda f: "Update: " + f["title"], text=lambda f: f["text"] + " More.")
        pd.concat([extra, frame]).to_csv(grown / name, index=False)  # new articles, and a new file order
    after = split_articles(grown, cfg)
    ids = {
        name: set(text_ids(frame["clean"]))
        for name, frame in (
            ("test", before.test),
            ("train", after.train),
            ("val", after.val),
            ("after_test", after.test),
        )
    }
    assert ids["test"] and ids["test"] <= ids["after_test"]
    assert not ids["test"] & ids["train"] and not ids["test"] & ids["val"]
    assert len(after.train) > len(before.train)  # the new articles went somewhere


def test_the_decision_threshold_is_chosen_on_validation_and_is_the_models_half(trained, quick_settings):
    """The threshold that maximises validation F1 moved the last bias: at 0.5 the saved model flags what it
    flagged at that threshold, its validation outputs score that F1, and they are the validation rows'."""
    snapshot, workdir, result, _, _ = trained
    metrics, validation = result.metrics, result.validation
    assert 0.0 < metrics["decision_threshold"] < 1.0
    val = split_articles(snapshot.path, SPEC.train_config(quick_settings)).val
    assert validation.rows.ids.tolist() == text_ids(val["clean"]).tolist()
    assert SPEC.quality(validation.outputs, validation.rows.targets) == pytest.approx(metrics["val_f1_at_threshold"])
    assert choose_threshold(validation.outputs, validation.rows.targets)[1] == pytest.approx(
        metrics["val_f1_at_threshold"]
    )
