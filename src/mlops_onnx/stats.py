"""The paired tests behind every champion decision: both models scored on the same rows.

- Accuracy: the exact McNemar test. Only the discordant rows carry information (the candidate right
  where the champion is wrong, `b`, and the reverse, `c`); under "equally good" each discordant row is
  a fair coin, so the two-sided p-value is the binomial tail of min(b, c) in b + c tosses, doubled, and
  the one-sided p-value of "the candidate is more accurate" is P(X ≥ b), X ~ Binomial(b + c, ½).
- A metric that is not a mean of per-row scores (F1): the paired permutation test (`paired_permutation`).
- Forecasters: the Diebold–Mariano test on a loss differential series d_t (one value per day), with the
  Harvey–Leybourne–Newbold small-sample correction and Student's t with n − 1 degrees of freedom.
  For one-step-ahead forecasts (h = 1) the long-run variance is the plain variance of d_t.

`alternative` names, as scipy does, what the test holds against "equally good", about the difference it
tests (candidate − champion): "two-sided", "greater" or "less". A champion decision uses the one-sided
test of the direction it claims (more accurate, higher F1, lower loss).

Also the bootstrap interval of a ROC AUC (`bootstrap_roc_auc`), which the text candidates report on LIAR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedTest:
    test: str  # "mcnemar_exact", "paired_permutation" or "diebold_mariano_hln"
    statistic: float
    p_value: float  # of `alternative`
    n: int  # rows (McNemar, permutation) or days (Diebold–Mariano) the test used
    detail: dict
    alternative: str = "two-sided"  # or "greater" / "less": the candidate's difference from the champion


def _check_alternative(alternative: str, allowed: tuple[str, ...]) -> None:
    if alternative not in allowed:
        raise ValueError(f"alternative must be one of {allowed}, not {alternative!r}")


def mcnemar_exact(
    candidate_correct: np.ndarray, champion_correct: np.ndarray, alternative: str = "two-sided"
) -> PairedTest:
    """Exact McNemar test of two classifiers' correctness on the same rows; "greater": the candidate is right
    more often (b > c), and the statistic is b; two-sided, the statistic is min(b, c)."""
    from scipy.stats import binom

    _check_alternative(alternative, ("two-sided", "greater"))
    candidate_correct = np.asarray(candidate_correct, dtype=bool)
    champion_correct = np.asarray(champion_correct, dtype=bool)
    if candidate_correct.shape != champion_correct.shape:
        raise ValueError(f"rows differ: {candidate_correct.shape} vs {champion_correct.shape}")
    b = int(np.sum(candidate_correct & ~champion_correct))  # only the candidate is right
    c = int(np.sum(~candidate_correct & champion_correct))  # only the champion is right
    if b + c == 0:
        statistic, p = 0.0, 1.0
    elif alternative == "two-sided":
        statistic, p = float(min(b, c)), min(1.0, 2.0 * float(binom.cdf(min(b, c), b + c, 0.5)))
    else:
        statistic, p = float(b), float(binom.sf(b - 1, b + c, 0.5))
    return PairedTest(
        "mcnemar_exact",
        statistic,
        p,
        len(candidate_correct),
        {
            "candidate_only_correct": b,
            "champion_only_correct": c,
            "both_correct": int(np.sum(candidate_correct & champion_correct)),
            "both_wrong": int(np.sum(~candidate_correct & ~champion_correct)),
        },
        alternative,
    )


def paired_permutation(
    metric: Callable[[np.ndarray, np.ndarray], float],
    candidate: np.ndarray,
    champion: np.ndarray,
    targets: np.ndarray,
    alternative: str,
    resamples: int = 999,
    seed: int = 0,
) -> PairedTest:
    """Paired permutation test of metric(candidate, targets) − metric(champion, targets), for any metric of
    the rows' outputs (F1 is not a mean of per-row scores, so McNemar does not test it). Under "equally
    good" the two models' outputs on a row are exchangeable: each resample swaps them on a random half of
    the rows (a fixed `seed`: the same p-value on every run) and p = (1 + resamples at least as extreme) /
    (1 + resamples). Rows where both models give the same output cannot change a resample's difference."""
    _check_alternative(alternative, ("greater", "less"))
    candidate, champion = np.asarray(candidate), np.asarray(champion)
    if candidate.shape != champion.shape or len(candidate) != len(targets):
        raise ValueError(f"rows differ: {candidate.shape} vs {champion.shape}, {len(targets)} targets")
    observed = metric(candidate, targets) - metric(champion, targets)
    rng = np.random.default_rng(seed)
    differences = np.empty(resamples)
    row_shape = (-1,) + (1,) * (candidate.ndim - 1)
    for i in range(resamples):
        swap = (rng.random(len(candidate)) < 0.5).reshape(row_shape)
        differences[i] = metric(np.where(swap, champion, candidate), targets) - metric(
            np.where(swap, candidate, champion), targets
        )
    tolerance = 1e-12 * max(1.0, abs(observed))  # a resample equal to the observed difference counts
    extreme = differences >= observed - tolerance if alternative == "greater" else differences <= observed + tolerance
    p = float((1 + extreme.sum()) / (1 + resamples))
    return PairedTest(
        "paired_permutation",
        float(observed),
        p,
        len(targets),
        {"resamples": resamples, "seed": seed, "permutation_sd": float(differences.std())},
        alternative,
    )


def diebold_mariano(loss_differential: np.ndarray, horizon: int = 1, alternative: str = "two-sided") -> PairedTest:
    """Diebold–Mariano test that the mean of d_t = loss(candidate) − loss(champion) is zero, with the
    Harvey–Leybourne–Newbold correction; negative statistic = the candidate's loss is lower, which is the
    alternative "less"."""
    from scipy.stats import t as student_t

    _check_alternative(alternative, ("two-sided", "less"))
    d = np.asarray(loss_differential, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 3:
        return PairedTest("diebold_mariano_hln", float("nan"), 1.0, n, {"reason": f"only {n} day(s)"}, alternative)
    mean = float(d.mean())
    centred = d - mean
    gamma = [float(np.dot(centred[k:], centred[: n - k]) / n) for k in range(horizon)]
    variance = (gamma[0] + 2.0 * sum(gamma[1:])) / n
    if variance <= 0:  # identical losses every day: no evidence either way
        return PairedTest("diebold_mariano_hln", 0.0, 1.0, n, {"mean_differential": mean}, alternative)
    dm = mean / math.sqrt(variance)
    correction = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic = dm * correction
    if alternative == "two-sided":
        p = 2.0 * student_t.sf(abs(statistic), df=n - 1)
    else:
        p = student_t.cdf(statistic, df=n - 1)
    return PairedTest(
        "diebold_mariano_hln",
        statistic,
        float(p),
        n,
        {"mean_differential": mean, "dm_uncorrected": dm, "horizon": horizon},
        alternative,
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
