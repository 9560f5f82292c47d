"""Champion or not: tonight's model against the champion on the same rows, decided by a paired test.

Both models are run through ONNX Runtime on tonight's test split, each with its own preprocessing
(the champion's tokenizer or scaler comes from the registry), and scored by the same metric code.
The candidate takes `champion` only if its primary metric is better *and* the paired test says the
difference is unlikely to be noise (p < MLOPS_PROMOTION_ALPHA); otherwise the champion stays.
Scores stored on earlier versions are never compared: they were measured on other rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_onnx.stats import PairedTest, mcnemar_exact

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


@dataclass
class HeadToHead:
    metric: str  # the primary metric, e.g. test_accuracy
    higher_is_better: bool
    candidate: float
    champion: float
    test: PairedTest
    rows: pd.DataFrame  # one row per test row: id, target, both models' predictions and losses

    @property
    def candidate_is_better(self) -> bool:
        return self.candidate > self.champion if self.higher_is_better else self.candidate < self.champion


def classifier_head_to_head(spec, candidate: np.ndarray, champion: np.ndarray, rows) -> HeadToHead:
    """The primary metric of both (the spec's `quality`) and the exact McNemar test on correctness."""
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
    return HeadToHead(
        spec.primary_metric,
        spec.higher_is_better,
        spec.quality(candidate, rows.targets),
        spec.quality(champion, rows.targets),
        mcnemar_exact(candidate_correct, champion_correct),
        frame,
    )


def decide(result: HeadToHead, alpha: float, champion_version: str) -> tuple[str, str]:
    """`promoted` or `kept_champion`, and why, in one sentence with the numbers."""
    t = result.test
    numbers = (
        f"{result.metric} {result.candidate:.4f} vs champion v{champion_version} {result.champion:.4f} "
        f"on the same {len(result.rows)} test rows ({t.test}, p={t.p_value:.3g}, alpha={alpha:g})"
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
    else:  # classifiers: the McNemar table's cells
        d = result.test.detail
        cells = {
            "both right": d["both_correct"],
            "only candidate": d["candidate_only_correct"],
            "only champion": d["champion_only_correct"],
            "both wrong": d["both_wrong"],
        }
        ax.bar(list(cells), list(cells.values()), color=["tab:gray", "tab:green", "tab:red", "black"])
        for i, value in enumerate(cells.values()):
            ax.annotate(str(value), (i, value), ha="center", va="bottom")
        ax.set_ylabel("test rows")
        ax.set_title(
            f"Head to head vs v{champion_version}: {result.metric} {result.candidate:.4f} vs "
            f"{result.champion:.4f}, p={result.test.p_value:.3g}"
        )
    fig.tight_layout()
    plot = folder / "head_to_head.png"
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    return [table, plot]
