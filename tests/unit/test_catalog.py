"""Which candidates run tonight: `Pipeline.active`, the one place that decides it."""

from __future__ import annotations

import pytest

from mlops_onnx.catalog import PIPELINES

FAKE_NEWS, STOCKS, FASHION = (
    PIPELINES["fake_news_classifier"],
    PIPELINES["stock_forecaster"],
    PIPELINES["fashion_mnist_classifier"],
)


@pytest.fixture
def no_candidates_set(monkeypatch):
    for task in ("FASHION", "FAKE_NEWS", "STOCKS"):
        monkeypatch.delenv(f"MLOPS_CANDIDATES_{task}", raising=False)


def test_configured_data_runs_every_default_candidate(settings_env, no_candidates_set, tmp_path):
    settings = settings_env(MLOPS_DATA_SOURCE="local", MLOPS_DATA_DIR=str(tmp_path))
    assert FAKE_NEWS.active(settings) == ("lstm", "tfidf", "minilm")
    assert STOCKS.active(settings) == ("lstm", "transformer", "ensemble", "naive", "drift", "ets")
    assert FASHION.active(settings) == ("cnn", "logreg")  # MobileNetV2 only when named


def test_synthetic_data_runs_the_first_candidate_and_the_baselines_only_unless_named(settings_env, no_candidates_set):
    settings = settings_env(MLOPS_DATA_SOURCE="synthetic")
    assert [p.active(settings) for p in (FAKE_NEWS, STOCKS, FASHION)] == [
        ("lstm", "tfidf"),
        ("lstm", "naive", "drift", "ets"),
        ("cnn", "logreg"),
    ]
    settings = settings_env(MLOPS_CANDIDATES_FAKE_NEWS="minilm,lstm", MLOPS_CANDIDATES_STOCKS="ensemble")
    assert (FAKE_NEWS.active(settings), STOCKS.active(settings)) == (("minilm", "lstm"), ("ensemble",))


def test_the_baselines_are_candidates_with_their_own_specs():
    from mlops_onnx.models import load_spec

    floors = {p.task: [c.architecture for c in p.candidates if c.baseline] for p in (FAKE_NEWS, FASHION)}
    assert floors == {"fake_news": ["tfidf"], "fashion": ["logreg"]}  # the scikit-learn floors
    baselines = [c.architecture for c in STOCKS.candidates if c.baseline]
    assert baselines == ["naive", "drift", "ets"]
    for architecture in baselines:
        spec = load_spec(STOCKS.model, architecture)
        assert (spec.architecture, spec.variants, spec.framework) == (architecture, (), "numpy")


def test_an_unknown_candidate_is_named_with_the_known_ones(settings_env, no_candidates_set):
    settings = settings_env(MLOPS_CANDIDATES_STOCKS="lstm,prophet")
    with pytest.raises(ValueError, match="MLOPS_CANDIDATES_STOCKS names prophet.*lstm, transformer, ensemble, naive"):
        STOCKS.active(settings)
