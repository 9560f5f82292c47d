"""The fake-news suite on the real sample, its quirks, and each kind of bad input."""

import csv
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from mlops_onnx.validation.fake_news import NewsRules, parse_dates, validate_snapshot

NEWS = SHARED_DATA / "fake-and-real-news-dataset"
HAS_NEWS = (NEWS / "Fake.csv").is_file()
RULES = NewsRules(min_rows=100)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Real files (or synthetic ones of the same schema and quirks) to copy and break."""
    folder = tmp_path_factory.mktemp("news")
    if HAS_NEWS:
        for name in ("Fake.csv", "True.csv"):
            shutil.copy(NEWS / name, folder / name)
    else:
        from types import SimpleNamespace

        from mlops_onnx.sources.synthetic_news import generate_news

        generate_news(folder, np.random.default_rng(0), SimpleNamespace(synthetic_size="small"))
    return folder


@pytest.fixture
def copy(sample, tmp_path):
    for name in ("Fake.csv", "True.csv"):
        shutil.copy(sample / name, tmp_path / name)
    return tmp_path


def rewrite(path, edit):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame).to_csv(path, index=False)


def message(folder):
    report = validate_snapshot(folder, "0" * 64, RULES)
    assert not report.success
    return report.message()


def test_real_sample_passes_and_its_quirks_are_counted(sample):
    report = validate_snapshot(sample, "0" * 64, RULES)
    assert report.success, report.message()
    fake = report.summary["Fake.csv"]
    assert fake["unparseable_dates"] >= 1  # URL cells: counted and reported, not fatal
    assert any(value.startswith("https://") for value in fake["unparseable_date_examples"])
    assert 0.2 < report.summary["fake_share"] < 0.8
    assert report.files["True.csv"].rows >= 100


def test_supported_date_formats_parse():
    parsed, which = parse_dates(
        pd.Series(["December 31, 2017 ", "Dec 31, 2017", "31-Dec-17", "2017-12-31", "https://example.com/a", ""])
    )
    assert parsed[:4].dt.strftime("%Y-%m-%d").tolist() == ["2017-12-31"] * 4
    assert which.tolist() == [0, 1, 2, 3, -1, -1]


def test_missing_text_column_names_file_and_column(copy):
    rewrite(copy / "Fake.csv", lambda f: f.drop(columns=["text"]))
    text = message(copy)
    assert "Fake.csv: column_present[text]" in text and "has no 'text' column" in text


def test_empty_file_names_the_file(copy):
    (copy / "True.csv").write_bytes(b"")
    assert "True.csv: file_is_readable: True.csv is empty (0 bytes, no header)" in message(copy)


def test_header_only_file_fails_row_count(copy):
    (copy / "True.csv").write_text("title,text,subject,date\n")
    text = message(copy)
    assert "True.csv: expect_table_row_count_to_be_between" in text


def test_wrong_encoding_names_file_and_column(copy):
    frame = pd.read_csv(copy / "Fake.csv", dtype=str, keep_default_na=False).head(300)
    frame.loc[7, "text"] = "Caf\u00e9 owners said \u2018no\u2019"  # cp1252 bytes 0xe9, 0x91, 0x92: not UTF-8
    frame.to_csv(copy / "Fake.csv", index=False, encoding="cp1252", errors="replace")
    text = message(copy)
    assert "Fake.csv: file_is_readable: Fake.csv is not valid UTF-8" in text
    assert "column 'text' (first at data row 8)" in text


def test_too_many_rows_without_title_or_text_fail(copy):
    def blank(frame):
        rows = frame.index[: int(len(frame) * 0.1)]
        frame.loc[rows, ["title", "text"]] = ["  ", " "]
        return frame

    rewrite(copy / "True.csv", blank)
    text = message(copy)
    assert "True.csv: expect_column_values_to_be_in_set[has_title_or_text]" in text
    assert "empty 'title' and 'text'" in text and "first at lines [2, 3, 4, 5, 6]" in text


def test_a_few_rows_without_title_or_text_are_counted_not_fatal(copy):
    def blank(frame):
        frame.loc[[3, 9], ["title", "text"]] = ["", " "]
        return frame

    rewrite(copy / "True.csv", blank)
    report = validate_snapshot(copy, "0" * 64, RULES)
    assert report.success, report.message()
    assert report.summary["True.csv"]["rows_without_title_or_text"] == 2


def test_mostly_unparseable_dates_fail(copy):
    rewrite(copy / "Fake.csv", lambda f: f.assign(date="yesterday"))
    text = message(copy)
    assert "Fake.csv: expect_column_values_to_be_in_set[date]" in text and "'yesterday'" in text


def test_lopsided_classes_fail(copy):
    rewrite(copy / "True.csv", lambda f: f.head(120))
    text = message(copy)
    assert "class_balance: expect_column_mean_to_be_between[is_fake]" in text and "Fake.csv holds" in text


def test_a_renamed_column_fails_the_schema(copy):
    rewrite(copy / "True.csv", lambda f: f.rename(columns={"subject": "topic"}))
    text = message(copy)
    assert "True.csv: expect_table_columns_to_match_ordered_list" in text and "subject" in text


def test_synthetic_files_have_the_real_quirks_pass_and_repeat_per_seed(tmp_path):
    from types import SimpleNamespace

    from mlops_onnx.sources.synthetic_news import generate_liar, generate_news

    quick = SimpleNamespace(synthetic_size="small")
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        generate_news(tmp_path / run, np.random.default_rng(7), quick)
        generate_liar(tmp_path / run, np.random.default_rng(7), quick)
    for name in ("Fake.csv", "True.csv", "train.tsv", "valid.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    report = validate_snapshot(tmp_path / "a", "0" * 64, RULES)
    assert report.success, report.message()
    assert report.summary["Fake.csv"]["unparseable_dates"] == 1
    fake = pd.read_csv(tmp_path / "a" / "Fake.csv", dtype=str, keep_default_na=False)
    true = pd.read_csv(tmp_path / "a" / "True.csv", dtype=str, keep_default_na=False)
    assert fake.duplicated(["title", "text"]).sum() == 1 and (fake["text"] == " ").sum() == 1
    assert true["text"].str.contains(r"^[A-Z ,a-z]+ \(Reuters\) - ").all() and true["date"].str.endswith(" ").all()
    assert not set(fake["subject"]) & set(true["subject"])
    liar = pd.read_csv(tmp_path / "a" / "train.tsv", sep="\t", header=None, quoting=csv.QUOTE_NONE)
    assert liar.shape[1] == 14
