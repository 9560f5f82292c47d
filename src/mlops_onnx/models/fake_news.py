"""Fake-news detector: Keras Embedding + LSTM + sigmoid over the cleaned title and text of an article.

The dataset is easy for the wrong reasons: nearly every real article carries a "(Reuters)" dateline
and `subject`/`date` alone separate the classes. So the model sees only `text.clean_text(title,
text)` (source markers stripped, never subject or date); articles are de-duplicated, exactly and
after cleaning, *before* the split by text hash (`news_data`, shared with the MiniLM candidate); and
the run logs a leakage probe beside the model's metrics: how well a trivial classifier does on
subject/date only, how well the "(Reuters)" marker alone does, and the model's accuracy on raw vs
cleaned test text. LIAR statements (aux dataset, mapped to binary) give a cross-dataset figure
(with a bootstrap interval on its ROC AUC) that is reported, never gated.

The LSTM is a plain `keras.layers.LSTM` without `mask_zero`: tf2onnx turns it into ONNX's fused
`LSTM` op (GRU, Bidirectional or masking become slower `Loop` subgraphs). The ONNX input is int32
token ids [batch, sequence_length] from `text.Tokenizer`, whose JSON is registered beside the model.
TensorFlow is imported inside the functions that need it, so tasks that only read data or the
ONNX files (ingest, validate, quantize, gate) do not pay its ~5 s import.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_onnx.datasets import FAKE_NEWS
from mlops_onnx.models import EpochCallback, ModelSpec, Predictor, Scored, TestRows, TrainResult, profile_config
from mlops_onnx.models.news_data import (
    CLASS_NAMES,
    Splits,
    binary_metrics,
    choose_threshold,
    label_array,
    load_articles,
    load_liar,
    split_articles,
    text_ids,
    threshold_offset,
)
from mlops_onnx.parity import ParityRules
from mlops_onnx.settings import Settings
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.text import Tokenizer, clean_text, load_encoder
from mlops_onnx.validation import ValidationReport
from mlops_onnx.validation.fake_news import NewsRules, parse_dates

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"


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
    toolchain = ("tensorflow", "keras", "tf2onnx", "sklearn", "onnx", "onnxruntime")

    def train_config(self, settings: Settings) -> FakeNewsConfig:
        return profile_config(
            settings,
            FakeNewsConfig(),
            QUICK,
            epochs="epochs",
            max_train_rows="max_train_rows",
            max_test_rows="max_test_rows",
        )

    def resolved_config(self, settings: Settings) -> dict[str, Any]:
        return super().resolved_config(settings) | {"validation": {"news_min_rows": settings.news_min_rows}}

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
        # The decision threshold that maximises validation F1 becomes the model's 0.5 (its last bias moves).
        y_val = label_array(splits.val)
        threshold, val_f1 = choose_threshold(_predict(model, x_val)[:, 0], y_val)
        weights, bias = model.get_layer("fake_probability").get_weights()
        model.get_layer("fake_probability").set_weights([weights, bias - threshold_offset(threshold)])
        val_probability = _predict(model, x_val)[:, 0]
        validation = Scored(TestRows(text_ids(splits.val["clean"]), np.empty(0, np.int32), y_val), val_probability)
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
            liar_probability = _predict(model, tokenizer.encode(liar_texts))[:, 0]
            metrics.update(binary_metrics(liar_targets, liar_probability, "liar", auc_interval_seed=cfg.seed))
        metrics.update(
            {
                **splits.counts,
                "best_val_loss": float(min(history.history["val_loss"])),
                "epochs_run": float(len(history.history["val_loss"])),
                "decision_threshold": threshold,
                "val_f1_at_threshold": val_f1,
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
            checkpoint=checkpoint,
            metrics=metrics,
            artifacts=artifacts,
            params=params,
            preprocessing=[tokenizer_path],
            validation=validation,
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
        """The test split encoded by the preprocessing files' own encoder (`text.load_encoder`): a champion of
        the other text architecture (LSTM vocabulary or MiniLM subwords) is scored on its own inputs."""
        test = split_articles(snapshot.path, self.train_config(settings)).test
        encoder = load_encoder(preprocessing or workdir)
        return TestRows(ids=text_ids(test["clean"]), inputs=encoder.encode(test["clean"]), targets=label_array(test))

    def trial_articles(self, snapshot: Snapshot, settings: Settings, rows: int, max_chars: int) -> list[dict[str, str]]:
        """Tonight's first `rows` test articles as a client sends them to the API (title and raw text; those the
        API would refuse, a blank text or one over `max_chars`, left out), for the server trial."""
        test = split_articles(snapshot.path, self.train_config(settings)).test
        texts = test["text"].fillna("").astype(str)
        servable = test[(texts.str.strip() != "") & (texts.str.len() <= max_chars)].head(rows)
        return [
            {"title": str(t) if isinstance(t, str) else "", "text": x}
            for t, x in zip(servable["title"], servable["text"])
        ]

    def calibration_data(self, snapshot: Snapshot, settings: Settings, workdir: Path, rows: int) -> np.ndarray:
        train = split_articles(snapshot.path, self.train_config(settings)).train.head(rows)
        return load_encoder(workdir).encode(train["clean"])

    def native_predictors(
        self, checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
    ) -> dict[str, Predictor]:
        from mlops_onnx.models.keras_native import keras_predictors

        return keras_predictors(checkpoint, settings, device, compiled)

    def quality(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """F1 of the fake class, as sklearn's `f1_score(zero_division=0)` computes it, in numpy: the paired
        permutation test of the head-to-head calls it a thousand times per comparison."""
        predicted, actual = self.labels(outputs) == 1, np.asarray(targets).reshape(-1) == 1
        true_positives = int(np.sum(predicted & actual))
        flagged_or_fake = int(predicted.sum() + actual.sum())
        return 2.0 * true_positives / flagged_or_fake if flagged_or_fake else 0.0

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        return (outputs.reshape(-1) >= 0.5).astype(np.int64)

    def parity_strata(self, rows: TestRows) -> np.ndarray:
        return rows.targets

    def drift_frame(self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None):
        """Per article: its class, its length in words and, with the champion's word tokenizer (an LSTM's), the
        share of its words that tokenizer does not know."""
        from mlops_onnx.drift import sample
        from mlops_onnx.text import tokens

        articles, _ = load_articles(snapshot.path)
        words = [tokens(text) for text in articles["clean"]]
        frame = pd.DataFrame(
            {"label": np.array(CLASS_NAMES)[articles["label"].to_numpy()], "text_words": [float(len(w)) for w in words]}
        )
        has_tokenizer = preprocessing is not None and (preprocessing / TOKENIZER_FILE).is_file()
        encoder = load_encoder(preprocessing) if has_tokenizer else None
        if isinstance(encoder, Tokenizer):  # a subword tokenizer (MiniLM) has no out-of-vocabulary words
            vocabulary = set(encoder.words)
            frame["oov_rate"] = [sum(w not in vocabulary for w in ws) / len(ws) if ws else 0.0 for ws in words]
        return sample(frame, settings.drift_max_rows, settings.seed)

    def decision_margin(self, outputs: np.ndarray) -> np.ndarray:
        return np.abs(outputs.reshape(-1).astype(np.float64) - 0.5)


SPEC = FakeNewsSpec()
