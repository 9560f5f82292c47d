"""Plots and report files that go to MLflow beside the metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np


def metric_key(text: str) -> str:
    """A string made safe for an MLflow metric name (`T-shirt/top` -> `t_shirt_top`)."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def classification_report_artifacts(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], workdir: Path, title: str
) -> tuple[dict[str, float], list[Path]]:
    """Macro/per-class precision, recall, F1 as metrics; a JSON report and a confusion-matrix PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import classification_report, confusion_matrix

    labels = list(range(len(class_names)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    metrics = {
        "test_macro_precision": report["macro avg"]["precision"],
        "test_macro_recall": report["macro avg"]["recall"],
        "test_macro_f1": report["macro avg"]["f1-score"],
    }
    for name in class_names:
        key = metric_key(name)
        metrics[f"test_precision_{key}"] = report[name]["precision"]
        metrics[f"test_recall_{key}"] = report[name]["recall"]
        metrics[f"test_f1_{key}"] = report[name]["f1-score"]

    report_path = workdir / "classification_report.json"
    report_path.write_text(json.dumps(report, indent=2))

    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(labels, class_names, rotation=45, ha="right")
    ax.set_yticks(labels, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{title}: confusion matrix")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(
            col, row, str(count), ha="center", va="center", fontsize=7, color="white" if count > threshold else "black"
        )
    fig.tight_layout()
    matrix_path = workdir / "confusion_matrix.png"
    fig.savefig(matrix_path, dpi=110)
    plt.close(fig)
    return metrics, [report_path, matrix_path]
