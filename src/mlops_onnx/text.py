"""Text cleaning and tokenization for the fake-news models: the one implementation used in training,
in parity checks and by any server that feeds the ONNX model.

Cleaning removes what tells the *source* apart instead of the content: the Reuters dateline
("WASHINGTON (Reuters) - "), any other "Reuters" mention, the fake sites' boilerplate ("21st Century
Wire says", "Featured image via ... Getty Images", "(VIDEO)" title tags), links and twitter handles.
Apostrophes are a source marker too (Reuters writes "Mexico’s", the fake sites' scrape "Moore s"),
so every quote becomes a token boundary. Only the title and the text go in: never subject or date.

The tokenizer maps words to ids: 0 is padding, 1 is an out-of-vocabulary word, 2.. the training
vocabulary by descending frequency. Sequences keep their first `sequence_length` tokens and are
padded at the front, so a plain (unmasked) LSTM ends its reading on real words. Ids are int32:
exactly what the Keras `Embedding` gets and what the ONNX model's input is declared as.

A transformer candidate (MiniLM) reads the same cleaned text through its own subword tokenizer
(`SubwordEncoder`); `load_encoder` picks the right one from a model's preprocessing files.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

PAD_ID, OOV_ID = 0, 1
FORMAT = "mlops_onnx.text.Tokenizer/1"
ID_DTYPE = np.int32

# Curly quotes and no-break spaces (str.replace: 10x faster than str.translate on long texts).
_NORMALISE = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\xa0": " ",
}
# "WASHINGTON (Reuters) - ", "SAN JUAN, Puerto Rico (Reuters) - ", "NEW YORK (IFR) - ": a place, an agency, a dash.
# Patterns see lowercased text (case-insensitive matching is several times slower).
# Every pattern is linear in the text: repeats are bounded or possessive (`*+`), so no input makes one
# backtrack over the whole text (the API cleans what any client sends; tests/unit/test_text.py times it).
_DATELINE = re.compile(
    r"^\s*+[^()\n]{0,80}?\((?:thomson )?(?:reuters|ifr|ap|afp)\b[^)\n]{0,40}\)\s*[-\u2013\u2014]+\s*"
)
_MEDIA_TAG = r"(?:video|videos|tweets?|images?|photos?|screenshots?|audio|details)"
# (literal that must occur, pattern): the literal test skips the regex on most texts, 5x faster.
_SOURCE_MARKERS = [
    (literal, re.compile(pattern))
    for literal, pattern in (
        ("http", r"https?://\S+"),  # links: the fake sites embed tweets and sources
        ("www.", r"www\.\S+"),
        ("pic.twitter", r"pic\.twitter\.com/\S+"),
        ("@", r"@[\w.]*\w"),  # twitter handles (and "@21wire.tv")
        ("century wire", r"21st century wire(?:\.com)?(?: says| said)?"),  # also glued to the next word
        ("21wire", r"21wire(?:\.tv)?"),
        ("support our work", r"support our work by subscribing[^.\n]*"),  # 21st Century Wire's footer
        ("ing by", r"\b(?:additional )?(?:reporting|writing|editing) by\b[^.\n]*"),  # Reuters' credit lines
        ("this version of", r"\(this version of[^)]*\)"),  # Reuters' correction notes
        (
            "the following statements",
            r"(?s)the following statements\s++were posted to the verified twitter.{0,400}?"
            r"confirmed their accuracy\.?",
        ),  # Reuters' disclaimer on Trump's tweets (about 250 characters once handles are gone)
        ("featured", r"featured (?:image|photo)\b[^.\n]*"),  # image credits, to the end of their sentence
        ("image", r"\bimages? (?:via|by|credits?)\b[^.\n]*"),
        ("photo", r"\bphotos? (?:via|by|credits?)\b[^.\n]*"),
        ("getty", r"(?:via |/\s*)?getty(?: images)?"),
        ("(", rf"\({_MEDIA_TAG}\b[^)\n]{{0,20}}\)"),  # "(VIDEO)", "(TWEETS)": the fake sites' title tags
        ("[", rf"\[{_MEDIA_TAG}\b[^\]\n]{{0,20}}\]"),  # "[Video]"
        ("reuters", r"reuters\)?"),  # "(reuters)", "thomson reuters", glued ones ("source: reutersthe")
    )
]
_TOKEN = re.compile(r"[^\W_]+")  # runs of letters/digits: quotes, hyphens and punctuation separate words


def _strip_markers(text: str) -> str:
    text = _DATELINE.sub("", text, count=1)
    for literal, marker in _SOURCE_MARKERS:
        if literal in text:
            text = marker.sub(" ", text)
    return text


def clean_text(title: str | None, text: str | None, strip_markers: bool = True) -> str:
    """Title and text as one lowercased string without source markers (`strip_markers=False`: only the
    normalisation, for measuring how much the markers are worth)."""
    parts = []
    for part in (title, text):
        part = "" if part is None or part != part else str(part)  # None / NaN from pandas
        for old, new in _NORMALISE.items():
            part = part.replace(old, new)
        part = part.lower()
        parts.append(_strip_markers(part) if strip_markers else part)
    return " ".join(" ".join(parts).split())


def tokens(cleaned: str) -> list[str]:
    return _TOKEN.findall(cleaned)


class Tokenizer:
    """Word-level vocabulary of the `vocab_size - 2` most frequent training words (ids 2..)."""

    def __init__(self, words: list[str], vocab_size: int, sequence_length: int) -> None:
        if len(words) > vocab_size - 2:
            raise ValueError(f"{len(words)} words do not fit a vocabulary of {vocab_size} (2 ids are reserved)")
        self.words = words
        self.vocab_size = vocab_size
        self.sequence_length = sequence_length
        self._ids = {word: i for i, word in enumerate(words, start=2)}

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int, sequence_length: int) -> Tokenizer:
        counts = Counter(word for text in texts for word in tokens(text))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))  # ties by word: deterministic
        return cls([word for word, _ in ranked[: vocab_size - 2]], vocab_size, sequence_length)

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """Cleaned texts -> int32 ids [n, sequence_length]: first tokens kept, zeros in front."""
        rows = []
        for text in texts:
            ids = [self._ids.get(word, OOV_ID) for word in tokens(text)[: self.sequence_length]]
            rows.append([PAD_ID] * (self.sequence_length - len(ids)) + ids)
        return np.asarray(rows, dtype=ID_DTYPE).reshape(-1, self.sequence_length)

    def save(self, path: Path) -> Path:
        payload = {
            "format": FORMAT,
            "vocab_size": self.vocab_size,
            "sequence_length": self.sequence_length,
            "pad_id": PAD_ID,
            "oov_id": OOV_ID,
            "dtype": np.dtype(ID_DTYPE).name,
            "padding": "pre",
            "truncating": "post",
            "first_word_id": 2,
            "words": self.words,
        }
        path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        if payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a tokenizer file (format {payload.get('format')!r}, expected {FORMAT!r})")
        return cls(payload["words"], payload["vocab_size"], payload["sequence_length"])


SUBWORD_FORMAT = "mlops_onnx.text.SubwordEncoder/1"
SUBWORD_CONFIG = "text_encoder.json"  # beside the Hugging Face `tokenizer.json`: marks a subword model's folder
TOKENIZER_FILE = "tokenizer.json"  # the LSTM vocabulary, or a transformer's Hugging Face tokenizer


class SubwordEncoder:
    """A transformer's subword tokenizer: the Hugging Face `tokenizer.json` run by the `tokenizers` library
    (no transformers import), truncated to `max_length` tokens ([CLS] and [SEP] included) and padded with
    `pad_id` on the right to the longest text of the batch. Ids are int64, as the encoder's ONNX input."""

    def __init__(self, tokenizer_json: str, max_length: int, pad_id: int, pad_token: str, architecture: str):
        from tokenizers import Tokenizer as FastTokenizer

        self.tokenizer_json = tokenizer_json
        self.max_length, self.pad_id, self.pad_token, self.architecture = max_length, pad_id, pad_token, architecture
        self._tokenizer = FastTokenizer.from_str(tokenizer_json)
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """Cleaned texts -> int64 ids [n, longest ≤ max_length]."""
        encodings = self._tokenizer.encode_batch(list(texts))
        if not encodings:
            return np.zeros((0, 1), dtype=np.int64)
        return np.asarray([e.ids for e in encodings], dtype=np.int64)

    def save(self, folder: Path) -> list[Path]:
        """`tokenizer.json` and `text_encoder.json` in `folder`: the files registered beside the model."""
        tokenizer_path, config_path = Path(folder) / TOKENIZER_FILE, Path(folder) / SUBWORD_CONFIG
        tokenizer_path.write_text(self.tokenizer_json, encoding="utf-8")
        config = {
            "format": SUBWORD_FORMAT,
            "architecture": self.architecture,
            "tokenizer": TOKENIZER_FILE,
            "max_length": self.max_length,
            "pad_id": self.pad_id,
            "pad_token": self.pad_token,
            "dtype": "int64",
            "padding": "post, to the longest text of the batch",
            "truncating": "post",
        }
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return [tokenizer_path, config_path]

    @classmethod
    def load(cls, folder: Path) -> SubwordEncoder:
        config_path = Path(folder) / SUBWORD_CONFIG
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format") != SUBWORD_FORMAT:
            raise ValueError(f"{config_path}: format {config.get('format')!r}, expected {SUBWORD_FORMAT!r}")
        tokenizer_json = (Path(folder) / config["tokenizer"]).read_text(encoding="utf-8")
        return cls(tokenizer_json, config["max_length"], config["pad_id"], config["pad_token"], config["architecture"])


def load_encoder(folder: Path) -> Tokenizer | SubwordEncoder:
    """The text encoding a model's preprocessing folder describes, chosen by its files: a subword tokenizer
    where `text_encoder.json` is (a transformer), else the word vocabulary of `tokenizer.json` (the LSTM)."""
    folder = Path(folder)
    if (folder / SUBWORD_CONFIG).is_file():
        return SubwordEncoder.load(folder)
    return Tokenizer.load(folder / TOKENIZER_FILE)
