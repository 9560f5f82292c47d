"""Great Expectations checks for the Kaggle stock archive, one verdict per ticker file.

Each `Stocks/<t>.us.txt` / `ETFs/<t>.us.txt` file must have the header
`Date,Open,High,Low,Close,Volume,OpenInt` (CRLF line endings are the archive's own and fine),
ISO dates that parse and strictly increase, numeric prices > 0 with Low ≤ Open, Close ≤ High,
a non-negative volume, and enough rows for the model's window and its train/val/test split.
A failing file is quarantined with its reasons (see `ValidationReport(min_passing_files=...)`);
the snapshot fails only when fewer than `min_passing` files pass.

Zero volume: a few Volume=0 days are normal (holidays, data gaps: AAPL has one) and stay in
training, where volume enters only as a log1p change, finite at zero. A file where more than
`max_zero_volume_fraction` of the rows have Volume=0 is quarantined: those are illiquid tickers
whose "prices" repeat the last quote (the sample's `hydb`: 17 of 71 rows).

Scale: GX is not run once per file (8,500 validations on the full archive). Files are read one
at a time and validated in chunks of `chunk_files`: one GX run over a table with one row per file
(header, row count, zero-volume fraction) and one over the chunk's rows concatenated with a
`file` column; the `file` of every unexpected row gives the per-file verdicts. At most one chunk
of rows is in memory. Passing files get an empty check list; the suite they passed is listed
once in the report's summary, which keeps the report small for thousands of files.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_onnx.validation import (
    CheckResult,
    FileReport,
    ValidationReport,
    expectations,
    read_csv_checked,
    validate_frame,
)

HEADER = ("Date", "Open", "High", "Low", "Close", "Volume", "OpenInt")
PRICES = ("Open", "High", "Low", "Close")
# (higher, lower) column pairs every row must respect: High bounds everything from above, Low from below.
BOUNDS = (("High", "Low"), ("High", "Open"), ("High", "Close"), ("Open", "Low"), ("Close", "Low"))
FILE_SUFFIX = ".us.txt"


@dataclass(frozen=True)
class StockChecks:
    min_rows: int  # the model's window + feature warm-up + train/val/test days
    min_passing: int  # fewest passing files for the snapshot to pass
    max_zero_volume_fraction: float = 0.05
    chunk_files: int = 250
    max_rows: int = 30_000  # about twice the longest real history (IBM, GE: 14,059 trading days since 1962)


def ticker_of(path: str) -> str:
    """`Stocks/aapl.us.txt` -> `aapl`."""
    return Path(path).name.removesuffix(FILE_SUFFIX)


def ticker_files(files: Iterable[str], tickers: tuple[str, ...] | None) -> tuple[list[str], list[str]]:
    """The snapshot's ticker files to validate (all, or those of `tickers`) and the configured tickers with no file."""
    candidates = sorted(f for f in files if f.endswith(FILE_SUFFIX) and f.split("/")[0] in ("Stocks", "ETFs"))
    if tickers is None:
        return candidates, []
    wanted = set(tickers)
    chosen = [f for f in candidates if ticker_of(f) in wanted]
    found = {ticker_of(f) for f in chosen}
    return chosen, [t for t in tickers if t not in found]


def _file_suite(checks: StockChecks) -> list:
    gxe = expectations()
    return [
        gxe.ExpectColumnValuesToBeInSet(column="header", value_set=[",".join(HEADER)]),
        gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=checks.min_rows, max_value=checks.max_rows),
        gxe.ExpectColumnValuesToBeBetween(column="zero_volume_fraction", max_value=checks.max_zero_volume_fraction),
    ]


def _row_suite() -> list:
    gxe = expectations()
    suite = [gxe.ExpectColumnValuesToNotBeNull(column="day")]
    # Strictly increasing within each file: the first row of a file has no previous date (null, skipped).
    suite.append(gxe.ExpectColumnValuesToBeBetween(column="days_since_previous", min_value=1))
    suite += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (*PRICES, "Volume")]
    suite += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in PRICES]
    suite.append(gxe.ExpectColumnValuesToBeBetween(column="Volume", min_value=0))
    suite += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=high, column_B=low, or_equal=True, ignore_row_if="either_value_is_missing"
        )
        for high, low in BOUNDS
    ]
    return suite


def suite_description(checks: StockChecks) -> list[str]:
    """The expectations every file is held to, as `expectation[column]` strings for the report."""
    described = []
    for expectation in _file_suite(checks) + _row_suite():
        described.append(f"{expectation.expectation_type}[{_column_label(expectation.configuration.kwargs)}]")
    return described


def run_gx(frame: pd.DataFrame, name: str, suite: list, index_columns: list[str]):
    """One GX validation of `frame`, every unexpected row reported with its `index_columns` (e.g. its file)."""
    result_format = {
        "result_format": "COMPLETE",
        "unexpected_index_column_names": index_columns,
        "return_unexpected_index_query": False,
    }
    return validate_frame(frame, name, suite, result_format)


def _read(path: Path, name: str) -> tuple[dict, pd.DataFrame | None, CheckResult | None]:
    """One file: its row for the per-file table, its rows (when the header is right), or why it is unreadable."""
    frame, unreadable = read_csv_checked(path, dtype={"Date": str})
    if frame is None:
        return {}, None, unreadable
    summary = {
        "file": name,
        "header": ",".join(map(str, frame.columns)),
        "rows": len(frame),
        "zero_volume_fraction": np.nan,
    }
    if tuple(frame.columns) != HEADER:
        return summary, None, None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas turns extra leading fields into an index
        detail = f"{path.name}: data rows have more fields than the {len(HEADER)}-column header"
        return {}, None, CheckResult("file_is_readable", None, False, detail)
    # Days since 1970 as float, NaN where the date does not parse (GX misses NaT in datetime64 columns).
    day = (pd.to_datetime(frame["Date"], format="%Y-%m-%d", errors="coerce") - pd.Timestamp(0)) / pd.Timedelta(days=1)
    rows = pd.DataFrame(
        {
            "line": np.arange(2, len(frame) + 2),
            "Date": frame["Date"],
            "day": day,
            "days_since_previous": day.diff(),
            **{c: pd.to_numeric(frame[c], errors="coerce") for c in (*PRICES, "Volume")},
        }
    )
    if len(rows):
        summary["zero_volume_fraction"] = float((rows["Volume"] == 0).mean())
    return summary, rows, None


def _column_label(kwargs: dict) -> str:
    return kwargs.get("column") or f"{kwargs['column_A']}>={kwargs['column_B']}"


def _row_failures(result, rows_per_file: dict[str, int]) -> dict[str, list[CheckResult]]:
    """Per-file failed checks from one GX run over concatenated rows (unexpected rows carry their `file`)."""
    failed: dict[str, list[CheckResult]] = {}
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        column = _column_label(config.kwargs)
        if item.exception_info and item.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"GX could not evaluate {config.type}[{column}]: {item.exception_info.get('exception_message')}"
            )
        by_file: dict[str, list[dict]] = {}
        for row in item.result.get("unexpected_index_list") or []:
            by_file.setdefault(str(row["file"]), []).append(row)
        for name, bad in by_file.items():
            first = bad[0]
            shown = {k: _plain(v) for k, v in first.items() if k not in ("file", "line", "Date")}
            detail = (
                f"{_rule(column)}: {len(bad)} of {rows_per_file[name]} row(s) fail, e.g. line "
                f"{first['line']} (Date {first.get('Date')!s}: {shown})"
            )
            failed.setdefault(name, []).append(CheckResult(config.type, column, False, detail))
    return failed


def _rule(column: str) -> str:
    """What a row-level expectation on `column` demands, in words."""
    if column == "day":
        return "Date must parse as YYYY-MM-DD"
    if column == "days_since_previous":
        return "dates must strictly increase"
    if ">=" in column:
        return column.replace(">=", " must be >= ")
    return f"{column} must be a number " + ("> 0" if column in PRICES else ">= 0")


def _plain(value):
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    return value.item() if isinstance(value, np.generic) else value


def _file_failures(result, table: pd.DataFrame, checks: StockChecks) -> dict[str, list[CheckResult]]:
    """Per-file failed checks from the GX run over the one-row-per-file table."""
    failed: dict[str, list[CheckResult]] = {}
    by_name = table.set_index("file")
    for item in result.results:
        if item.success:
            continue
        column = item.expectation_config.kwargs["column"]
        for row in item.result.get("unexpected_index_list") or []:
            name = str(row["file"])
            info = by_name.loc[name]
            if column == "header":
                found = info["header"].split(",")
                missing, extra = [c for c in HEADER if c not in found], [c for c in found if c not in HEADER]
                detail = (
                    f"header is {info['header']!r}, expected {','.join(HEADER)!r}"
                    f" (missing {missing}, unexpected {extra})"
                )
            elif column == "rows" and info["rows"] > checks.max_rows:
                detail = (
                    f"{int(info['rows']):,} data row(s); at most {checks.max_rows:,} expected (the longest "
                    "real history, since 1962, has about 14,000)"
                )
            elif column == "rows":
                kind = " (a single-row file)" if info["rows"] == 1 else ""
                detail = (
                    f"{int(info['rows'])} data row(s){kind}; at least {checks.min_rows} needed for the "
                    "window, the feature warm-up and the train/val/test split"
                )
            else:
                detail = (
                    f"{info['zero_volume_fraction']:.1%} of rows have Volume=0 (at most "
                    f"{checks.max_zero_volume_fraction:.0%} allowed): an illiquid ticker whose prices "
                    "repeat stale quotes"
                )
            failed.setdefault(name, []).append(CheckResult(item.expectation_config.type, column, False, detail))
    return failed


def _validate_chunk(folder: Path, names: list[str], checks: StockChecks) -> dict[str, FileReport]:
    reports: dict[str, FileReport] = {}
    summaries, frames, framed = [], [], []
    for name in names:
        summary, rows, unreadable = _read(folder / name, name)
        if unreadable is not None:
            reports[name] = FileReport(rows=None, checks=[unreadable])
            continue
        summaries.append(summary)
        if rows is not None and len(rows):
            frames.append(rows)
            framed.append(name)
    if not summaries:
        return reports
    table = pd.DataFrame(summaries)
    failed = _file_failures(run_gx(table, "stocks-files", _file_suite(checks), ["file"]), table, checks)
    if frames:
        rows = pd.concat(frames, ignore_index=True)
        codes = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
        rows.insert(0, "file", pd.Categorical.from_codes(codes, categories=framed))
        counts = dict(zip(table["file"], table["rows"]))
        for name, found in _row_failures(
            run_gx(rows, "stocks-rows", _row_suite(), ["file", "line", "Date"]), counts
        ).items():
            failed.setdefault(name, []).extend(found)
    for summary in summaries:
        reports[summary["file"]] = FileReport(rows=int(summary["rows"]), checks=failed.get(summary["file"], []))
    return reports


def validate_stocks(
    folder: Path, snapshot_hash: str, files: Iterable[str], checks: StockChecks, tickers: tuple[str, ...] | None = None
) -> ValidationReport:
    """Validate every ticker file (or those of `tickers`) under `folder`, chunk by chunk."""
    started = time.perf_counter()
    names, missing = ticker_files(files, tickers)
    report = ValidationReport(dataset="stocks", snapshot=snapshot_hash, min_passing_files=checks.min_passing)
    for ticker in missing:
        detail = f"ticker {ticker!r} is configured (MLOPS_STOCK_TICKERS) but has no Stocks/ or ETFs/ file"
        report.files[f"{ticker}{FILE_SUFFIX}"] = FileReport(None, [CheckResult("file_is_present", None, False, detail)])
    for start in range(0, len(names), checks.chunk_files):
        report.files.update(_validate_chunk(folder, names[start : start + checks.chunk_files], checks))
    seconds = time.perf_counter() - started
    passing = len(report.passing_files())
    report.summary = {
        "files": len(report.files),
        "passing": passing,
        "quarantined": len(report.files) - passing,
        "rows": sum(r.rows or 0 for r in report.files.values()),
        "min_passing": checks.min_passing,
        "min_rows": checks.min_rows,
        "max_zero_volume_fraction": checks.max_zero_volume_fraction,
        "seconds": round(seconds, 2),
        "files_per_second": round(len(names) / seconds, 1) if seconds else None,
        "suite": suite_description(checks),
    }
    return report
