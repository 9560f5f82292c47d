"""The scikit-learn floors (issue 25): trained on the sample, exported, and run by ONNX Runtime, which must give
scikit-learn's answers on the same rows; they read the neural candidates' inputs and validation rows."""

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA, settings_with, train_and_export

from mlops_onnx.models import load_spec
from mlops_onnx.models.fashion import TRAIN_FILE, image_ids, load_split, validation_split
from mlops_onnx.models.news_data import label_array, split_articles, text_ids, threshold_offset
from mlops_onnx.runtime import make_session
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.text import load_encoder, tokens
from mlops_onnx.variants import graph_op_types, onnx_parameters

LOGREG = load_spec("fashion_mnist_classifier", "logreg")
TFIDF = load_spec("fake_news_classifier", "tfidf")
CNN = load_spec("fashion_mnist_classifier", "cnn")


def onnx_outputs(path, inputs: np.ndarray) -> np.ndarray:
    session = make_session(path, "cpu")
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return settings_with(tmp_path_factory.mktemp("home"), MAX_TRAIN_ROWS="1000", MAX_TEST_ROWS="300")


@pytest.fixture(scope="module")
def fashion(settings, tmp_path_factory):
    """The logistic regression trained on the fashion sample (or synthetic images), and its ONNX file."""
    if HAS_SHARED_DATA:
        folder = SHARED_DATA / "fashionmnist"
    else:
        from mlops_onnx.sources.synthetic import write_fashion

        folder = tmp_path_factory.mktemp("fashion-data")
        write_fashion(folder, np.random.default_rng(0), (1000, 300))
    snapshot = Snapshot("fashionmnist", "0" * 64, folder, {})
    workdir = tmp_path_factory.mktemp("logreg")
    return snapshot, workdir, *train_and_export(LOGREG, snapshot, workdir, settings)


@pytest.fixture(scope="module")
def news(news_folder, settings, tmp_path_factory):
    """The TF-IDF model trained on the news sample (or synthetic articles), and its ONNX file."""
    snapshot = Snapshot("fake_news", "0" * 64, news_folder, {})
    workdir = tmp_path_factory.mktemp("tfidf")
    return snapshot, workdir, *train_and_export(TFIDF, snapshot, workdir, settings)


def test_logreg_onnx_takes_the_cnns_input_and_gives_scikit_learns_scores(fashion, settings):
    snapshot, workdir, result, onnx_path, _ = fashion
    session = make_session(onnx_path, "cpu")
    (image,), (logits,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.type, image.shape[1:]) == (CNN.onnx_input_name, "tensor(float)", [1, 28, 28])
    assert (logits.name, logits.shape[1:]) == ("logits", [10])
    assert graph_op_types(onnx_path) == {"Reshape", "MatMul", "Add"}  # no ai.onnx.ml op, no label branch
    assert onnx_parameters(onnx_path) == 784 * 10 + 10 + 2  # weights, intercepts, the Reshape's shape

    rows = LOGREG.evaluation_data(snapshot, settings, workdir)
    native = LOGREG.native_predictors(result.checkpoint, settings)["native_eager"](rows.inputs)
    onnx = onnx_outputs(onnx_path, rows.inputs)
    assert onnx.shape == native.shape == (len(rows.inputs), 10)
    assert np.max(np.abs(onnx - native)) <= 1e-4
    assert np.array_equal(onnx.argmax(1), native.argmax(1))


def test_logreg_learns_the_images(fashion):
    _, _, result, _, epochs = fashion
    assert result.metrics["test_accuracy"] >= (0.7 if HAS_SHARED_DATA else 0.5), result.metrics["test_accuracy"]
    assert [epoch for epoch, _ in epochs] == [1] and "val_accuracy" in epochs[0][1]
    assert result.params["parameters"] == 7850 and result.metrics["fit_iterations"] >= 1


def test_logreg_is_scored_on_the_cnns_validation_images(fashion, settings):
    snapshot, _, result, _, epochs = fashion
    cfg, cnn_cfg = LOGREG.train_config(settings), CNN.train_config(settings)
    assert (cfg.max_train_rows, cfg.validation_fraction, cfg.seed) == (
        cnn_cfg.max_train_rows,
        cnn_cfg.validation_fraction,
        cnn_cfg.seed,
    )
    images, labels = load_split(snapshot, TRAIN_FILE, cnn_cfg.max_train_rows)
    val_idx, train_idx = validation_split(len(images), cnn_cfg.validation_fraction, cnn_cfg.seed)
    scored = result.validation
    assert np.array_equal(scored.rows.ids, image_ids(images[val_idx]))
    assert np.array_equal(scored.rows.targets, labels[val_idx]) and scored.outputs.shape == (len(val_idx), 10)
    assert not set(scored.rows.ids) & set(image_ids(images[train_idx]))
    assert LOGREG.quality(scored.outputs, scored.rows.targets) == pytest.approx(epochs[0][1]["val_accuracy"])


def test_tfidf_onnx_gives_the_native_probabilities(news, settings):
    snapshot, workdir, result, onnx_path, _ = news
    rows = TFIDF.evaluation_data(snapshot, settings, workdir)
    native = TFIDF.native_predictors(result.checkpoint, settings)["native_eager"](rows.inputs)
    onnx = onnx_outputs(onnx_path, rows.inputs)
    assert onnx.shape == native.shape == (len(rows.inputs), 1)
    assert np.max(np.abs(onnx - native)) <= 1e-5
    assert np.array_equal(TFIDF.labels(onnx), TFIDF.labels(native))
    assert onnx_parameters(onnx_path) <= 2 * (TFIDF.train_config(settings).vocab_size - 2) + 7


def test_tfidf_is_scikit_learns_tfidfvectorizer_and_logistic_regression_on_the_same_texts(news, settings):
    """An independent fit of TfidfVectorizer + LogisticRegression on the cleaned texts, reading the same first
    words of each, with the tokenizer's words as its vocabulary: ONNX Runtime gives its probabilities."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    snapshot, workdir, result, onnx_path, _ = news
    cfg = TFIDF.train_config(settings)
    splits = split_articles(snapshot.path, cfg)
    tokenizer = load_encoder(workdir)
    vectorizer = TfidfVectorizer(
        analyzer=lambda text: tokens(text)[: cfg.sequence_length], vocabulary=tokenizer.words, sublinear_tf=True
    )
    classifier = LogisticRegression(C=cfg.inverse_l2, max_iter=cfg.max_iter)
    classifier.fit(vectorizer.fit_transform(splits.train["clean"]), label_array(splits.train))
    classifier.intercept_ -= threshold_offset(result.metrics["decision_threshold"])
    expected = classifier.predict_proba(vectorizer.transform(splits.test["clean"]))[:, 1]
    onnx = onnx_outputs(onnx_path, tokenizer.encode(splits.test["clean"]))[:, 0]
    assert np.max(np.abs(onnx - expected)) <= 1e-5


def test_tfidf_learns_and_says_at_0_5_what_its_validation_threshold_said(news):
    _, _, result, _, epochs = news
    metrics, scored = result.metrics, result.validation
    assert metrics["test_f1"] >= (0.85 if HAS_SHARED_DATA else 0.7), metrics["test_f1"]
    assert 0 < metrics["decision_threshold"] < 1 and [e for e, _ in epochs] == [1]
    rows = len(scored.rows.targets)
    assert scored.outputs.shape == (rows,)  # one probability a row, as the LSTM's and MiniLM's
    assert TFIDF.quality(scored.outputs, scored.rows.targets) == pytest.approx(
        metrics["val_f1_at_threshold"], abs=2 / rows
    )


def test_tfidf_is_scored_on_the_lstms_validation_articles(news, settings):
    snapshot, _, result, _, _ = news
    lstm = load_spec("fake_news_classifier", "lstm")
    val = split_articles(snapshot.path, lstm.train_config(settings)).val
    assert np.array_equal(result.validation.rows.ids, text_ids(val["clean"]))
    assert np.array_equal(result.validation.rows.targets, label_array(val))


def test_the_api_serves_the_tfidf_model_through_its_tokenizer(news, settings):
    """What the API's worker does with a loaded version (`serving.holder`): clean, encode with the version's
    preprocessing files, one ONNX Runtime call; the same probability as scikit-learn on the same ids."""
    from mlops_onnx.serving.holder import LoadedModel
    from mlops_onnx.text import clean_text

    snapshot, workdir, result, onnx_path, _ = news
    test = split_articles(snapshot.path, TFIDF.train_config(settings)).test.head(20)
    articles = [SimpleNamespace(title=t, text=x) for t, x in zip(test["title"], test["text"])]
    tokenizer = load_encoder(workdir)
    served = LoadedModel("fake_news_classifier", "1", "champion", "fp32", make_session(onnx_path), tokenizer, {}, {})
    probability = served.predict(articles)
    ids = tokenizer.encode([clean_text(a.title, a.text) for a in articles])
    native = TFIDF.native_predictors(result.checkpoint, settings)["native_eager"](ids)[:, 0]
    assert probability.shape == (20,) and np.max(np.abs(probability - native)) <= 1e-5
