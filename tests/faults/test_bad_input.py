"""Bad input, every dataset: each kind of broken file, built from a small real sample in Kaggle's
layout, ends at `validate` (or `ingest`) with a message naming the file, the column and the count;
`last_good` and the registered champion stay where they were.

Stocks are validated per ticker file: a bad file is quarantined and the run goes on (on the
snapshot minus that file) as long as enough tickers pass; too many bad files fail the run.

The matrix below is also the "Bad input" table of docs/reliability.md (`test_readme_table_matches_the_matrix`).
Most cases run the `ingest` and `validate` stages directly, as a DAG task does; one case per
dataset goes through a real Airflow run (`airflow dags test`) in `test_fault_dags.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO_ROOT, run_stage
from fault_samples import (
    DATASETS,
    FASHION,
    MIN_TICKERS,
    NEWS,
    STOCKS,
    TICKERS,
    Dataset,
    pointer,
    publish_last_good,
    register_champion,
    registry_state,
    snapshots_root,
    write_good,
    write_target,
)
from mlflow import MlflowClient

from mlops_onnx.sources import SourceError
from mlops_onnx.stages import run_files
from mlops_onnx.tracking import RunContext
from mlops_onnx.validation import DataValidationError

VALIDATE, INGEST, QUARANTINE = "fails at validate", "fails at ingest", "file quarantined, run continues"


def lines_of(path: Path) -> tuple[list[str], str]:
    raw = path.read_bytes().decode()
    return raw.splitlines(), "\r\n" if "\r\n" in raw else "\n"


def rewrite_lines(path: Path, edit: Callable[[list[str]], list[str]], final_newline: bool = True) -> None:
    lines, newline = lines_of(path)
    path.write_bytes((newline.join(edit(lines)) + (newline if final_newline else "")).encode())


def set_cell(line: str, column: int, value: str) -> str:
    cells = line.split(",")
    cells[column] = value
    return ",".join(cells)


def rewrite_frame(path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame], **to_csv) -> None:
    edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False, **to_csv)


# --- the breakages: each takes the dataset and its target file, and breaks the file in place --------------


def truncate(ds: Dataset, path: Path) -> None:
    """Cut off mid-record, as an interrupted write or download leaves it (no final line break)."""
    if ds is NEWS:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False).head(150)
        text = frame.to_csv(index=False) + '"A headline that was cut",Breaking'
        path.write_text(text)
        return
    keep = 2 if ds is STOCKS else 300
    rewrite_lines(path, lambda lines: [*lines[:201], ",".join(lines[201].split(",")[:keep])], final_newline=False)


def drop_column(ds: Dataset, path: Path) -> None:
    if ds is NEWS:
        rewrite_frame(path, lambda f: f.drop(columns=["text"]))
    else:
        rewrite_lines(path, lambda lines: [line.rsplit(",", 1)[0] for line in lines])  # pixel784 / OpenInt


def rename_column(ds: Dataset, path: Path) -> None:
    old, new = {FASHION: ("label", "class"), NEWS: ("subject", "topic"), STOCKS: ("Close", "Last")}[ds]
    rewrite_lines(path, lambda lines: [lines[0].replace(old, new, 1), *lines[1:]])


def wrong_dtype(ds: Dataset, path: Path) -> None:
    if ds is NEWS:
        rewrite_frame(path, lambda f: f.assign(date=[str(20171231 - i) for i in range(len(f))]))
    elif ds is FASHION:
        rewrite_lines(path, lambda lines: [*lines[:5], *(set_cell(x, 100, "abc") for x in lines[5:8]), *lines[8:]])
    else:
        rewrite_lines(path, lambda lines: [*lines[:30], set_cell(lines[30], 4, "abc"), *lines[31:]])


def empty_cells(ds: Dataset, path: Path) -> None:
    if ds is NEWS:

        def blank(frame):
            frame.loc[frame.index[:25], ["title", "text"]] = ["", " "]
            return frame

        rewrite_frame(path, blank)
    elif ds is FASHION:
        rewrite_lines(path, lambda lines: [*lines[:10], *(set_cell(x, 200, "") for x in lines[10:13]), *lines[13:]])
    else:
        rewrite_lines(path, lambda lines: [*lines[:40], *(set_cell(x, 5, "") for x in lines[40:42]), *lines[42:]])


def out_of_range(ds: Dataset, path: Path) -> None:
    if ds is NEWS:
        rewrite_frame(path, lambda f: f.assign(date="December 31, 2099"))
    elif ds is FASHION:
        rewrite_lines(path, lambda lines: [*lines[:4], set_cell(lines[4], 0, "12"), *lines[5:]])
    else:

        def low_above_high(lines):
            cells = lines[50].split(",")
            cells[2], cells[3] = cells[3], str(float(cells[2]) + 1)  # High < Low
            return [*lines[:50], ",".join(cells), *lines[51:]]

        rewrite_lines(path, low_above_high)


def duplicate_rows(ds: Dataset, path: Path) -> None:
    if ds is NEWS:
        rewrite_frame(path, lambda f: pd.concat([f, f.head(50)], ignore_index=True))
    elif ds is FASHION:
        rewrite_lines(path, lambda lines: [*lines, *lines[1:201]])
    else:
        twice = [x for line in path.read_text().splitlines()[60:65] for x in (line, line)]  # each date twice in a row
        rewrite_lines(path, lambda lines: [*lines[:60], *twice, *lines[65:]])


def zero_bytes(ds: Dataset, path: Path) -> None:
    path.write_bytes(b"")


def not_utf8(ds: Dataset, path: Path) -> None:
    """cp1252 bytes, as an Excel resave leaves them."""
    if ds is NEWS:

        def accent(frame):
            frame.loc[7, "text"] = "Caf\u00e9 owners said \u2018no\u2019 " + frame.loc[7, "text"]
            return frame

        rewrite_frame(path, accent, encoding="cp1252", errors="replace")
        return
    row, column = (3, 50) if ds is FASHION else (12, 0)
    lines, newline = lines_of(path)
    lines[row] = set_cell(lines[row], column, "\x00")
    raw = (newline.join(lines) + newline).encode().replace(b"\x00", b"1\xe9" if ds is FASHION else b"2001-01-0\xe9")
    path.write_bytes(raw)


def ten_times_larger(ds: Dataset, path: Path) -> None:
    write_target(ds, path, ds.rows * 10)


def directory(ds: Dataset, path: Path) -> None:
    path.unlink()
    (path / "part-0").mkdir(parents=True)


@dataclass(frozen=True)
class Case:
    name: str
    problem: str  # the words of docs/reliability.md's table
    breaks: Callable[[Dataset, Path], None]
    # dataset key -> (outcome, texts the message must contain: the file, the column, the count)
    expected: dict[str, tuple[str, list[str]]]


T = STOCKS.target.split("/")[1]  # the broken ticker's file name
CASES = [
    Case(
        "truncated",
        "truncated CSV (cut mid-record, no final line break)",
        truncate,
        {
            "fashion": (VALIDATE, ["fashion-mnist_train.csv is truncated", "has 300 of 785 fields", "'pixel300'"]),
            "news": (VALIDATE, ["Fake.csv is truncated", "has 2 of 4 fields", "'subject'"]),
            "stocks": (QUARANTINE, [f"{T} is truncated", "has 2 of 7 fields", "'High'"]),
        },
    ),
    Case(
        "missing_column",
        "missing column",
        drop_column,
        {
            "fashion": (VALIDATE, ["fashion-mnist_train.csv", "1 pixel column(s) missing: ['pixel784']"]),
            "news": (VALIDATE, ["Fake.csv: column_present[text]", "has no 'text' column (found ['title', 'subject'"]),
            "stocks": (
                QUARANTINE,
                ["header is 'Date,Open,High,Low,Close,Volume'", "(missing ['OpenInt'], unexpected []"],
            ),
        },
    ),
    Case(
        "renamed_column",
        "renamed column",
        rename_column,
        {
            "fashion": (
                VALIDATE,
                [
                    "fashion-mnist_train.csv: expect_table_columns_to_match_ordered_list",
                    "column_present[label]",
                    "has no 'label' column",
                ],
            ),
            "news": (VALIDATE, ["Fake.csv: column_present[subject]", "has no 'subject' column", "'topic'"]),
            "stocks": (QUARANTINE, ["(missing ['Close'], unexpected ['Last'])"]),
        },
    ),
    Case(
        "wrong_dtype",
        "wrong dtype (text in a number/date column)",
        wrong_dtype,
        {
            "fashion": (
                VALIDATE,
                ["fashion-mnist_train.csv", "[pixel_non_integer]: 3 unexpected value(s) of 1000", "pixel100: 3"],
            ),
            "news": (VALIDATE, ["Fake.csv: expect_column_values_to_be_in_set[date]", "250 of 250 'date' value(s)"]),
            "stocks": (QUARANTINE, ["Close must be a number > 0: 1 of 400 row(s) fail, e.g. line 31"]),
        },
    ),
    Case(
        "empty_cells",
        "NaN / empty cells",
        empty_cells,
        {
            "fashion": (VALIDATE, ["fashion-mnist_train.csv", "[pixel_nulls]: 3 unexpected value(s)", "pixel200: 3"]),
            "news": (
                VALIDATE,
                [
                    "Fake.csv: expect_column_values_to_be_in_set[has_title_or_text]",
                    "25 of 250 row(s) (10.0%) have an empty 'title' and 'text'",
                ],
            ),
            "stocks": (QUARANTINE, ["Volume must be a number >= 0: 2 of 400 row(s) fail, e.g. line 41"]),
        },
    ),
    Case(
        "out_of_range",
        "out-of-range values",
        out_of_range,
        {
            "fashion": (
                VALIDATE,
                [
                    "fashion-mnist_train.csv: expect_column_values_to_be_in_set[label]",
                    "1 unexpected value(s) of 1000 (e.g. [12])",
                ],
            ),
            "news": (VALIDATE, ["Fake.csv: expect_column_values_to_be_in_set[date]", "250 lie outside 1990-01-01"]),
            "stocks": (QUARANTINE, ["High must be >= Low: 1 of 400 row(s) fail, e.g. line 51"]),
        },
    ),
    Case(
        "duplicate_rows",
        "duplicate rows",
        duplicate_rows,
        {
            "fashion": (VALIDATE, ["fashion-mnist_train.csv: 200 of 1,200 row(s) (16.7%) repeat an earlier row"]),
            "news": (VALIDATE, ["Fake.csv: 50 of 300 row(s) (16.7%) repeat an earlier row in all 4 columns"]),
            "stocks": (QUARANTINE, ["dates must strictly increase: 5 of 405 row(s) fail, e.g. line 62"]),
        },
    ),
    Case(
        "zero_bytes",
        "0-byte file",
        zero_bytes,
        {
            "fashion": (VALIDATE, ["fashion-mnist_train.csv is empty (0 bytes, no header)"]),
            "news": (VALIDATE, ["Fake.csv is empty (0 bytes, no header)"]),
            "stocks": (QUARANTINE, [f"{T} is empty (0 bytes, no header)"]),
        },
    ),
    Case(
        "not_utf8",
        "non-UTF-8 bytes (cp1252)",
        not_utf8,
        {
            "fashion": (
                VALIDATE,
                ["fashion-mnist_train.csv is not valid UTF-8", "column 'pixel50' (first at data row 3): 1 cell(s)"],
            ),
            "news": (VALIDATE, ["Fake.csv is not valid UTF-8", "column 'text' (first at data row 8): 1 cell(s)"]),
            "stocks": (QUARANTINE, [f"{T} is not valid UTF-8", "column 'Date' (first at data row 12): 1 cell(s)"]),
        },
    ),
    Case(
        "ten_times_larger",
        "a file 10x larger than in last_good",
        ten_times_larger,
        {
            "fashion": (VALIDATE, ["fashion-mnist_train.csv: ", "x the", "bytes it had in the last good snapshot"]),
            "news": (VALIDATE, ["Fake.csv: ", "x the", "bytes it had in the last good snapshot"]),
            "stocks": (QUARANTINE, [f"{STOCKS.target}: ", "x the", "bytes it had in the last good snapshot"]),
        },
    ),
    Case(
        "directory",
        "a directory in place of a file",
        directory,
        {
            key: (INGEST, [f"{DATASETS[key].target}: is a directory where the dataset expects a file"])
            for key in DATASETS
        },
    ),
]
MATRIX = [(case, key) for case in CASES for key in DATASETS]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One MLflow store for the module, each model with a champion from an earlier good night."""
    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    for dataset in DATASETS.values():
        register_champion(dataset.model, uri, folder / dataset.model)
    return uri


@pytest.fixture
def night(settings_env, registry, tmp_path):
    """Start of a night: the good sample is last_good; returns (settings, data dir) for a broken copy."""
    data = tmp_path / "data"
    settings = settings_env(
        MLOPS_DATA_SOURCE="local",
        MLOPS_DATA_DIR=str(data),
        MLFLOW_TRACKING_URI=registry,
        MLOPS_STOCK_MIN_TICKERS=MIN_TICKERS,
    )
    return settings, data


def start_from_good(dataset: Dataset, settings, data: Path) -> tuple[str, dict]:
    good = write_good(dataset, data)
    digest = publish_last_good(dataset, good, snapshots_root(settings))
    return digest, pointer(snapshots_root(settings), dataset)


def run_ingest_and_validate(dataset: Dataset, run_id: str):
    ctx = RunContext(dataset.dag_id, run_id)
    return run_stage("validate", dataset.model, ctx, run_stage("ingest", dataset.model, ctx))


@pytest.mark.parametrize(("case", "key"), MATRIX, ids=[f"{key}-{case.name}" for case, key in MATRIX])
def test_bad_input_is_stopped_with_file_column_and_count(night, registry, case, key):
    settings, data = night
    dataset = DATASETS[key]
    good_hash, before = start_from_good(dataset, settings, data)
    registered = registry_state(dataset.model, registry)
    case.breaks(dataset, data / dataset.folder / dataset.target)
    outcome, texts = case.expected[key]
    run_id = f"bad-{key}-{case.name}"

    if outcome == QUARANTINE:
        state = run_ingest_and_validate(dataset, run_id)
        from mlops_onnx.validation import load_report

        report = load_report(run_files(settings, RunContext(dataset.dag_id, run_id)).local)  # local copy
        reasons = " | ".join(report["quarantined"].get(dataset.target, []))
        assert report["success"] and dataset.target in report["quarantined"], report["quarantined"]
        assert sorted(report["passing_files"]) == sorted(set(TICKERS) - {dataset.target})
        for text in texts:
            assert text in reasons, reasons
        # The snapshot passed with the file quarantined: last_good moves to it, the bad file is never trained on.
        assert pointer(snapshots_root(settings), dataset)["content_hash"] == state["snapshot"] != good_hash
    else:
        error = SourceError if outcome == INGEST else DataValidationError
        with pytest.raises(error) as raised:
            run_ingest_and_validate(dataset, run_id)
        message = str(raised.value)
        for text in texts:
            assert text in message, message
        assert pointer(snapshots_root(settings), dataset) == before
        if outcome == INGEST:  # nothing half-written: only the good snapshot and its pointer are there
            assert sorted(p.name for p in (snapshots_root(settings) / dataset.name).iterdir()) == sorted(
                [good_hash, "last_good.json"]
            )
        else:
            client = MlflowClient(tracking_uri=registry)
            experiment = client.get_experiment_by_name(dataset.model).experiment_id
            runs = client.search_runs([experiment], f"tags.airflow_run_id = '{run_id}'")
            assert runs[0].data.tags["validation_status"] == "failed"
    assert registry_state(dataset.model, registry) == registered


def test_too_many_bad_ticker_files_fail_the_stock_run(night, registry):
    settings, data = night
    _, before = start_from_good(STOCKS, settings, data)
    registered = registry_state(STOCKS.model, registry)
    zero_bytes(STOCKS, data / STOCKS.folder / TICKERS[0])
    out_of_range(STOCKS, data / STOCKS.folder / TICKERS[1])
    with pytest.raises(DataValidationError) as raised:
        run_ingest_and_validate(STOCKS, "too-many-bad")
    message = str(raised.value)
    assert f"only 2 file(s) passed, at least {MIN_TICKERS} required" in message
    assert f"{TICKERS[0]}: file_is_readable" in message and f"{TICKERS[1]}: expect_column_pair" in message
    assert pointer(snapshots_root(settings), STOCKS) == before
    assert registry_state(STOCKS.model, registry) == registered


def test_row_count_caps_catch_a_huge_file_on_the_first_night(tmp_path):
    """Without a last_good to compare with, a hard cap (about twice Kaggle's largest file) still holds."""
    from mlops_onnx.validation.fashion import validate_file

    write_target(FASHION, tmp_path / FASHION.target, 300)
    report = validate_file(tmp_path / FASHION.target, min_rows=10, max_rows=100)
    failed = [c.detail for c in report.checks if not c.success]
    assert failed == ["fashion-mnist_train.csv: 300 data row(s); expected between 10 and 100"]


# --- docs/reliability.md's table is this matrix----------------------------------------------------------


def readme_table() -> str:
    rows = [
        "| problem | Fashion-MNIST (`fashion-mnist_train.csv`) | fake news (`Fake.csv`) | stocks (one ticker file) |",
        "| --- | --- | --- | --- |",
    ]
    for case in CASES:
        cells = []
        for key in DATASETS:
            outcome, texts = case.expected[key]
            cells.append(f"{outcome}: " + " … ".join(f"`{t.strip()}`" for t in texts))
        rows.append(f"| {case.problem} | " + " | ".join(cells) + " |")
    rows.append(
        f"| 2 of {len(TICKERS)} ticker files bad (fewer than MLOPS_STOCK_MIN_TICKERS={MIN_TICKERS} pass) "
        f"| | | {VALIDATE}: `only 2 file(s) passed, at least {MIN_TICKERS} required` |"
    )
    return (
        "\n".join(rows)
        .replace(TICKERS[0].split("/")[1], "<ticker>.us.txt")
        .replace(TICKERS[0], "Stocks/<ticker>.us.txt")
    )


def test_readme_table_matches_the_matrix():
    readme = (REPO_ROOT / "docs" / "reliability.md").read_text()
    assert readme_table() in readme, "regenerate the Bad input table of docs/reliability.md:\n" + readme_table()
