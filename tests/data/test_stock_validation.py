"""The stock archive's per-file verdicts: every kind of bad file is quarantined with a clear reason,
good files pass, and the snapshot fails only when fewer than the minimum number of tickers pass."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA

from mlops_onnx.settings import get_settings
from mlops_onnx.sources.synthetic_stocks import BAD_FILES, HEADER, generate_stocks, random_walk, write_ticker
from mlops_onnx.validation.stocks import StockChecks, validate_stocks

STOCK_DATA = SHARED_DATA / "price-volume-data-for-all-us-stocks-etfs"
GOOD_SAMPLE = [
    "ETFs/gld.us.txt",
    "ETFs/qqq.us.txt",
    "ETFs/spy.us.txt",
    "Stocks/aapl.us.txt",
    "Stocks/amzn.us.txt",
    "Stocks/fb.us.txt",
    "Stocks/ge.us.txt",
    "Stocks/googl.us.txt",
    "Stocks/ibm.us.txt",
    "Stocks/intc.us.txt",
    "Stocks/jpm.us.txt",
    "Stocks/msft.us.txt",
    "Stocks/nflx.us.txt",
    "Stocks/tsla.us.txt",
]
CHECKS = StockChecks(min_rows=300, min_passing=3)


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.us.txt"))


def validate(folder, checks=CHECKS, tickers=None):
    return validate_stocks(folder, "0" * 64, files_in(folder), checks, tickers)


def reasons(report, name):
    return " | ".join(report.quarantined()[name])


@pytest.mark.skipif(not HAS_SHARED_DATA, reason="../shared/data is not present")
def test_real_sample_quarantines_exactly_its_bad_files_with_reasons():
    report = validate(STOCK_DATA, StockChecks(min_rows=1050, min_passing=5))
    assert sorted(report.passing_files()) == GOOD_SAMPLE and report.success
    quarantined = report.quarantined()
    assert set(quarantined) == {
        "Stocks/accp.us.txt",
        "Stocks/jmom.us.txt",
        "ETFs/fieg.us.txt",
        "Stocks/ben.us.txt",
        "ETFs/cwi.us.txt",
        "Stocks/hydb.us.txt",
    }
    assert "empty (0 bytes, no header)" in reasons(report, "Stocks/accp.us.txt")
    for single in ("Stocks/jmom.us.txt", "ETFs/fieg.us.txt"):
        assert "1 data row(s) (a single-row file)" in reasons(report, single)
    ben = reasons(report, "Stocks/ben.us.txt")
    assert "High must be >= Low: 4 of 8362 row(s)" in ben and "High must be >= Open" in ben
    assert "line 4550 (Date 2002-09-19" in ben  # the row is named so it can be looked up
    cwi = reasons(report, "ETFs/cwi.us.txt")
    assert "Open must be a number > 0: 4 of 2730" in cwi and "Low must be a number > 0" in cwi
    hydb = reasons(report, "Stocks/hydb.us.txt")
    assert "23.9% of rows have Volume=0" in hydb and "71 data row(s)" in hydb
    assert report.files["Stocks/aapl.us.txt"].rows == 8364 and report.summary["passing"] == 14


@pytest.mark.skipif(not HAS_SHARED_DATA, reason="../shared/data is not present")
def test_a_few_zero_volume_days_do_not_quarantine_a_file():
    """AAPL, MSFT, AMZN each have one Volume=0 row: the rows stay, the file passes."""
    report = validate(STOCK_DATA, StockChecks(min_rows=1050, min_passing=5))
    for name in ("Stocks/aapl.us.txt", "Stocks/msft.us.txt", "Stocks/amzn.us.txt"):
        assert report.files[name].success


def quick_settings():
    return replace(get_settings(), profile="quick", synthetic_size="small")


@pytest.fixture(scope="module")
def synthetic_archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic-stocks")
    details = generate_stocks(folder, np.random.default_rng(7), quick_settings())
    return folder, details


def test_synthetic_archive_has_the_exact_format_and_its_bad_files_are_quarantined(synthetic_archive):
    folder, details = synthetic_archive
    raw = (folder / "Stocks/acme.us.txt").read_bytes()
    assert raw.startswith((HEADER + "\r\n").encode()) and raw.endswith(b"\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n")  # CRLF everywhere
    report = validate(folder)
    assert set(report.quarantined()) == set(BAD_FILES)
    assert len(report.passing_files()) == details["good_files"] == 8
    assert "empty (0 bytes" in reasons(report, "Stocks/empt.us.txt")
    assert "(a single-row file)" in reasons(report, "Stocks/solo.us.txt")
    bad_prices = reasons(report, "Stocks/badp.us.txt")
    assert "High must be >= Low: 1 of 400" in bad_prices and "Close must be a number > 0: 1 of 400" in bad_prices
    assert "of rows have Volume=0 (at most 5% allowed)" in reasons(report, "Stocks/illq.us.txt")
    assert "40 data row(s); at least 300 needed" in reasons(report, "ETFs/shrt.us.txt")


def test_synthetic_archive_is_deterministic_per_seed(synthetic_archive, tmp_path):
    folder, _ = synthetic_archive
    generate_stocks(tmp_path, np.random.default_rng(7), quick_settings())
    assert files_in(tmp_path) == files_in(folder)
    for name in files_in(folder):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


def test_walks_are_consistent_business_day_prices():
    frame = random_walk(np.random.default_rng(0), 500)
    dates = np.array(frame["Date"], dtype="datetime64[D]")
    assert np.all(np.diff(dates) > np.timedelta64(0, "D")) and np.all(np.is_busday(dates))
    assert (frame[["Open", "High", "Low", "Close"]] > 0).all().all()
    assert (frame["Low"] <= frame[["Open", "Close"]].min(axis=1)).all()
    assert (frame["High"] >= frame[["Open", "Close"]].max(axis=1)).all()


@pytest.fixture
def one_good_ticker(tmp_path):
    """A clean 400-row ticker file (written like the archive, CRLF) to break in one way per test."""
    folder = tmp_path / "archive"
    write_ticker(folder / "Stocks/good.us.txt", random_walk(np.random.default_rng(1), 400))
    return folder, folder / "Stocks/good.us.txt"


def edit_lines(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\r\n".join(edit(lines)) + "\r\n")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda lines: ["Date,Open,High,Low,Close,Volume", *lines[1:]], "header is 'Date,Open,High,Low,Close,Volume'"),
        (
            lambda lines: [lines[0], *lines[1:10], "2099-13-45" + lines[10][10:], *lines[11:]],
            "Date must parse as YYYY-MM-DD: 1 of 400 row(s) fail, e.g. line 11",
        ),
        (lambda lines: [*lines[:20], lines[19], *lines[21:]], "dates must strictly increase: 1 of 400"),
        (lambda lines: [*lines[:20], lines[20].replace(",", ",-", 1), *lines[21:]], "Open must be a number > 0"),
        (
            lambda lines: [
                *lines[:30],
                ",".join(lines[30].split(",")[:4] + ["abc"] + lines[30].split(",")[5:]),
                *lines[31:],
            ],
            "Close must be a number > 0: 1 of 400 row(s) fail, e.g. line 31",
        ),
        (lambda lines: [lines[0], lines[1] + ",7", *lines[2:]], "data rows have more fields than the 7-column header"),
        (lambda lines: [*lines[:30], lines[30] + ",7", *lines[31:]], "Expected 7 fields in line 31, saw 8"),
    ],
    ids=[
        "header",
        "unparsable_date",
        "repeated_date",
        "negative_open",
        "non_numeric_close",
        "extra_field_first_row",
        "extra_field_later_row",
    ],
)
def test_each_kind_of_broken_row_quarantines_the_file_with_its_reason(one_good_ticker, edit, expected):
    folder, path = one_good_ticker
    edit_lines(path, edit)
    report = validate(folder, StockChecks(min_rows=300, min_passing=1))
    assert not report.success
    assert expected in reasons(report, "Stocks/good.us.txt")


def test_lf_line_endings_pass_as_well_as_crlf(one_good_ticker):
    folder, path = one_good_ticker
    path.write_text(path.read_text().replace("\r\n", "\n"))
    assert validate(folder, StockChecks(min_rows=300, min_passing=1)).success


def test_the_run_fails_only_below_the_minimum_number_of_passing_tickers(synthetic_archive):
    folder, details = synthetic_archive
    enough = validate(folder, StockChecks(min_rows=300, min_passing=details["good_files"]))
    assert enough.success and len(enough.quarantined()) == len(BAD_FILES)
    too_few = validate(folder, StockChecks(min_rows=300, min_passing=details["good_files"] + 1))
    assert not too_few.success
    assert f"only {details['good_files']} file(s) passed, at least {details['good_files'] + 1}" in too_few.message()


def test_configured_tickers_limit_the_check_and_a_missing_one_is_reported(synthetic_archive):
    folder, _ = synthetic_archive
    report = validate(folder, StockChecks(min_rows=300, min_passing=2), tickers=("acme", "mkt", "nope", "solo"))
    assert sorted(report.files) == ["ETFs/mkt.us.txt", "Stocks/acme.us.txt", "Stocks/solo.us.txt", "nope.us.txt"]
    assert sorted(report.passing_files()) == ["ETFs/mkt.us.txt", "Stocks/acme.us.txt"] and report.success
    assert "'nope' is configured (MLOPS_STOCK_TICKERS) but has no" in reasons(report, "nope.us.txt")


def test_verdicts_do_not_depend_on_how_files_are_chunked(synthetic_archive, tmp_path):
    folder, _ = synthetic_archive
    copy = tmp_path / "archive"
    shutil.copytree(folder, copy)
    whole = validate(copy, StockChecks(min_rows=300, min_passing=3, chunk_files=100))
    chunked = validate(copy, StockChecks(min_rows=300, min_passing=3, chunk_files=2))
    assert whole.quarantined() == chunked.quarantined()
    assert whole.passing_files() == chunked.passing_files()
