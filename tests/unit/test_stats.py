"""The paired tests behind champion decisions, against hand-computed cases and statsmodels."""

import math

import numpy as np
import pytest

from mlops_onnx.stats import diebold_mariano, mcnemar_exact, paired_permutation


def correctness(b: int, c: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Two models' per-row correctness with b rows only the candidate gets right and c only the champion."""
    candidate = np.array([1] * b + [0] * c + [1] * both + [0] * neither, bool)
    champion = np.array([0] * b + [1] * c + [1] * both + [0] * neither, bool)
    return candidate, champion


def test_mcnemar_exact_by_hand():
    # b=10, c=3: p = 2 * P(X <= 3), X ~ Binomial(13, 1/2) = 2 * (1 + 13 + 78 + 286) / 2**13
    result = mcnemar_exact(*correctness(10, 3, 50, 5))
    assert result.p_value == pytest.approx(2 * 378 / 8192)
    assert result.detail == {
        "candidate_only_correct": 10,
        "champion_only_correct": 3,
        "both_correct": 50,
        "both_wrong": 5,
    }
    assert result.n == 68 and result.statistic == 3
    # b=5, c=0: p = 2 / 2**5
    assert mcnemar_exact(*correctness(5, 0, 100, 0)).p_value == pytest.approx(2 / 32)
    # no discordant rows: no evidence at all
    assert mcnemar_exact(*correctness(0, 0, 10, 3)).p_value == 1.0
    # symmetric: the p-value does not depend on which model is which
    assert mcnemar_exact(*correctness(3, 10, 0, 0)).p_value == result.p_value


@pytest.mark.parametrize(("b", "c"), [(10, 3), (40, 20), (7, 7), (0, 9), (120, 95)])
def test_mcnemar_exact_matches_statsmodels(b, c):
    from statsmodels.stats.contingency_tables import mcnemar

    table = [[50, b], [c, 5]]  # rows: candidate right/wrong; columns: champion right/wrong
    assert mcnemar_exact(*correctness(b, c, 50, 5)).p_value == pytest.approx(mcnemar(table, exact=True).pvalue)


def test_one_sided_mcnemar_is_the_binomial_tail_of_the_candidates_wins():
    # b=10, c=3: P(X >= 10), X ~ Binomial(13, 1/2) = (286 + 78 + 13 + 1) / 2**13
    result = mcnemar_exact(*correctness(10, 3, 50, 5), alternative="greater")
    assert result.p_value == pytest.approx(378 / 8192) and result.statistic == 10
    assert result.alternative == "greater"
    # the candidate right on fewer rows than the champion: no evidence that it is more accurate
    assert mcnemar_exact(*correctness(200, 300, 500, 0), alternative="greater").p_value > 0.999
    assert mcnemar_exact(*correctness(0, 0, 10, 3), alternative="greater").p_value == 1.0
    with pytest.raises(ValueError, match="alternative must be one of"):
        mcnemar_exact(*correctness(1, 0, 0, 0), alternative="less")


def accuracy(labels: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(labels == targets))


def test_paired_permutation_of_accuracy_agrees_with_one_sided_mcnemar():
    """Swapping the two models' answers on a row flips only a discordant row's contribution, so the exact
    permutation test of accuracy is McNemar's binomial tail; 9,999 seeded resamples come within 0.01."""
    targets = np.zeros(68, int)
    candidate_correct, champion_correct = correctness(10, 3, 50, 5)
    candidate, champion = np.where(candidate_correct, 0, 1), np.where(champion_correct, 0, 1)
    result = paired_permutation(accuracy, candidate, champion, targets, "greater", resamples=9999)
    assert result.p_value == pytest.approx(378 / 8192, abs=0.01)
    assert result.statistic == pytest.approx(7 / 68) and result.n == 68
    # seeded: the same p-value on every run; the other direction is no evidence at all
    assert paired_permutation(accuracy, candidate, champion, targets, "greater", resamples=9999) == result
    assert paired_permutation(accuracy, candidate, champion, targets, "less", resamples=999).p_value > 0.95


def test_paired_permutation_of_identical_models_is_no_evidence():
    labels = np.array([0, 1, 1, 0, 1])
    result = paired_permutation(accuracy, labels, labels, np.array([0, 1, 0, 0, 1]), "greater", resamples=99)
    assert result.p_value == 1.0 and result.statistic == 0.0


def test_one_sided_diebold_mariano_is_half_the_two_sided_p_in_the_direction_of_the_statistic():
    rng = np.random.default_rng(1)
    gain = rng.normal(-0.02, 0.1, 120)  # the candidate's loss a little lower most days
    two_sided, lower = diebold_mariano(gain), diebold_mariano(gain, alternative="less")
    assert lower.statistic == two_sided.statistic < 0 and lower.alternative == "less"
    assert lower.p_value == pytest.approx(two_sided.p_value / 2)
    assert diebold_mariano(-gain, alternative="less").p_value == pytest.approx(1 - two_sided.p_value / 2)
    assert diebold_mariano(np.zeros(30), alternative="less").p_value == 1.0  # identical losses: no evidence


def test_diebold_mariano_with_hln_correction_by_hand():
    d = np.array([0.5, -0.2, 0.3, 0.1, 0.4, -0.1, 0.2, 0.0])
    n, mean = len(d), d.mean()
    variance = ((d - mean) ** 2).mean() / n  # h = 1: the long-run variance is the plain variance of d_t
    statistic = mean / math.sqrt(variance) * math.sqrt((n + 1 - 2) / n)  # HLN: sqrt((n + 1 - 2h + h(h-1)/n) / n)
    from scipy.stats import t

    result = diebold_mariano(d)
    assert result.statistic == pytest.approx(statistic)
    assert result.p_value == pytest.approx(2 * t.sf(abs(statistic), n - 1))
    assert result.detail["mean_differential"] == pytest.approx(mean) and result.n == n


def test_diebold_mariano_two_step_horizon_uses_the_first_autocovariance():
    d = np.array([0.5, 0.4, 0.3, 0.35, 0.1, 0.0, -0.1, 0.05, 0.2, 0.3])  # positively autocorrelated
    n, mean, h = len(d), d.mean(), 2
    centred = d - mean
    gamma0, gamma1 = (centred**2).sum() / n, (centred[1:] * centred[:-1]).sum() / n
    dm = mean / math.sqrt((gamma0 + 2 * gamma1) / n)
    hln = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    assert diebold_mariano(d, horizon=h).statistic == pytest.approx(dm * hln)


def test_diebold_mariano_sees_a_consistent_small_gain_and_not_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 250)
    assert diebold_mariano(noise).p_value > 0.05  # no real difference: not significant
    gain = noise * 0.1 - 0.05  # the candidate's loss is lower by 0.05 every day, give or take
    result = diebold_mariano(gain)
    assert result.p_value < 1e-6 and result.statistic < 0
    assert diebold_mariano(np.zeros(30)).p_value == 1.0  # identical losses: no evidence either way
    assert diebold_mariano(np.array([0.1, 0.2])).p_value == 1.0  # too few days


def test_bootstrap_roc_auc_interval_holds_the_auc_is_seeded_and_narrows_with_more_rows():
    from sklearn.metrics import roc_auc_score

    from mlops_onnx.stats import bootstrap_roc_auc

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 2000)
    scores = targets + rng.normal(0, 1.2, 2000)  # a weak classifier: AUC about 0.72
    low, high = bootstrap_roc_auc(targets, scores, seed=7)
    assert low < roc_auc_score(targets, scores) < high
    assert (low, high) == bootstrap_roc_auc(targets, scores, seed=7)
    assert (low, high) != bootstrap_roc_auc(targets, scores, seed=8)
    small_low, small_high = bootstrap_roc_auc(targets[:100], scores[:100], seed=7)
    assert small_high - small_low > 2 * (high - low)  # 20x fewer rows: about 4.5x wider


def test_bootstrap_roc_auc_scores_each_resample_as_sklearn_does():
    from sklearn.metrics import roc_auc_score

    from mlops_onnx.stats import bootstrap_roc_auc

    targets = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.7, 0.9])  # ties across classes: average ranks
    resampled = []
    for seed in range(20):  # one resample per call: its interval collapses to that resample's AUC
        rows = np.random.default_rng(seed).integers(0, len(targets), (1, len(targets)))[0]
        if len(set(targets[rows])) == 2:
            low, high = bootstrap_roc_auc(targets, scores, resamples=1, seed=seed)
            assert low == high == pytest.approx(roc_auc_score(targets[rows], scores[rows]), abs=1e-12)
            resampled.append(low)
    assert len(resampled) >= 10


def test_bootstrap_roc_auc_of_one_class_is_an_error():
    from mlops_onnx.stats import bootstrap_roc_auc

    with pytest.raises(ValueError, match="both classes"):
        bootstrap_roc_auc(np.ones(50), np.linspace(0, 1, 50))
