"""The fake-news data every text candidate (LSTM, MiniLM) reads: one implementation of the splits.

Articles are cleaned (`text.clean_text`), de-duplicated exactly and after cleaning *before* the split,
and split by the hash of their cleaned text, so every candidate of the task trains, validates and is
tested on the same articles, and a test row has the same id (`text_ids`) whichever model scores it.
LIAR statements (aux dataset, mapped to binary) give a cross-dataset figure that is reported, never
gated; its ROC AUC comes with a bootstrap 95 % interval (`stats.bootstrap_roc_auc`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from mlops_onnx.text import clean_text
from mlops_onnx.validation.fake_news import CLASS_FILES, has_content, read_news_csv

log = logging.getLogger(__name__)

CLASS_NAMES = ["real", "fake"]  # label 0, label 1
LIAR_FAKE = {"pants-fire", "false", "barely-true"}
LIAR_REAL = {"half-true", "mostly-true", "true"}
LIAR_COLUMNS, LIAR_LABEL, LIAR_STATEMENT = 14, 1, 2  # LIAR's TSV: id, label, statement, ... (no header)


class SplitConfig(Protocol):
    """The fields of a candidate's config that decide the split (the same values give the same rows)."""

    test_fraction: float
    validation_fraction: float
    max_train_rows: int | None
    max_test_rows: int | None


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    counts: dict[str, float]  # rows dropped at each step, logged as metrics


def load_articles(folder: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """Both class files with a `label` (1 = fake) and the cleaned `clean` text; rows with neither
    title nor text (which validation allowed below its threshold) dropped."""
    frames, counts = [], {}
    for name, label in CLASS_FILES.items():
        frame, unreadable = read_news_csv(folder / name)
        if frame is None:
            raise ValueError(f"{folder / name}: {unreadable.detail}")
        content = has_content(frame)
        counts[f"rows_without_content_{name.removesuffix('.csv').lower()}"] = float((~content).sum())
        frames.append(frame[content].assign(label=label, source=name))
    articles = pd.concat(frames, ignore_index=True)
    articles["clean"] = [clean_text(t, x) for t, x in zip(articles["title"], articles["text"])]
    return articles, counts


def deduplicate(articles: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Drop every copy of a text found in both classes (its label is unknowable), then repeats of an
    article (same title and text; then the same text after cleaning; then the same cleaned body under
    another title, which would otherwise sit in train and test at once), keeping the first. An empty body
    (a title-only article) is no duplicate of another."""
    body = pd.Series([clean_text(None, x) for x in articles["text"]], index=articles.index)
    has_body = body != ""
    conflicting = articles.groupby("clean")["label"].transform("nunique") > 1
    conflicting |= has_body & (articles.groupby(body)["label"].transform("nunique") > 1)
    articles, body, has_body = articles[~conflicting], body[~conflicting], has_body[~conflicting]
    exact = articles.duplicated(["title", "text"])
    normalised = ~exact & articles.duplicated("clean")
    same_body = ~exact & ~normalised & has_body & body.duplicated()
    articles = articles[~(exact | normalised | same_body)].reset_index(drop=True)
    counts = {
        "dedup_conflicting_label_rows": conflicting.sum(),
        "dedup_exact_rows": exact.sum(),
        "dedup_normalised_rows": normalised.sum(),
        "dedup_same_body_rows": same_body.sum(),
    }
    return articles, {k: float(v) for k, v in counts.items()}


def text_positions(clean: pd.Series) -> np.ndarray:
    """Each cleaned text's place in [0, 1): its hash, so an article's split never depends on what else the
    snapshot holds, on the file order, or on the seed."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "big") / 2**64 for t in clean],
        dtype=np.float64,
    )


def text_ids(clean: pd.Series) -> np.ndarray:
    return np.array([hashlib.blake2b(t.encode("utf-8"), digest_size=8).hexdigest() for t in clean])


def split_articles(folder: Path, cfg: SplitConfig) -> Splits:
    """De-duplicated articles split by the hash of their cleaned text: the same article is in the same split
    on every night, so a champion was never trained on a later night's test articles. Each split is in hash
    order (a fixed pseudo-random order); `max_*_rows` keep its first rows."""
    articles, counts = load_articles(folder)
    articles, dedup = deduplicate(articles)
    articles = articles.assign(position=text_positions(articles["clean"])).sort_values("position", kind="stable")
    val_end = cfg.test_fraction + (1 - cfg.test_fraction) * cfg.validation_fraction
    test = articles[articles["position"] < cfg.test_fraction]
    val = articles[(articles["position"] >= cfg.test_fraction) & (articles["position"] < val_end)]
    train = articles[articles["position"] >= val_end]
    train, test = train.head(cfg.max_train_rows), test.head(cfg.max_test_rows)
    return Splits(train, val, test, {**counts, **dedup, "articles": float(len(articles))})


def label_array(frame: pd.DataFrame) -> np.ndarray:
    return frame["label"].to_numpy(dtype=np.int64)


def load_liar(folder: Path, max_rows: int | None) -> tuple[list[str], np.ndarray, str]:
    """LIAR statements (cleaned) and binary labels, 1 = pants-fire/false/barely-true; and a note."""
    files = sorted(folder.glob("*.tsv")) if folder.is_dir() else []
    if not files:
        return [], np.zeros(0, np.int64), f"LIAR not in the snapshot ({folder} missing): liar_rows=0"
    frames = []
    for path in files:
        frame = pd.read_csv(path, sep="\t", header=None, quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
        if frame.shape[1] != LIAR_COLUMNS:
            log.warning("%s: %d columns, LIAR has %d; file skipped", path.name, frame.shape[1], LIAR_COLUMNS)
            continue
        frames.append(frame)
    if not frames:
        return [], np.zeros(0, np.int64), f"no readable LIAR file in {folder}: liar_rows=0"
    liar = pd.concat(frames, ignore_index=True)
    liar = liar[liar[LIAR_LABEL].isin(LIAR_FAKE | LIAR_REAL)].head(max_rows)
    texts = [clean_text("", statement) for statement in liar[LIAR_STATEMENT]]
    note = f"LIAR {', '.join(p.name for p in files)}: {len(texts)} statements, {sorted(LIAR_FAKE)} = fake"
    return texts, liar[LIAR_LABEL].isin(LIAR_FAKE).to_numpy(dtype=np.int64), note


def binary_metrics(
    y_true: np.ndarray, probability: np.ndarray, prefix: str, auc_interval_seed: int | None = None
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the "fake" class at 0.5, and the ROC AUC when both classes
    occur; with `auc_interval_seed`, also the AUC's bootstrap 95 % interval (`<prefix>_roc_auc_ci_low/high`)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    from mlops_onnx.stats import bootstrap_roc_auc

    predicted = (probability >= 0.5).astype(np.int64)
    metrics = {
        f"{prefix}_accuracy": accuracy_score(y_true, predicted),
        f"{prefix}_precision": precision_score(y_true, predicted, zero_division=0),
        f"{prefix}_recall": recall_score(y_true, predicted, zero_division=0),
        f"{prefix}_f1": f1_score(y_true, predicted, zero_division=0),
    }
    if len(np.unique(y_true)) == 2:
        metrics[f"{prefix}_roc_auc"] = roc_auc_score(y_true, probability)
        if auc_interval_seed is not None:
            interval = bootstrap_roc_auc(y_true, probability, seed=auc_interval_seed)
            metrics[f"{prefix}_roc_auc_ci_low"], metrics[f"{prefix}_roc_auc_ci_high"] = interval
    return {k: float(v) for k, v in metrics.items()}


def choose_threshold(probability: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """The decision threshold that maximises the fake class's F1 on these (validation) rows, and that F1:
    every distinct probability is tried (F1 of "p ≥ t" for all t at once, from cumulative counts); ties go
    to the threshold nearest 0.5."""
    probability = np.asarray(probability, dtype=np.float64).reshape(-1)
    fake = np.asarray(targets).reshape(-1) == 1
    order = np.argsort(-probability, kind="stable")
    p, y = probability[order], fake[order]
    last = np.r_[p[1:] != p[:-1], True]  # flag everything down to the last row of each distinct value
    true_positives = np.cumsum(y)[last]
    flagged = (np.arange(len(p)) + 1)[last]
    f1 = 2.0 * true_positives / (flagged + fake.sum())
    thresholds = p[last]
    best = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12))
    pick = best[np.argmin(np.abs(thresholds[best] - 0.5))]
    return float(thresholds[pick]), float(f1[pick])


def threshold_offset(threshold: float) -> float:
    """What to subtract from a sigmoid output's logit (its last bias) so that 0.5 means `threshold`: the
    model then says "fake" at 0.5 exactly where it said so at `threshold`, in PyTorch, Keras and ONNX alike."""
    threshold = float(np.clip(threshold, 1e-6, 1 - 1e-6))
    return float(np.log(threshold / (1 - threshold)))
