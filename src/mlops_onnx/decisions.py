"""Champion or not: tonight's model against the champion on the same rows, decided by a paired test.

Both models are run through ONNX Runtime on tonight's test split, each with its own preprocessing
(the champion's tokenizer or scaler comes from the registry), and scored by the same metric code.
The claim and the test are one thing: the candidate claims its primary metric is better (higher, or
lower for a loss), and the paired test is the one-sided test of that metric's difference in that
direction: exact McNemar for accuracy, a paired permutation test for F1 (not a mean of per-row scores),
Diebold–Mariano on the daily MASE for forecasts. The candidate takes `champion` only if that test says
the win is unlikely to be noise (one-sided p < MLOPS_PROMOTION_ALPHA); otherwise the champion stays.
Scores stored on earlier versions are never compared: they were measured on other rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_onnx.stats import PairedTest, diebold_mariano, mcnemar_exact, paired_permutation
from mlops_onnx.timeseries import scaled_errors

FIRST_CHAMPION, PROMOTED, KEPT, REJECTED, SKIPPED, NOT_CHOSEN = (
    "first_champion",
    "promoted",
    "kept_champion",
    "rejected",
    "skipped_unchanged",
    "not_chosen",  # passed the gate, but the paired choice on validation rows took another candidate
)
REJECTED_IN_SERVER = "rejected_in_server"  # won, but failed its trial in the real server: no alias moved
# MLOPS_PROMOTION_APPROVAL: registered as `challenger`, waiting for a human (then promoted or kept_champion)
AWAITING_APPROVAL = "awaiting_approval"
# A run that got through the gate, one way or the other: the same data, code and config would decide the same.
DECIDED = (FIRST_CHAMPION, PROMOTED, KEPT, REJECTED, NOT_CHOSEN, REJECTED_IN_SERVER, AWAITING_APPROVAL)


ACCURACY = "test_accuracy"  # a mean of per-row correctness: McNemar's discordant rows test it exactly
DAILY_MASE = "test_mase_daily_mean"  # forecasts: the mean over test days of each day's MASE


@dataclass
class HeadToHead:
    metric: str  # the metric that decides "better", e.g. test_accuracy
    higher_is_better: bool
    candidate: float
    champion: float
    test: PairedTest  # one-sided, in the direction the candidate claims (`alternative`)
    rows: pd.DataFrame  # one row per test row: id, target, both models' predictions and losses

    def __post_init__(self) -> None:
        if self.test.alternative != self.alternative:
            raise ValueError(
                f"{self.test.test} tests {self.test.alternative!r}, but the claim {self.claim!r} needs "
                f"{self.alternative!r}: the test must test the claimed direction"
            )

    @property
    def alternative(self) -> str:
        """The claimed direction of candidate − champion, as the paired test's alternative."""
        return "greater" if self.higher_is_better else "less"

    @property
    def claim(self) -> str:
        return f"candidate {self.metric} {'>' if self.higher_is_better else '<'} champion"

    @property
    def candidate_is_better(self) -> bool:
        return self.candidate > self.champion if self.higher_is_better else self.candidate < self.champion


@dataclass(frozen=True)
class Decision:
    """What becomes of a registered candidate: the outcome (FIRST_CHAMPION, PROMOTED, KEPT, ...), its
    one-sentence reason, and the head-to-head behind it (None where there was none, e.g. no champion)."""

    outcome: str
    reason: str
    compared: HeadToHead | None = None

    @property
    def takes_champion(self) -> bool:
        return self.outcome in (FIRST_CHAMPION, PROMOTED)


def classifier_head_to_head(spec, candidate: np.ndarray, champion: np.ndarray, rows) -> HeadToHead:
    """The primary metric of both (the spec's `quality`) and the one-sided paired test of its difference:
    exact McNemar on correctness when the metric is accuracy, else the paired permutation test of `quality`
    itself (F1 can rise while accuracy falls, so McNemar would test another claim)."""
    candidate_labels, champion_labels = spec.labels(candidate), spec.labels(champion)
    candidate_correct = candidate_labels == rows.targets
    champion_correct = champion_labels == rows.targets
    frame = pd.DataFrame(
        {
            "row_id": rows.ids,
            "target": rows.targets,
            "candidate": candidate_labels,
            "champion": champion_labels,
            "candidate_correct": candidate_correct,
            "champion_correct": champion_correct,
        }
    )
    alternative = "greater" if spec.higher_is_better else "less"
    if spec.primary_metric == ACCURACY:
        test = mcnemar_exact(candidate_correct, champion_correct, alternative)
    else:
        test = paired_permutation(spec.quality, candidate, champion, rows.targets, alternative)
    return HeadToHead(
        spec.primary_metric,
        spec.higher_is_better,
        spec.quality(candidate, rows.targets),
        spec.quality(champion, rows.targets),
        test,
        frame,
    )


def forecast_head_to_head(candidate: np.ndarray, champion: np.ndarray, rows) -> HeadToHead:
    """Both forecasters' MASE on the same days, aggregated as the Diebold–Mariano test reads it: each day's
    mean over the tickers forecast for it of the scaled absolute errors, then the mean over days
    (`test_mase_daily_mean`; the pooled test MASE weighs a day by its tickers, and can call a candidate
    better that is worse on most days). The test: one-sided DM (HLN) that the candidate's daily loss is
    lower, on the daily differences of the same rows, so "lower" and the test are one thing."""
    x = rows.extra
    cand, _ = scaled_errors(x["close_now"], x["close_next"], candidate, x["ticker"])
    champ, _ = scaled_errors(x["close_now"], x["close_next"], champion, x["ticker"])
    frame = pd.DataFrame(
        {
            "row_id": rows.ids,
            "ticker": x["ticker"],
            "day": pd.to_datetime(x["day"]).date,
            "target_log_return": rows.targets,
            "candidate": candidate.reshape(-1),
            "champion": champion.reshape(-1),
            "candidate_scaled_error": cand,
            "champion_scaled_error": champ,
            "loss_differential": cand - champ,
        }
    )
    both = np.isfinite(cand) & np.isfinite(champ)  # a ticker whose price never moved has no scale
    daily = frame[both].groupby("day")[["candidate_scaled_error", "champion_scaled_error"]].mean().sort_index()
    differential = (daily["candidate_scaled_error"] - daily["champion_scaled_error"]).to_numpy()
    return HeadToHead(
        DAILY_MASE,
        False,
        float(daily["candidate_scaled_error"].mean()),
        float(daily["champion_scaled_error"].mean()),
        diebold_mariano(differential, alternative="less"),
        frame,
    )


def decide(result: HeadToHead, alpha: float, champion_version: str) -> Decision:
    """`promoted` or `kept_champion`, and why, in one sentence with the numbers: promoted only on a win in
    the claimed direction that the one-sided paired test finds significant."""
    t = result.test
    numbers = (
        f"{result.metric} {result.candidate:.4f} vs champion v{champion_version} {result.champion:.4f} "
        f"on the same {len(result.rows)} test rows ({t.test}, one-sided p={t.p_value:.3g} for "
        f"{result.claim}, alpha={alpha:g})"
    )
    if result.candidate_is_better and t.p_value < alpha:
        return Decision(PROMOTED, f"Promoted: {numbers}.", result)
    if result.candidate_is_better:
        return Decision(KEPT, f"Champion kept: better but not significantly, {numbers}.", result)
    return Decision(KEPT, f"Champion kept: not better, {numbers}.", result)


def needs_approval(mode: str, decided: Decision) -> bool:
    """Whether a human decides this move (MLOPS_PROMOTION_APPROVAL): `close`, a candidate better on the
    metric whose paired test did not reach alpha; `always`, that and every move the test alone would make."""
    close = decided.outcome == KEPT and decided.compared is not None and decided.compared.candidate_is_better
    return (mode == "close" and close) or (mode == "always" and (close or decided.takes_champion))


def write_artifacts(result: HeadToHead, folder: Path, champion_version: str) -> list[Path]:
    """The per-row predictions of both models (CSV) and a small plot of where they differ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "head_to_head.csv"
    result.rows.to_csv(table, index=False)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if "day" in result.rows:  # forecasts: where the candidate gains or loses over the test period
        daily = result.rows.groupby("day")["loss_differential"].mean().sort_index()
        ax.plot(pd.to_datetime(daily.index), daily.cumsum().to_numpy(), color="tab:blue")
        ax.axhline(0, color="gray", linewidth=0.8)
        ax.set_ylabel("cumulative daily loss difference\n(candidate − champion, scaled)")
        ax.set_title(f"Head to head vs v{champion_version}: below 0 = candidate better")
    else:  # classifiers: which rows each gets right (McNemar's table)
        rows = result.rows
        cells = {
            "both right": int((rows["candidate_correct"] & rows["champion_correct"]).sum()),
            "only candidate": int((rows["candidate_correct"] & ~rows["champion_correct"]).sum()),
            "only champion": int((~rows["candidate_correct"] & rows["champion_correct"]).sum()),
            "both wrong": int((~rows["candidate_correct"] & ~rows["champion_correct"]).sum()),
        }
        ax.bar(list(cells), list(cells.values()), color=["tab:gray", "tab:green", "tab:red", "black"])
        for i, value in enumerate(cells.values()):
            ax.annotate(str(value), (i, value), ha="center", va="bottom")
        ax.set_ylabel("test rows")
        ax.set_title(
            f"Head to head vs v{champion_version}: {result.metric} {result.candidate:.4f} vs "
            f"{result.champion:.4f}, one-sided p={result.test.p_value:.3g}"
        )
    fig.tight_layout()
    plot = folder / "head_to_head.png"
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    return [table, plot]


@dataclass
class Choice:
    """Which of the night's candidates meets the champion, and why, from paired tests on validation rows."""

    chosen: str
    rows: int  # the validation rows every candidate was scored on
    metric: str  # the primary metric, as measured on those rows
    scores: dict[str, float]  # each candidate's metric on them
    complexity: dict[str, int]  # ONNX parameters: the stated order of simplicity (fewer is simpler)
    tests: dict[tuple[str, str], PairedTest]  # (more complex, simpler): one-sided "the more complex is better"
    reasons: dict[str, str]  # each candidate's `choice_reason`

    def against_chosen(self, architecture: str) -> PairedTest | None:
        """The paired test between `architecture` and the chosen one (None for the chosen one)."""
        if architecture == self.chosen:
            return None
        return self.tests.get((architecture, self.chosen)) or self.tests[(self.chosen, architecture)]

    def table(self) -> list[dict]:
        """Every pairwise test, one row each, for the night's run."""
        return [
            {
                "complex": complex_,
                "simpler": simpler,
                "claim": f"{complex_} {self.metric} better than {simpler}'s",
                "test": t.test,
                "alternative": t.alternative,
                "statistic": t.statistic,
                "p_value": t.p_value,
                "n": t.n,
                f"{complex_}_{self.metric}": self.scores[complex_],
                f"{simpler}_{self.metric}": self.scores[simpler],
            }
            for (complex_, simpler), t in self.tests.items()
        ]


def choose(spec, scored: dict, complexity: dict[str, int], alpha: float) -> Choice:
    """Tonight's candidate, chosen by paired tests on the validation rows every candidate was scored on
    (`scored`: architecture → `models.Scored`), never on the test rows the champion comparison uses.

    Candidates are ordered by `complexity` (fewer ONNX parameters is simpler; a baseline is the simplest).
    A candidate may be chosen only if it beats every simpler candidate by the one-sided paired test of the
    primary metric at `alpha` (an intersection-union test: no correction needed, the level stays `alpha`);
    of those, the one with the best metric on these rows is chosen. The simplest candidate always may be,
    so when no model wins clearly, the simplest serves."""
    if not scored:
        raise ValueError("no candidate to choose from")
    names = sorted(scored, key=lambda a: (complexity[a], a))
    shared = _shared_ids(scored)
    rows = {a: scored[a].subset(shared) for a in names}
    tests, scores, metric = {}, {}, spec.primary_metric
    for i, complex_ in enumerate(names):
        for simpler in names[:i]:
            result = spec.head_to_head(rows[complex_].outputs, rows[simpler].outputs, rows[complex_].rows)
            tests[(complex_, simpler)], metric = result.test, result.metric
            scores.setdefault(complex_, result.candidate)
            scores.setdefault(simpler, result.champion)
    if len(names) == 1:
        only = names[0]
        return Choice(
            only,
            len(shared),
            spec.primary_metric,
            {},
            {only: complexity[only]},
            {},
            {only: "Chosen: the only candidate that passed the gate tonight."},
        )
    metric = metric.replace("test_", "val_", 1)  # the metric the paired test decides on, on validation rows

    def wins(complex_: str, simpler: str) -> bool:
        better = scores[complex_] > scores[simpler] if spec.higher_is_better else scores[complex_] < scores[simpler]
        return better and tests[(complex_, simpler)].p_value < alpha

    eligible = [a for i, a in enumerate(names) if all(wins(a, s) for s in names[:i])]
    sign = 1 if spec.higher_is_better else -1
    chosen = max(eligible, key=lambda a: (sign * scores[a], -names.index(a)))
    reasons = {}
    for i, a in enumerate(names):
        where = f"on the {len(shared)} validation rows every candidate was scored on"
        if a == chosen:
            simpler = names[:i]
            if not simpler:
                beaten = [c for c in names if c != a]
                reasons[a] = (
                    f"Chosen: the simplest candidate ({complexity[a]:,} ONNX weights), and no other beat it by a "
                    f"one-sided paired test at alpha={alpha:g} {where}"
                    + (f" ({_ps(tests, [(c, a) for c in beaten])})." if beaten else ".")
                )
            else:
                reasons[a] = (
                    f"Chosen: {metric} {scores[a]:.4f} {where}, significantly better than every simpler "
                    f"candidate ({_ps(tests, [(a, s) for s in simpler])}, alpha={alpha:g})."
                )
        elif a not in eligible:  # more complex than some candidate it does not beat clearly
            lost_to = [s for s in names[:i] if not wins(a, s)]
            weakest = max(lost_to, key=lambda s: tests[(a, s)].p_value)
            reasons[a] = (
                f"Not chosen: {metric} {scores[a]:.4f} vs {weakest}'s {scores[weakest]:.4f} {where}, not "
                f"significantly better than the simpler {weakest} ({_ps(tests, [(a, weakest)])}, alpha={alpha:g})."
            )
        elif names.index(chosen) < i:  # beats every simpler one, but the chosen one scored better
            reasons[a] = f"Not chosen: {metric} {scores[a]:.4f} {where}, behind {chosen}'s {scores[chosen]:.4f}."
        else:  # simpler than the chosen one, which beat it significantly
            reasons[a] = (
                f"Not chosen: {chosen} is significantly better {where} ({metric} {scores[chosen]:.4f} vs "
                f"{scores[a]:.4f}, {_ps(tests, [(chosen, a)])})."
            )
    return Choice(chosen, len(shared), metric, scores, {a: complexity[a] for a in names}, tests, reasons)


def _shared_ids(scored: dict) -> np.ndarray:
    """The validation row ids every candidate has, in the first candidate's order."""
    first, *others = scored.values()
    common = set(first.rows.ids.tolist())
    for other in others:
        common &= set(other.rows.ids.tolist())
    shared = np.array([i for i in first.rows.ids.tolist() if i in common])
    if not len(shared):
        raise ValueError(f"the candidates {', '.join(scored)} share no validation row: they cannot be compared")
    return shared


def _ps(tests: dict, pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{a} vs {b}: {tests[(a, b)].test} p={tests[(a, b)].p_value:.3g}" for a, b in pairs)
