"""The paired tests behind every champion decision: both models scored on the same rows.

- Classifiers: the exact McNemar test. Only the discordant rows carry information (the candidate right
  where the champion is wrong, `b`, and the reverse, `c`); under "equally good" each discordant row is
  a fair coin, so the two-sided p-value is the binomial tail of min(b, c) in b + c tosses, doubled.
- Forecasters: the Diebold–Mariano test on a loss differential series d_t (one value per day), with the
  Harvey–Leybourne–Newbold small-sample correction and Student's t with n − 1 degrees of freedom.
  For one-step-ahead forecasts (h = 1) the long-run variance is the plain variance of d_t.

Also the bootstrap interval of a ROC AUC (`bootstrap_roc_auc`), which the text candidates report on LIAR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedTest:
    test: str  # "mcnemar_exact" or "diebold_mariano_hln"
    statistic: float
    p_value: float  # two-sided
    n: int  # rows (McNemar) or days (Diebold–Mariano) the test used
    detail: dict


def mcnemar_exact(candidate_correct: np.ndarray, champion_correct: np.ndarray) -> PairedTest:
    """Exact McNemar test of two classifiers' correctness on the same rows (two-sided)."""
    from scipy.stats import binom

    candidate_correct = np.asarray(candidate_correct, dtype=bool)
    champion_correct = np.asarray(champion_correct, dtype=bool)
    if candidate_correct.shape != champion_correct.shape:
        raise ValueError(f"rows differ: {candidate_correct.shape} vs {champion_correct.shape}")
    b = int(np.sum(candidate_correct & ~champion_correct))  # only the candidate is right
    c = int(np.sum(~candidate_correct & champion_correct))  # only the champion is right
    p = 1.0 if b + c == 0 else min(1.0, 2.0 * float(binom.cdf(min(b, c), b + c, 0.5)))
    return PairedTest(
        "mcnemar_exact",
        float(min(b, c)),
        p,
        len(candidate_correct),
        {
            "candidate_only_correct": b,
            "champion_only_correct": c,
            "both_correct": int(np.sum(candidate_correct & champion_correct)),
            "both_wrong": int(np.sum(~candidate_correct & ~champion_correct)),
        },
    )


def diebold_mariano(loss_differential: np.ndarray, horizon: int = 1) -> PairedTest:
    """Diebold–Mariano test that the mean of d_t = loss(candidate) − loss(champion) is zero (two-sided),
    with the Harvey–Leybourne–Newbold correction; negative statistic = the candidate's loss is lower."""
    from scipy.stats import t as student_t

    d = np.asarray(loss_differential, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 3:
        return PairedTest("diebold_mariano_hln", float("nan"), 1.0, n, {"reason": f"only {n} day(s)"})
    mean = float(d.mean())
    centred = d - mean
    gamma = [float(np.dot(centred[k:], centred[: n - k]) / n) for k in range(horizon)]
    variance = (gamma[0] + 2.0 * sum(gamma[1:])) / n
    if variance <= 0:  # identical losses every day: no evidence either way
        return PairedTest("diebold_mariano_hln", 0.0, 1.0, n, {"mean_differential": mean})
    dm = mean / math.sqrt(variance)
    correction = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic = dm * correction
    p = float(2.0 * student_t.sf(abs(statistic), df=n - 1))
    return PairedTest(
        "diebold_mariano_hln", statistic, p, n, {"mean_differential": mean, "dm_uncorrected": dm, "horizon": horizon}
    )


def bootstrap_roc_auc(
    targets: np.ndarray, scores: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC AUC: rows resampled with replacement `resamples` times
    (a fixed `seed`: the same interval on every run); resamples that hold one class only are skipped.
    Each resample's AUC is the Mann–Whitney statistic on average ranks (= sklearn's `roc_auc_score`),
    computed for many resamples at once."""
    from scipy.stats import rankdata

    targets, scores = np.asarray(targets).astype(bool), np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    aucs = []
    for chunk in np.array_split(np.arange(resamples), max(1, resamples // 100)):
        rows = rng.integers(0, len(targets), (len(chunk), len(targets)))
        positive = targets[rows]
        n_pos = positive.sum(axis=1)
        n_neg = len(targets) - n_pos
        ranks = rankdata(scores[rows], axis=1)
        both = (n_pos > 0) & (n_neg > 0)
        rank_sum = (ranks * positive).sum(axis=1)
        aucs.append(((rank_sum - n_pos * (n_pos + 1) / 2.0)[both]) / (n_pos * n_neg)[both])
    aucs = np.concatenate(aucs) if aucs else np.zeros(0)
    if not len(aucs):
        raise ValueError(f"no bootstrap resample of {len(targets)} rows holds both classes")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(aucs, [tail, 1.0 - tail])
    return float(low), float(high)
