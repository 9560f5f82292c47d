"""Fake-news detector, TF-IDF floor: scikit-learn's TfidfTransformer and LogisticRegression on word counts.

The floor the neural candidates of the task have to beat (issue 25): on ISOT a bag of words with logistic
regression is known to be very strong, so when no neural model beats it by the paired test on the shared
validation rows, it serves. It reads the task's data as the LSTM does (`news_data`: cleaned text, the
same de-duplicated hash splits, the same row ids).

Design: the ONNX input is token ids, not strings. The project's word `text.Tokenizer` (its own vocabulary
of the training split, saved as `tokenizer.json` like the LSTM's, with a longer `sequence_length` so that
nearly every article is read whole) encodes the cleaned text, so serving (`text.load_encoder`, then ONNX),
parity (native and ONNX fed the same ids) and the head-to-head (each model scored on its own encoding of
the same articles) stay what they are for every text candidate. skl2onnx's TfidfVectorizer converter
would take a string tensor, which the API, the parity stage and the benchmarks do not feed, and tokenize
with its own regular expressions, not `text.tokens`; so the graph is written here, op by op:

    ids [batch, length] int32 -> ScatterElements(reduction=add) of ones into zeros [batch, 2 + words]
    -> drop the padding and out-of-vocabulary columns -> 1 + log(tf) where tf > 0 (sublinear tf)
    -> x idf -> / L2 norm -> MatMul coef + intercept -> Sigmoid: the fake probability [batch, 1]

which is what `TfidfVectorizer(sublinear_tf=True)` with the tokenizer's words as its vocabulary, then
`LogisticRegression.predict_proba`, give on the same first `sequence_length` words (tests/model/
test_floors.py checks both against ONNX Runtime). The native predictor is that scikit-learn pair on the
same ids (counts from the ids as a sparse matrix). The checkpoint is arrays (`model.npz`), not a pickle.

Decision threshold: chosen on the validation rows (`news_data.choose_threshold`, F1 of the fake class), then
taken out of the intercept (`news_data.threshold_offset`), so 0.5 means that threshold in scikit-learn, in
ONNX and in the API alike. Weights: two per vocabulary word (idf, coefficient) and the intercept, so
int8 or fp16 copies would save little and the dense [batch, words] intermediate dominates: only fp32.

Measured in one quick-profile night of the DAG on the shared sample, beside the LSTM (two busy cores): the
floor's tasks took 9 s (train 4.6, parity 1.4, benchmarks 2.7; the LSTM's: 55 s); test F1 0.955 and ROC
AUC 0.994 on 400 articles (the LSTM's: 0.815 and 0.915); ONNX fp32 0.04 ms at batch 1 (scikit-learn 0.80
ms), 1.9 ms at batch 64 (scikit-learn 1.8 ms: there the dense counts cost what the sparse ones save).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops_onnx.models import (
    ONNX_OPSET,
    EpochCallback,
    Predictor,
    Scored,
    TestRows,
    TrainResult,
    profile_config,
    sklearn_native,
)
from mlops_onnx.models.fake_news import QUICK as LSTM_QUICK
from mlops_onnx.models.fake_news import TOKENIZER_FILE, FakeNewsConfig, FakeNewsSpec
from mlops_onnx.models.news_data import (
    CLASS_NAMES,
    binary_metrics,
    choose_threshold,
    label_array,
    load_liar,
    split_articles,
    text_ids,
    threshold_offset,
)
from mlops_onnx.settings import Settings
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.text import Tokenizer, clean_text

FIRST_WORD_ID = 2  # text.Tokenizer: 0 pads, 1 is an out-of-vocabulary word


@dataclass(frozen=True)
class TfidfConfig:
    vocab_size: int = 20000
    # Words read from the start of title + text: the whole article for 97 % of the shared sample's training
    # split (median 377 words, 95th percentile 958); 256 (the LSTM's) cost ~0.01 of validation F1.
    sequence_length: int = 1000
    sublinear_tf: bool = True
    # scikit-learn's C. On the shared sample's validation rows C=10 beat C=1 by ~0.01 F1 (sublinear tf:
    # +0.005); 5,000 or 20,000 words made no difference there.
    inverse_l2: float = 10.0
    max_iter: int = 1000  # L-BFGS converged in 13-32 iterations on the shared sample
    # The split is the LSTM's, field for field: every candidate sees the same train, val and test articles.
    test_fraction: float = FakeNewsConfig.test_fraction
    validation_fraction: float = FakeNewsConfig.validation_fraction
    max_train_rows: int | None = None
    max_test_rows: int | None = None
    max_liar_rows: int | None = None
    seed: int = 42


QUICK = TfidfConfig(
    vocab_size=LSTM_QUICK.vocab_size,
    max_train_rows=LSTM_QUICK.max_train_rows,
    max_test_rows=LSTM_QUICK.max_test_rows,
    max_liar_rows=LSTM_QUICK.max_liar_rows,
)


def term_counts(ids: np.ndarray, words: int):
    """Each row's count of every vocabulary word (sparse [rows, words], float64), from token ids: padding and
    out-of-vocabulary ids are not counted."""
    from scipy.sparse import csr_matrix

    ids = np.asarray(ids, dtype=np.int64)
    rows = np.repeat(np.arange(len(ids)), ids.shape[1] if ids.ndim == 2 else 0)
    columns = ids.reshape(-1) - FIRST_WORD_ID
    kept = columns >= 0
    return csr_matrix((np.ones(kept.sum()), (rows[kept], columns[kept])), shape=(len(ids), words))


class TfidfModel:
    """The fitted pair, rebuilt from `model.npz`: scikit-learn's TfidfTransformer and LogisticRegression."""

    def __init__(self, weighting, classifier) -> None:
        self.weighting, self.classifier = weighting, classifier

    @property
    def words(self) -> int:
        return len(self.weighting.idf_)

    def probability(self, ids: np.ndarray) -> np.ndarray:
        """The fake probability [rows, 1] of token ids [rows, length]."""
        features = self.weighting.transform(term_counts(ids, self.words))
        return self.classifier.predict_proba(features)[:, 1:].astype(np.float32)

    def save(self, path: Path) -> Path:
        with path.open("wb") as handle:
            np.savez(
                handle,
                idf=self.weighting.idf_,
                sublinear_tf=np.array(self.weighting.sublinear_tf),
                coef=self.classifier.coef_,
                intercept=self.classifier.intercept_,
                classes=self.classifier.classes_,
            )
        return path

    @classmethod
    def load(cls, path: Path) -> TfidfModel:
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        with np.load(path) as saved:
            weighting = TfidfTransformer(sublinear_tf=bool(saved["sublinear_tf"]))
            weighting.idf_ = saved["idf"]
            classifier = LogisticRegression()
            classifier.coef_, classifier.intercept_, classifier.classes_ = (
                saved["coef"],
                saved["intercept"],
                saved["classes"],
            )
        return cls(weighting, classifier)


class FakeNewsTfidfSpec(FakeNewsSpec):
    """The LSTM spec's task, data, gate, parity rules, validation, evaluation rows and scoring; a scikit-learn
    model. Its toolchain is the LSTM spec's, whose code it inherits (scikit-learn is in it)."""

    architecture = "tfidf"
    variants = ()
    framework = "sklearn"
    checkpoint_name = "model.npz"
    speedup_target = 1.0  # scikit-learn at batch 1 is mostly input checks: ONNX Runtime should not be slower

    def train_config(self, settings: Settings) -> TfidfConfig:
        """The profile's config; MLOPS_EPOCHS does not apply (L-BFGS runs to convergence or `max_iter`)."""
        return profile_config(
            settings, TfidfConfig(), QUICK, max_train_rows="max_train_rows", max_test_rows="max_test_rows"
        )

    def train(self, snapshot: Snapshot, workdir: Path, settings: Settings, on_epoch: EpochCallback) -> TrainResult:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        from mlops_onnx.reporting import classification_report_artifacts

        cfg = self.train_config(settings)
        splits = split_articles(snapshot.path, cfg)
        tokenizer = Tokenizer.fit(splits.train["clean"], cfg.vocab_size, cfg.sequence_length)
        tokenizer_path = tokenizer.save(workdir / TOKENIZER_FILE)
        words = len(tokenizer.words)

        def counts(texts) -> Any:
            return term_counts(tokenizer.encode(texts), words)

        started = time.perf_counter()
        weighting = TfidfTransformer(sublinear_tf=cfg.sublinear_tf).fit(counts(splits.train["clean"]))
        classifier = LogisticRegression(C=cfg.inverse_l2, max_iter=cfg.max_iter, random_state=cfg.seed)
        with warnings.catch_warnings():  # not converging within max_iter is logged (`converged`), not warned
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(weighting.transform(counts(splits.train["clean"])), label_array(splits.train))
        fit_seconds = time.perf_counter() - started
        model = TfidfModel(weighting, classifier)

        y_val = label_array(splits.val)
        threshold, val_f1 = choose_threshold(model.probability(tokenizer.encode(splits.val["clean"])), y_val)
        classifier.intercept_ = classifier.intercept_ - threshold_offset(threshold)  # 0.5 now means `threshold`
        checkpoint = model.save(workdir / self.checkpoint_name)

        def probability(texts) -> np.ndarray:
            return model.probability(tokenizer.encode(texts))[:, 0].astype(np.float64)

        def loss_and_accuracy(frame) -> tuple[float, float]:
            p, y = probability(frame["clean"]), label_array(frame)
            return float(log_loss(y, p, labels=[0, 1])), float(np.mean((p >= 0.5) == y))

        val_probability = probability(splits.val["clean"])
        train_loss, train_accuracy = loss_and_accuracy(splits.train)
        val_loss, val_accuracy = loss_and_accuracy(splits.val)
        on_epoch(
            1,
            {
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "epoch_seconds": fit_seconds,
            },
        )

        test, y_test = splits.test, label_array(splits.test)
        test_probability = probability(test["clean"])
        metrics, artifacts = classification_report_artifacts(
            y_test, (test_probability >= 0.5).astype(np.int64), CLASS_NAMES, workdir, "Fake-news test set (TF-IDF)"
        )
        metrics.update(binary_metrics(y_test, test_probability, "test"))
        raw = [clean_text(t, x, strip_markers=False) for t, x in zip(test["title"], test["text"])]
        metrics["test_accuracy_raw_text"] = float(np.mean((probability(raw) >= 0.5) == y_test))
        liar_texts, liar_targets, liar_note = load_liar(snapshot.path / "aux" / "liar", cfg.max_liar_rows)
        metrics["liar_rows"] = float(len(liar_texts))
        if liar_texts:
            metrics.update(binary_metrics(liar_targets, probability(liar_texts), "liar", auc_interval_seed=cfg.seed))
        iterations = int(np.max(classifier.n_iter_))
        metrics.update(
            {
                **splits.counts,
                "decision_threshold": threshold,
                "val_f1_at_threshold": val_f1,
                "best_val_loss": val_loss,
                "fit_seconds": fit_seconds,
                "fit_iterations": float(iterations),
                "train_rows": float(len(splits.train)),
                "val_rows": float(len(splits.val)),
                "test_rows": float(len(test)),
            }
        )
        params = asdict(cfg) | {
            "architecture": self.architecture,
            "solver": classifier.solver,
            "converged": iterations < cfg.max_iter,
            "onnx_input_dtype": "int32",
            "liar": liar_note,
            "vocabulary_words": words,
            "parameters": 2 * words + 1,
            "model_features": "clean_text(title, text); never subject or date",
        }
        # One probability a row, as the other text candidates give theirs: the paired test compares them row by row.
        validation = Scored(TestRows(text_ids(splits.val["clean"]), np.empty(0, np.int32), y_val), val_probability)
        return TrainResult(
            checkpoint=checkpoint,
            metrics=metrics,
            artifacts=artifacts,
            params=params,
            preprocessing=[tokenizer_path],
            validation=validation,
        )

    def export_onnx(self, checkpoint: Path, out_path: Path) -> None:
        import onnx

        onnx.save(tfidf_graph(TfidfModel.load(checkpoint), self.onnx_input_name), str(out_path))

    def native_predictors(
        self, checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
    ) -> dict[str, Predictor]:
        """`native_eager`: the TfidfTransformer and LogisticRegression on the ids' counts (`sklearn_native`)."""
        return sklearn_native(device, settings, lambda: TfidfModel.load(checkpoint).probability)


def tfidf_graph(model: TfidfModel, input_name: str):
    """The ONNX model of `model` on token ids (module docstring), float32 throughout."""
    from onnx import TensorProto, helper, numpy_helper

    words = model.words
    width = FIRST_WORD_ID + words

    def constant(name: str, value) -> Any:
        return numpy_helper.from_array(np.asarray(value), name)

    node = helper.make_node
    nodes = [
        node("Cast", [input_name], ["ids"], to=TensorProto.INT64),
        node("Shape", [input_name], ["ids_shape"]),
        node("ConstantOfShape", ["ids_shape"], ["ones"], value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1])),
        node("Shape", [input_name], ["batch"], end=1),
        node("Concat", ["batch", "width"], ["counts_shape"], axis=0),
        node("ConstantOfShape", ["counts_shape"], ["zeros"]),
        node("ScatterElements", ["zeros", "ids", "ones"], ["all_counts"], axis=1, reduction="add"),
        node("Slice", ["all_counts", "first_word", "width", "word_axis"], ["counts"]),
    ]
    tf = "counts"
    if model.weighting.sublinear_tf:  # 1 + log(tf) where the word occurs, 0 where it does not (never log 0)
        nodes += [
            node("Max", ["counts", "one_f"], ["at_least_one"]),
            node("Log", ["at_least_one"], ["log_counts"]),
            node("Add", ["log_counts", "one_f"], ["sublinear"]),
            node("Greater", ["counts", "zero_f"], ["occurs"]),
            node("Where", ["occurs", "sublinear", "counts"], ["tf"]),
        ]
        tf = "tf"
    nodes += [
        node("Mul", [tf, "idf"], ["tfidf"]),
        node("ReduceL2", ["tfidf", "word_axis"], ["norm"], keepdims=1),
        node("Max", ["norm", "tiny"], ["safe_norm"]),  # an article without a known word stays all zeros
        node("Div", ["tfidf", "safe_norm"], ["features"]),
        node("MatMul", ["features", "coef"], ["score"]),
        node("Add", ["score", "intercept"], ["logit"]),
        node("Sigmoid", ["logit"], ["fake_probability"]),
    ]
    initializers = [
        constant("width", np.array([width], np.int64)),
        constant("first_word", np.array([FIRST_WORD_ID], np.int64)),
        constant("word_axis", np.array([1], np.int64)),
        constant("one_f", np.float32(1.0)),
        constant("zero_f", np.float32(0.0)),
        constant("tiny", np.float32(1e-12)),
        constant("idf", model.weighting.idf_.astype(np.float32)),
        constant("coef", model.classifier.coef_.T.astype(np.float32)),
        constant("intercept", model.classifier.intercept_.astype(np.float32)),
    ]
    graph = helper.make_graph(
        nodes,
        "fake_news_tfidf",
        [helper.make_tensor_value_info(input_name, TensorProto.INT32, ["batch", "sequence"])],
        [helper.make_tensor_value_info("fake_probability", TensorProto.FLOAT, ["batch", 1])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], ir_version=10)


SPEC = FakeNewsTfidfSpec()
