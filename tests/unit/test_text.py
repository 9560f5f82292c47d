"""The one cleaning/tokenizer module: what it strips, and ids that survive a save/load."""

import json

import numpy as np
import pytest
from conftest import SHARED_DATA

from mlops_onnx.text import OOV_ID, PAD_ID, Tokenizer, clean_text, tokens

NEWS = SHARED_DATA / "fake-and-real-news-dataset"


@pytest.mark.parametrize(
    "raw",
    [
        "WASHINGTON (Reuters) - The Senate voted on Tuesday.",
        "SAN JUAN, Puerto Rico (Reuters) - The Senate voted on Tuesday.",
        "BEIJING/WASHINGTON (Reuters) - The Senate voted on Tuesday.",
        " (Reuters) - The Senate voted on Tuesday.",
        "NEW YORK (IFR) - The Senate voted on Tuesday.",
    ],
)
def test_dateline_is_stripped(raw):
    assert clean_text("", raw) == "the senate voted on tuesday."


def test_source_markers_are_stripped_wherever_they_are():
    raw = (
        "21st Century Wire says The Senate voted (Reuters) on Tuesday, a Reuters tally showed. "
        "Source: Reutersthe end @realDonaldTrump https://t.co/abc pic.twitter.com/xyz "
        "www.example.com. Featured image via Chip Somodevilla/Getty Images"
    )
    cleaned = clean_text("Senate Votes (VIDEO)", raw)
    for marker in (
        "reuters",
        "21st century wire",
        "getty",
        "featured image",
        "@",
        "http",
        "pic.twitter",
        "www.",
        "(video)",
        "somodevilla",
    ):
        assert marker not in cleaned, (marker, cleaned)
    assert cleaned.startswith("senate votes the senate voted")


def test_publisher_boilerplate_is_stripped():
    reuters = (
        "The following statements\xa0were posted to the verified Twitter accounts of U.S. President Donald "
        "Trump, @realDonaldTrump and @POTUS.  The opinions expressed are his own.\xa0Reuters has not edited "
        "the statements or confirmed their accuracy.  Tax cuts are coming. (This version of the Sept. 20 "
        "story corrects the date) Reporting by Jane Doe; Editing by John Roe"
    )
    assert clean_text("", reuters) == "tax cuts are coming."
    wire = "21WIRE says it. SUPPORT OUR WORK BY SUBSCRIBING & BECOMING A MEMBER @21WIRE.TV"
    assert clean_text("", wire) == "says it."


def test_quotes_whitespace_and_case_are_normalised():
    assert clean_text("  Trump\u2019s \u201cBig\u201d  Day ", "A\xa0B\n\nC  ") == 'trump\'s "big" day a b c'


def test_apostrophe_styles_give_the_same_tokens():
    # Reuters keeps curly apostrophes, the fake sites' scrape dropped them: not a signal the model may use.
    assert (
        tokens(clean_text("", "Mexico\u2019s plan"))
        == tokens(clean_text("", "Mexico's plan"))
        == tokens(clean_text("", "Mexico s plan"))
        == ["mexico", "s", "plan"]
    )


def test_missing_values_are_empty_strings():
    assert clean_text(None, float("nan")) == ""
    assert clean_text("Title", " ") == "title"


def test_raw_mode_only_normalises():
    assert clean_text("", "WASHINGTON (Reuters) - Hi", strip_markers=False) == "washington (reuters) - hi"


@pytest.mark.skipif(not (NEWS / "True.csv").is_file(), reason="../shared/data fake-news sample not present")
def test_no_reuters_survives_in_the_real_sample():
    import pandas as pd

    for name in ("True.csv", "Fake.csv"):
        frame = pd.read_csv(NEWS / name, dtype=str, keep_default_na=False)
        cleaned = [clean_text(t, x) for t, x in zip(frame["title"], frame["text"])]
        assert not [c for c in cleaned if "reuters" in c], name


def test_tokenizer_vocabulary_padding_and_truncation():
    tokenizer = Tokenizer.fit(["b a a", "c a b"], vocab_size=4, sequence_length=4)
    assert tokenizer.words == ["a", "b"]  # by frequency, ties by word; 2 ids reserved
    ids = tokenizer.encode(["a b", "a b c a b a"])
    assert ids.dtype == np.int32 and ids.shape == (2, 4)
    assert ids.tolist() == [[PAD_ID, PAD_ID, 2, 3], [2, 3, OOV_ID, 2]]  # zeros in front; first tokens kept
    assert tokenizer.encode([]).shape == (0, 4)


def test_tokenizer_save_load_gives_identical_ids(tmp_path):
    texts = [clean_text("Title one", "WASHINGTON (Reuters) - Some words here."), clean_text("Two", "Other words.")]
    tokenizer = Tokenizer.fit(texts, vocab_size=50, sequence_length=12)
    path = tokenizer.save(tmp_path / "tokenizer.json")
    payload = json.loads(path.read_text())
    assert payload["sequence_length"] == 12 and payload["dtype"] == "int32" and payload["oov_id"] == 1
    loaded = Tokenizer.load(path)
    unseen = texts + ["never seen words", ""]
    assert np.array_equal(loaded.encode(unseen), tokenizer.encode(unseen))
    assert loaded.words == tokenizer.words and loaded.vocab_size == 50


def test_tokenizer_load_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"words": []}')
    with pytest.raises(ValueError, match="not a tokenizer file"):
        Tokenizer.load(path)


ADVERSARIAL = {  # 100,000 characters each, built to make a backtracking pattern rescan the rest of the text
    "disclaimer without its end": "the following statements were posted to the verified twitter ",
    "spaces before no dateline": " ",
    "handles of dots": "@.",
    "credit lines without a period": "reporting by ",
    "unclosed media tags": "(video ",
    "image credits": "featured image via getty ",
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_cleaning_is_linear_in_the_text_whatever_it_holds(name):
    """The API cleans whatever a client sends: a 100,000-character text built against each pattern is cleaned
    in a fraction of a second (the disclaimer's unbounded lazy scan took about 1 s, quadratic in the
    text). The bound is loose for a loaded CI host; the patterns themselves are bounded or possessive."""
    import time

    text = (ADVERSARIAL[name] * (100_000 // len(ADVERSARIAL[name]) + 1))[:100_000]
    started = time.perf_counter()
    clean_text("title", text)
    assert time.perf_counter() - started < 0.25, name


def test_the_disclaimer_is_still_stripped_when_it_is_complete():
    disclaimer = (
        "The following statements were posted to the verified Twitter accounts of U.S. President Donald "
        "Trump, @realDonaldTrump and @POTUS. The statements were reposted and have not been edited in any "
        "way. Reuters has not edited the statements or confirmed their accuracy. @realDonaldTrump : - Big win"
    )
    assert clean_text("", disclaimer) == ": - big win"
