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
    "not_chosen",  # passed the gate, but another candidate of the same night scored better
)
# A run that got through the gate, one way or the other: the same data, code and config would decide the same.
DECIDED = (FIRST_CHAMPION, PROMOTED, KEPT, REJECTED, NOT_CHOSEN)


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


def decide(result: HeadToHead, alpha: float, champion_version: str) -> tuple[str, str]:
    """`promoted` or `kept_champion`, and why, in one sentence with the numbers: promoted only on a win in
    the claimed direction that the one-sided paired test finds significant."""
    t = result.test
    numbers = (
        f"{result.metric} {result.candidate:.4f} vs champion v{champion_version} {result.champion:.4f} "
        f"on the same {len(result.rows)} test rows ({t.test}, one-sided p={t.p_value:.3g} for "
        f"{result.claim}, alpha={alpha:g})"
    )
    if result.candidate_is_better and t.p_value < alpha:
        return PROMOTED, f"Promoted: {numbers}."
    if result.candidate_is_better:
        return KEPT, f"Champion kept: better but not significantly, {numbers}."
    return KEPT, f"Champion kept: not better, {numbers}."


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
