"""The night's candidate is chosen by paired tests on the validation rows every candidate shares: a more
complex candidate only if it beats every simpler one significantly, else the simplest (`decisions.choose`);
and a binary classifier's decision threshold is the one that maximises validation F1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_onnx.decisions import choose
from mlops_onnx.models import Scored, load_spec
from mlops_onnx.models import TestRows as Rows
from mlops_onnx.models.news_data import choose_threshold, threshold_offset

FASHION = load_spec("fashion_mnist_classifier")
NEWS = load_spec("fake_news_classifier")
STOCKS = load_spec("stock_forecaster")


def logits_right_on(targets: np.ndarray, right: np.ndarray) -> np.ndarray:
    """10-class logits whose argmax is the target where `right`, another class elsewhere."""
    labels = np.where(right, targets, (targets + 1) % 10)
    return np.eye(10, dtype=np.float32)[labels]


def classifier_scores(n: int, accuracy: dict[str, float], seed: int = 0) -> dict[str, Scored]:
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 10, n)
    rows = Rows(np.array([f"img{i}" for i in range(n)]), np.empty(0, np.float32), targets)
    return {name: Scored(rows, logits_right_on(targets, rng.random(n) < acc)) for name, acc in accuracy.items()}


def test_a_complex_model_is_chosen_only_when_it_beats_every_simpler_one():
    scored = classifier_scores(3000, {"floor": 0.80, "small": 0.81, "big": 0.90})
    choice = choose(FASHION, scored, {"floor": 10, "small": 100, "big": 1000}, alpha=0.05)
    assert choice.chosen == "big"
    assert choice.tests[("big", "floor")].p_value < 1e-6 and choice.tests[("big", "small")].p_value < 1e-6
    assert choice.tests[("big", "floor")].alternative == "greater"  # the claim "more accurate", one-sided
    assert set(choice.tests) == {("small", "floor"), ("big", "floor"), ("big", "small")}
    assert choice.against_chosen("big") is None and choice.against_chosen("floor") is choice.tests[("big", "floor")]
    assert choice.reasons["big"].startswith("Chosen: val_accuracy 0.89")
    assert "significantly better" in choice.reasons["floor"] and choice.rows == 3000


def test_a_win_on_noise_leaves_the_simplest_candidate_chosen():
    # The biggest is right on 6 rows the floor gets wrong and wrong on 2 it gets right: better on these rows,
    # but P(X >= 6 | 8 discordant rows) = 0.145, so the floor is chosen.
    targets = np.arange(400) % 10
    floor_right = np.arange(400) < 320
    big_right = floor_right.copy()
    big_right[320:326], big_right[:2] = True, False
    rows = Rows(np.array([f"img{i}" for i in range(400)]), np.empty(0, np.float32), targets)
    scored = {
        "floor": Scored(rows, logits_right_on(targets, floor_right)),
        "big": Scored(rows, logits_right_on(targets, big_right)),
    }
    choice = choose(FASHION, scored, {"floor": 7850, "big": 200_000}, alpha=0.05)
    assert choice.scores["big"] > choice.scores["floor"]
    assert choice.chosen == "floor"
    assert choice.tests[("big", "floor")].p_value == pytest.approx(37 / 256)
    assert "not significantly better than the simpler floor" in choice.reasons["big"]
    assert choice.reasons["floor"].startswith("Chosen: the simplest candidate (7,850 ONNX weights)")


def test_a_candidate_that_beats_one_simpler_model_but_not_another_is_not_eligible():
    scored = classifier_scores(3000, {"floor": 0.86, "small": 0.80, "big": 0.865}, seed=1)
    choice = choose(FASHION, scored, {"floor": 1, "small": 2, "big": 3}, alpha=0.05)
    assert choice.tests[("big", "small")].p_value < 0.05 <= choice.tests[("big", "floor")].p_value
    assert choice.chosen == "floor"


def test_f1_is_chosen_on_by_its_own_paired_test():
    rng = np.random.default_rng(0)
    targets = (rng.random(2000) < 0.5).astype(np.int64)
    rows = Rows(np.array([f"a{i}" for i in range(2000)]), np.empty(0, np.int32), targets)
    good = np.where(rng.random(2000) < 0.95, targets, 1 - targets).astype(np.float32)
    weak = np.where(rng.random(2000) < 0.85, targets, 1 - targets).astype(np.float32)
    choice = choose(NEWS, {"tfidf": Scored(rows, weak), "lstm": Scored(rows, good)}, {"tfidf": 5, "lstm": 50}, 0.05)
    assert choice.chosen == "lstm" and choice.tests[("lstm", "tfidf")].test == "paired_permutation"
    assert choice.metric == "val_f1"


def stock_rows(n_days: int = 120, tickers: int = 5, seed: int = 0) -> tuple[Rows, np.ndarray]:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2016-01-04", periods=n_days)
    frames = []
    for t in range(tickers):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n_days + 1)))
        frames.append(pd.DataFrame({"ticker": f"T{t}", "day": days, "close_now": close[:-1], "close_next": close[1:]}))
    frame = pd.concat(frames, ignore_index=True)
    returns = np.log(frame["close_next"] / frame["close_now"]).to_numpy()
    extra = {k: frame[k].to_numpy() for k in ("close_now", "close_next", "ticker")}
    extra["day"] = frame["day"].to_numpy()
    ids = np.array([f"{t}:{str(d)[:10]}" for t, d in zip(frame["ticker"], frame["day"])])
    return Rows(ids, np.empty(0, np.float32), returns.astype(np.float32), extra), returns


def test_no_forecaster_beats_the_naive_baseline_on_noise_so_the_baseline_is_chosen():
    rows, returns = stock_rows()
    noise = np.random.default_rng(9).normal(0, 0.001, len(returns)).astype(np.float32)
    scored = {"naive": Scored(rows, np.zeros(len(returns), np.float32)), "lstm": Scored(rows, noise)}
    choice = choose(STOCKS, scored, {"naive": 0, "lstm": 50_000}, alpha=0.05)
    assert choice.chosen == "naive"
    assert choice.tests[("lstm", "naive")].test == "diebold_mariano_hln"
    assert choice.tests[("lstm", "naive")].alternative == "less"  # the claim: a lower daily MASE


def test_a_forecaster_that_sees_tomorrow_beats_the_baseline():
    rows, returns = stock_rows()
    scored = {"naive": Scored(rows, np.zeros(len(returns), np.float32)), "lstm": Scored(rows, 0.5 * returns)}
    choice = choose(STOCKS, scored, {"naive": 0, "lstm": 50_000}, alpha=0.05)
    assert choice.chosen == "lstm" and choice.scores["lstm"] < choice.scores["naive"] == pytest.approx(1.0)


def test_candidates_are_compared_on_the_rows_they_share_and_never_on_none():
    scored = classifier_scores(600, {"floor": 0.8, "big": 0.95})
    scored["big"] = scored["big"].subset(scored["big"].rows.ids[100:][::-1])  # fewer rows, another order
    choice = choose(FASHION, scored, {"floor": 1, "big": 2}, alpha=0.05)
    assert choice.rows == 500 and choice.chosen == "big"
    scored["big"] = scored["big"].subset(np.array([]))
    with pytest.raises(ValueError, match="share no validation row"):
        choose(FASHION, scored, {"floor": 1, "big": 2}, alpha=0.05)


def test_scored_round_trips_through_its_file(tmp_path):
    rows, returns = stock_rows(tickers=2, n_days=10)
    saved = Scored(rows, returns.astype(np.float32)).save(tmp_path / "v.npz")
    loaded = Scored.load(saved)
    assert loaded.rows.ids.tolist() == rows.ids.tolist()
    assert np.array_equal(loaded.outputs, returns.astype(np.float32))
    assert loaded.rows.extra["ticker"].tolist() == rows.extra["ticker"].tolist()
    assert pd.to_datetime(loaded.rows.extra["day"]).equals(pd.to_datetime(rows.extra["day"]))


def test_the_threshold_maximises_validation_f1_and_moves_the_logit_to_half():
    rng = np.random.default_rng(4)
    targets = (rng.random(500) < 0.4).astype(np.int64)
    probability = np.clip(0.25 + 0.3 * targets + rng.normal(0, 0.15, 500), 0, 1)
    threshold, f1 = choose_threshold(probability, targets)

    def f1_at(t: float) -> float:
        flagged = probability >= t
        return 2 * np.sum(flagged & (targets == 1)) / (flagged.sum() + targets.sum())

    brute = max(f1_at(t) for t in np.unique(probability))
    assert f1 == pytest.approx(brute) == pytest.approx(f1_at(threshold))
    assert f1 > f1_at(0.5)  # a probability centred low: 0.5 is the wrong threshold for F1
    logit = np.log(probability / (1 - probability + 1e-12) + 1e-12)
    shifted = 1 / (1 + np.exp(-(logit - threshold_offset(threshold))))
    assert np.array_equal(shifted >= 0.5 - 1e-9, probability >= threshold - 1e-9)
