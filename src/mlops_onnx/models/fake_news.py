"""Fake-news detector: Keras Embedding + LSTM + sigmoid over the cleaned title and text of an article.

The dataset is easy for the wrong reasons: nearly every real article carries a "(Reuters)" dateline
and `subject`/`date` alone separate the classes. So the model sees only `text.clean_text(title,
text)` (source markers stripped, never subject or date); articles are de-duplicated, exactly and
after cleaning, *before* the split by text hash; and the run logs a leakage probe beside the
model's metrics: how well a trivial classifier does on subject/date only, how well the "(Reuters)"
marker alone does, and the model's accuracy on raw vs cleaned test text. LIAR statements (aux
dataset, mapped to binary) give a cross-dataset figure that is reported, never gated.

The LSTM is a plain `keras.layers.LSTM` without `mask_zero`: tf2onnx turns it into ONNX's fused
`LSTM` op (GRU, Bidirectional or masking become slower `Loop` subgraphs). The ONNX input is int32
token ids [batch, sequence_length] from `text.Tokenizer`, whose JSON is registered beside the model.
TensorFlow is imported inside the functions that need it, so tasks that only read data or the
ONNX files (ingest, validate, quantize, gate) do not pay its ~5 s import.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_onnx.datasets import FAKE_NEWS
from mlops_onnx.models import EpochCallback, ModelSpec, Predictor, TestRows, TrainResult, profile_config
from mlops_onnx.parity import ParityRules
from mlops_onnx.settings import Settings
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.text import Tokenizer, clean_text
from mlops_onnx.validation import ValidationReport
from mlops_onnx.validation.fake_news import CLASS_FILES, NewsRules, has_content, parse_dates, read_news_csv

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
CLASS_NAMES = ["real", "fake"]  # label 0, label 1
LIAR_FAKE = {"pants-fire", "false", "barely-true"}
LIAR_REAL = {"half-true", "mostly-true", "true"}
LIAR_COLUMNS, LIAR_LABEL, LIAR_STATEMENT = 14, 1, 2  # LIAR's TSV: id, label, statement, ... (no header)


@dataclass(frozen=True)
class FakeNewsConfig:
    vocab_size: int = 20000
    sequence_length: int = 256  # tokens kept from the start of title + text
    embedding_dim: int = 64
    lstm_units: int = 64
    embedding_dropout: float = 0.2
    dropout: float = 0.3
    learning_rate: float = 1e-3
    clipnorm: float = 1.0  # long unmasked sequences: clipping keeps the LSTM from diverging
    batch_size: int = 64
    epochs: int = 10
    patience: int = 2
    test_fraction: float = 0.15
    validation_fraction: float = 0.15  # of what is left after the test split
    max_train_rows: int | None = None
    max_test_rows: int | None = None
    max_liar_rows: int | None = None
    seed: int = 42


QUICK = FakeNewsConfig(
    vocab_size=5000,
    sequence_length=128,
    embedding_dim=32,
    lstm_units=32,
    epochs=3,
    max_train_rows=1500,
    max_test_rows=400,
    max_liar_rows=500,
)


def build_model(cfg: FakeNewsConfig):
    from mlops_onnx.models.keras_native import load_keras

    keras = load_keras()
    layers = keras.layers
    tokens = keras.Input(shape=(cfg.sequence_length,), dtype="int32", name="tokens")
    x = layers.Embedding(cfg.vocab_size, cfg.embedding_dim, name="embedding")(tokens)
    x = layers.SpatialDropout1D(cfg.embedding_dropout)(x)
    x = layers.LSTM(cfg.lstm_units, name="lstm")(x)  # no mask_zero: keeps ONNX's fused LSTM op
    x = layers.Dropout(cfg.dropout)(x)
    fake = layers.Dense(1, activation="sigmoid", name="fake_probability")(x)
    return keras.Model(tokens, fake, name="fake_news_classifier")


# --- data: one function builds the splits, for train and for evaluation alike ------------------


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
    article (same title and text; then the same text after cleaning), keeping the first."""
    conflicting = articles.groupby("clean")["label"].transform("nunique") > 1
    articles = articles[~conflicting]
    exact = articles.duplicated(["title", "text"])
    articles = articles[~exact]
    normalised = articles.duplicated("clean")
    articles = articles[~normalised].reset_index(drop=True)
    counts = {
        "dedup_conflicting_label_rows": conflicting.sum(),
        "dedup_exact_rows": exact.sum(),
        "dedup_normalised_rows": normalised.sum(),
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


def split_articles(folder: Path, cfg: FakeNewsConfig) -> Splits:
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


# --- the leakage probe ---------------------------------------------------------------------------


def metadata_features(frame: pd.DataFrame, subjects: list[str], with_subject: bool) -> np.ndarray:
    """What a shortcut-taker would use: one-hot subject, the parsed date and which date format it had."""
    parsed, fmt = parse_dates(frame["date"])
    columns = [
        parsed.dt.year.fillna(0),
        parsed.dt.month.fillna(0),
        parsed.dt.day.fillna(0),
        parsed.dt.dayofweek.fillna(-1),
        fmt,
        frame["date"].str.endswith(" ").astype(int),
    ]
    if with_subject:
        columns += [(frame["subject"] == s).astype(int) for s in subjects]
    return np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])


def leakage_probe(splits: Splits, seed: int) -> dict[str, float]:
    """Accuracy of trivial classifiers that never read the article: the shortcuts the model must not take."""
    from sklearn.tree import DecisionTreeClassifier

    subjects = sorted(splits.train["subject"].unique())
    metrics = {}
    for name, with_subject in (("subject_date", True), ("date", False)):
        tree = DecisionTreeClassifier(max_depth=4, random_state=seed)
        tree.fit(metadata_features(splits.train, subjects, with_subject), label_array(splits.train))
        predicted = tree.predict(metadata_features(splits.test, subjects, with_subject))
        metrics[f"leakage_probe_{name}_accuracy"] = float(np.mean(predicted == label_array(splits.test)))
    says_reuters = splits.test["text"].str.contains("(Reuters)", regex=False).to_numpy()
    metrics["leakage_probe_reuters_marker_accuracy"] = float(np.mean((~says_reuters) == label_array(splits.test)))
    metrics.update(text_probe(splits, seed))
    return metrics


def text_probe(splits: Splits, seed: int) -> dict[str, float]:
    """How much the cleaning matters: one bag-of-words classifier trained on raw text (markers kept)
    and one on cleaned text. (The LSTM itself cannot show it: its vocabulary is learnt from cleaned
    text, so "reuters" is an unknown word to it.)"""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    def raw(frame: pd.DataFrame) -> list[str]:
        return [clean_text(t, x, strip_markers=False) for t, x in zip(frame["title"], frame["text"])]

    metrics = {}
    for name, texts in (("raw", raw), ("clean", lambda frame: list(frame["clean"]))):
        vectorizer = TfidfVectorizer(max_features=20000, ngram_range=(1, 2), min_df=2)
        probe = LogisticRegression(max_iter=1000, random_state=seed)
        probe.fit(vectorizer.fit_transform(texts(splits.train)), label_array(splits.train))
        predicted = probe.predict(vectorizer.transform(texts(splits.test)))
        metrics[f"leakage_probe_tfidf_{name}_text_accuracy"] = float(np.mean(predicted == label_array(splits.test)))
    return metrics


# --- the spec ------------------------------------------------------------------------------------


def _predict(model, inputs: np.ndarray, batch: int = 512) -> np.ndarray:
    """Fake probabilities [n, 1], batched through the model in inference mode."""
    if not len(inputs):
        return np.zeros((0, 1), np.float32)
    return np.concatenate([model(inputs[i : i + batch], training=False).numpy() for i in range(0, len(inputs), batch)])


def binary_metrics(y_true: np.ndarray, probability: np.ndarray, prefix: str) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    predicted = (probability >= 0.5).astype(np.int64)
    metrics = {
        f"{prefix}_accuracy": accuracy_score(y_true, predicted),
        f"{prefix}_precision": precision_score(y_true, predicted, zero_division=0),
        f"{prefix}_recall": recall_score(y_true, predicted, zero_division=0),
        f"{prefix}_f1": f1_score(y_true, predicted, zero_division=0),
    }
    if len(np.unique(y_true)) == 2:
        metrics[f"{prefix}_roc_auc"] = roc_auc_score(y_true, probability)
    return {k: float(v) for k, v in metrics.items()}


class FakeNewsSpec(ModelSpec):
    name = "fake_news_classifier"
    architecture = "lstm"
    dataset = FAKE_NEWS
    primary_metric = "test_f1"  # F1 of the "fake" class
    default_gate_min = 0.90
    parity_rules = ParityRules(quality_name="f1")
    variants = ("int8_dynamic", "fp16")
    onnx_input_name = "tokens"
    framework = "keras"
    checkpoint_name = "model.keras"
    speedup_target = 10.0

    def train_config(self, settings: Settings) -> FakeNewsConfig:
        return profile_config(
            settings,
            FakeNewsConfig(),
            QUICK,
            epochs="epochs",
            max_train_rows="max_train_rows",
            max_test_rows="max_test_rows",
        )

    def validate(self, snapshot: Snapshot, settings: Settings) -> ValidationReport:
        from mlops_onnx.validation.fake_news import validate_snapshot

        rules = NewsRules(min_rows=settings.news_min_rows)
        return validate_snapshot(snapshot.path, snapshot.content_hash, rules)

    def train(self, snapshot: Snapshot, workdir: Path, settings: Settings, on_epoch: EpochCallback) -> TrainResult:
        from mlops_onnx.models.keras_native import compile_and_fit, load_keras

        cfg = self.train_config(settings)
        splits = split_articles(snapshot.path, cfg)
        tokenizer = Tokenizer.fit(splits.train["clean"], cfg.vocab_size, cfg.sequence_length)
        tokenizer_path = tokenizer.save(workdir / TOKENIZER_FILE)
        x_train, x_val = tokenizer.encode(splits.train["clean"]), tokenizer.encode(splits.val["clean"])

        load_keras().utils.set_random_seed(cfg.seed)
        model = build_model(cfg)
        history = compile_and_fit(
            model,
            (x_train, label_array(splits.train)),
            (x_val, label_array(splits.val)),
            learning_rate=cfg.learning_rate,
            clipnorm=cfg.clipnorm,
            loss="binary_crossentropy",
            metrics=("accuracy",),
            epochs=cfg.epochs,
            patience=cfg.patience,
            batch_size=cfg.batch_size,
            on_epoch=on_epoch,
            logged={
                "train_loss": "loss",
                "train_accuracy": "accuracy",
                "val_loss": "val_loss",
                "val_accuracy": "val_accuracy",
            },
        )
        checkpoint = workdir / "model.keras"
        model.save(checkpoint)

        from mlops_onnx.reporting import classification_report_artifacts

        test, y_test = splits.test, label_array(splits.test)
        probability = _predict(model, tokenizer.encode(test["clean"]))[:, 0]
        metrics, artifacts = classification_report_artifacts(
            y_test, (probability >= 0.5).astype(np.int64), CLASS_NAMES, workdir, "Fake-news test set"
        )
        metrics.update(binary_metrics(y_test, probability, "test"))
        raw = tokenizer.encode([clean_text(t, x, strip_markers=False) for t, x in zip(test["title"], test["text"])])
        metrics["test_accuracy_raw_text"] = float(np.mean((_predict(model, raw)[:, 0] >= 0.5) == y_test))
        metrics.update(leakage_probe(splits, cfg.seed))
        liar_texts, liar_targets, liar_note = load_liar(snapshot.path / "aux" / "liar", cfg.max_liar_rows)
        metrics["liar_rows"] = float(len(liar_texts))
        if liar_texts:
            metrics.update(binary_metrics(liar_targets, _predict(model, tokenizer.encode(liar_texts))[:, 0], "liar"))
        metrics.update(
            {
                **splits.counts,
                "best_val_loss": float(min(history.history["val_loss"])),
                "epochs_run": float(len(history.history["val_loss"])),
                "train_rows": float(len(x_train)),
                "val_rows": float(len(x_val)),
                "test_rows": float(len(test)),
            }
        )
        params = asdict(cfg)
        params.update(
            {
                "recurrent_layer": "LSTM",
                "onnx_input_dtype": "int32",
                "liar": liar_note,
                "vocabulary_words": len(tokenizer.words),
                "parameters": model.count_params(),
                "model_features": "clean_text(title, text); never subject or date",
            }
        )
        return TrainResult(
            checkpoint=checkpoint, metrics=metrics, artifacts=artifacts, params=params, preprocessing=[tokenizer_path]
        )

    def export_onnx(self, checkpoint: Path, out_path: Path) -> None:
        from mlops_onnx.models.keras_native import export_keras_onnx
        from mlops_onnx.variants import LOOP_OPS, graph_op_types

        export_keras_onnx(checkpoint, out_path, self.onnx_input_name, "int32")
        ops = graph_op_types(out_path)
        recurrent = sorted(ops & ({"LSTM", "GRU", "RNN"} | LOOP_OPS))
        log.warning(
            "fake_news_classifier ONNX graph: recurrent op(s) %s%s",
            recurrent,
            "" if "LSTM" in ops and not ops & LOOP_OPS else " (expected one fused LSTM, no Loop)",
        )

    def evaluation_data(
        self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None
    ) -> TestRows:
        test = split_articles(snapshot.path, self.train_config(settings)).test
        tokenizer = Tokenizer.load((preprocessing or workdir) / TOKENIZER_FILE)
        return TestRows(ids=text_ids(test["clean"]), inputs=tokenizer.encode(test["clean"]), targets=label_array(test))

    def calibration_data(self, snapshot: Snapshot, settings: Settings, workdir: Path, rows: int) -> np.ndarray:
        train = split_articles(snapshot.path, self.train_config(settings)).train.head(rows)
        return Tokenizer.load(workdir / TOKENIZER_FILE).encode(train["clean"])

    def native_predictors(
        self, checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
    ) -> dict[str, Predictor]:
        from mlops_onnx.models.keras_native import keras_predictors

        return keras_predictors(checkpoint, settings, device, compiled)

    def quality(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        from sklearn.metrics import f1_score

        return float(f1_score(targets, self.labels(outputs), zero_division=0))

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        return (outputs.reshape(-1) >= 0.5).astype(np.int64)

    def drift_frame(self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None):
        """Per article: its class, its length in words and, with the champion's tokenizer, the share of its
        words that tokenizer does not know."""
        from mlops_onnx.drift import sample
        from mlops_onnx.text import tokens

        articles, _ = load_articles(snapshot.path)
        words = [tokens(text) for text in articles["clean"]]
        frame = pd.DataFrame(
            {"label": np.array(CLASS_NAMES)[articles["label"].to_numpy()], "text_words": [float(len(w)) for w in words]}
        )
        tokenizer_file = preprocessing / TOKENIZER_FILE if preprocessing is not None else None
        if tokenizer_file is not None and tokenizer_file.is_file():
            vocabulary = set(Tokenizer.load(tokenizer_file).words)
            frame["oov_rate"] = [sum(w not in vocabulary for w in ws) / len(ws) if ws else 0.0 for ws in words]
        return sample(frame, settings.drift_max_rows, settings.seed)

    def decision_margin(self, outputs: np.ndarray) -> np.ndarray:
        return np.abs(outputs.reshape(-1).astype(np.float64) - 0.5)


SPEC = FakeNewsSpec()
