"""The claim and the test are one thing: `decide` promotes only on a significant win in the direction the
candidate claims on its primary metric. Two counter-examples where the old rule ("better on the metric and
p < alpha" with a test of another quantity) promoted a worse model, and the wins that must still promote."""

import numpy as np
import pandas as pd
import pytest

from mlops_onnx import models
from mlops_onnx.decisions import KEPT, PROMOTED, decide

ALPHA = 0.05


def news_rows(champion_flags: tuple[int, int], candidate_flags: tuple[int, int]):
    """1,000 articles, 500 fake (label 1); each model flags (fakes, real articles) as fake, fakes first."""
    targets = np.r_[np.ones(500), np.zeros(500)].astype(np.int64)

    def probabilities(flags: tuple[int, int]) -> np.ndarray:
        fakes, real = flags
        flagged = np.r_[np.arange(500) < fakes, np.arange(500) < real]
        return np.where(flagged, 0.9, 0.1).astype(np.float32)[:, None]

    rows = models.TestRows(ids=np.arange(1000).astype(str), inputs=np.zeros((1000, 1)), targets=targets)
    return probabilities(candidate_flags), probabilities(champion_flags), rows


def test_a_higher_f1_that_is_less_accurate_is_not_promoted_on_mcnemars_accuracy_test():
    """The champion flags 300 fakes and no real article; the candidate flags all 500 fakes and 300 real ones:
    F1 0.769 vs 0.750, but accuracy 0.700 vs 0.800. McNemar (b = 200, c = 300, two-sided p = 8.9e-6) says the
    candidate is *less* accurate; the F1 gain itself is within noise."""
    from mlops_onnx.models.fake_news import SPEC

    candidate, champion, rows = news_rows(champion_flags=(300, 0), candidate_flags=(500, 300))
    result = SPEC.head_to_head(candidate, champion, rows)
    assert result.metric == "test_f1"
    assert (result.candidate, result.champion) == (pytest.approx(1000 / 1300), pytest.approx(0.75))
    assert np.mean(SPEC.labels(candidate) == rows.targets) == pytest.approx(0.7)
    decided = decide(result, ALPHA, "1")
    decision, reason = decided.outcome, decided.reason
    assert decided.compared is result
    assert decision == KEPT, reason
    assert reason.startswith("Champion kept: better but not significantly, test_f1 0.7692 vs champion v1 0.7500")
    assert result.test.p_value > 0.1


def test_the_fake_news_quality_is_sklearns_f1_of_the_fake_class():
    from sklearn.metrics import f1_score

    from mlops_onnx.models.fake_news import SPEC

    rng = np.random.default_rng(0)
    for fakes in (0.0, 0.1, 0.5):
        targets = (rng.random(300) < fakes).astype(np.int64)
        outputs = rng.random((300, 1)).astype(np.float32) * (0.0 if fakes == 0.0 else 1.0)
        expected = f1_score(targets, SPEC.labels(outputs), zero_division=0)
        assert SPEC.quality(outputs, targets) == pytest.approx(expected), fakes


def test_a_clear_f1_win_is_promoted_by_the_paired_permutation_test():
    from mlops_onnx.models.fake_news import SPEC

    candidate, champion, rows = news_rows(champion_flags=(300, 0), candidate_flags=(450, 0))
    result = SPEC.head_to_head(candidate, champion, rows)
    decided = decide(result, ALPHA, "1")
    decision, reason = decided.outcome, decided.reason
    assert decided.compared is result
    assert decision == PROMOTED, reason
    assert result.test.test == "paired_permutation" and result.test.alternative == "greater"
    assert result.test.p_value == pytest.approx(1 / 1000)  # no resample reaches the observed gain
    assert f"one-sided p={result.test.p_value:.3g} for candidate test_f1 > champion" in reason


def stock_rows(candidate_gap_error: float, candidate_daily_error: float):
    """60 test days. Ticker AAA is forecast every day; 20 more tickers only on the first 10 days (a gap-ridden
    test period). Every ticker moves ±1 % a day (its naive MAE, the MASE scale, is about 1 price unit); the
    champion's absolute error is 0.7 on AAA and 1.0 on the others, the candidate's is `candidate_daily_error`
    on AAA and `candidate_gap_error` on the others (plus a little noise)."""
    rng = np.random.default_rng(3)
    day = pd.Timestamp("2024-01-01")
    rows = [("AAA", d) for d in range(60)] + [(f"B{t:02d}", d) for t in range(20) for d in range(10)]
    tickers = np.array([t for t, _ in rows])
    days = np.array([np.datetime64(day + pd.Timedelta(days=d)) for _, d in rows])
    close_now = np.full(len(rows), 100.0)
    close_next = close_now * np.exp(np.where(np.arange(len(rows)) % 2 == 0, 0.01, -0.01))
    on_aaa = tickers == "AAA"

    def forecast(error_aaa: float, error_other: float) -> np.ndarray:
        error = np.where(on_aaa, error_aaa, error_other) + rng.uniform(-0.05, 0.05, len(rows))
        return np.log((close_next + error) / close_now).astype(np.float32)[:, None]

    test = models.TestRows(
        ids=np.array([f"{t}:{d}" for t, d in rows]),
        inputs=np.zeros((len(rows), 1)),
        targets=np.log(close_next / close_now),
        extra={"close_now": close_now, "close_next": close_next, "ticker": tickers, "day": days},
    )
    return forecast(candidate_daily_error, candidate_gap_error), forecast(0.7, 1.0), test


def test_a_lower_pooled_mase_from_a_few_crowded_days_is_not_promoted_when_most_days_are_worse():
    """Pooled over rows the candidate's MASE is far lower (the 200 rows of the 10 crowded days); per day it is
    higher on 50 of 60 days. Diebold–Mariano on the daily losses says so (statistic > 0); the old rule, the
    pooled MASE plus a two-sided test, promoted it."""
    from mlops_onnx.models.stocks import SPEC
    from mlops_onnx.timeseries import forecast_metrics

    candidate, champion, rows = stock_rows(candidate_gap_error=0.5, candidate_daily_error=0.9)
    x, models = rows.extra, (candidate, champion)
    pooled = [forecast_metrics(x["close_now"], x["close_next"], m, "test", x["ticker"])["test_mase"] for m in models]
    assert pooled[0] < pooled[1] - 0.3  # the pooled MASE calls the candidate better
    result = SPEC.head_to_head(candidate, champion, rows)
    decided = decide(result, ALPHA, "1")
    decision, reason = decided.outcome, decided.reason
    assert decided.compared is result
    assert decision == KEPT, reason
    assert result.test.statistic > 2  # the candidate's daily loss is higher, clearly
    assert result.candidate > result.champion and reason.startswith("Champion kept: not better")


def test_a_forecaster_better_every_day_is_promoted_on_the_one_sided_daily_test():
    from mlops_onnx.models.stocks import SPEC

    candidate, champion, rows = stock_rows(candidate_gap_error=0.8, candidate_daily_error=0.5)
    result = SPEC.head_to_head(candidate, champion, rows)
    decided = decide(result, ALPHA, "1")
    decision, reason = decided.outcome, decided.reason
    assert decided.compared is result
    assert decision == PROMOTED, reason
    assert result.test.test == "diebold_mariano_hln" and result.test.alternative == "less"
    assert result.test.statistic < 0 and result.test.p_value < 1e-6
    assert "for candidate test_mase_daily_mean < champion" in reason


def test_a_test_of_another_direction_than_the_claim_is_refused():
    from mlops_onnx.decisions import HeadToHead
    from mlops_onnx.stats import mcnemar_exact

    correct = np.array([True, False, True])
    with pytest.raises(ValueError, match="must test the claimed direction"):
        HeadToHead("test_accuracy", True, 0.6, 0.5, mcnemar_exact(correct, ~correct), pd.DataFrame())
