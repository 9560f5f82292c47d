"""Great Expectations suite for Kaggle's fake-and-real-news CSVs (`Fake.csv`, `True.csv`).

The real files have quirks the suite tolerates within limits: texts that are a single space (the
title still carries the article), dates in several formats and a few cells holding a URL,
trailing spaces, curly quotes. What it does not tolerate: another schema, an unreadable file, too
many rows with no words at all, too many unparseable dates, too few rows, a lopsided class balance.
LIAR (the cross-dataset check) is reported by the model, never gated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_onnx.validation import (
    CheckResult,
    FileReport,
    ValidationReport,
    describe_row_count,
    duplicate_rows_check,
    expectations,
    read_csv_checked,
    run_suite,
)

COLUMNS = ["title", "text", "subject", "date"]
CLASS_FILES = {"Fake.csv": 1, "True.csv": 0}  # label 1 = fake
# "December 31, 2017", "Dec 31, 2017", "31-Dec-17" (an Excel resave), "2017-12-31"
DATE_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%d-%b-%y", "%Y-%m-%d")


@dataclass(frozen=True)
class NewsRules:
    min_rows: int = 1000  # per file
    max_rows: int = 50_000  # per file: about twice Kaggle's largest (Fake.csv, 23,481 rows)
    max_duplicate_fraction: float = 0.05  # rows repeating an earlier row exactly: dropped in training below this
    max_empty_fraction: float = 0.05  # rows with neither title nor text: dropped below this, fatal above
    max_unparseable_date_fraction: float = 0.05  # counted and reported below this, fatal above
    fake_share: tuple[float, float] = (0.2, 0.8)  # Fake rows / all rows
    first_date: str = "1990-01-01"  # dates outside first_date..today are counted with the unparseable ones


def read_news_csv(path: Path) -> tuple[pd.DataFrame | None, CheckResult | None]:
    """Every cell as a string ("" for an empty one); an unreadable file comes back as a failed check."""
    return read_csv_checked(path, dtype=str, keep_default_na=False)


def has_content(frame: pd.DataFrame) -> pd.Series:
    """True where the title or the text holds something besides whitespace."""
    return (frame["title"].str.strip() != "") | (frame["text"].str.strip() != "")


def parse_dates(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Dates parsed by the first of DATE_FORMATS that fits (NaT where none does), and which one (-1: none)."""
    stripped = values.astype(str).str.strip()
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    which = pd.Series(-1, index=values.index)
    for i, fmt in enumerate(DATE_FORMATS):
        todo = parsed.isna()
        attempt = pd.to_datetime(stripped[todo], format=fmt, errors="coerce")
        hit = attempt.notna()
        parsed.loc[attempt.index[hit]] = attempt[hit]
        which.loc[attempt.index[hit]] = i
    return parsed, which


def validate_file(path: Path, rules: NewsRules) -> tuple[FileReport, dict]:
    """One file's checks, and its counts for the report summary."""
    frame, unreadable = read_news_csv(path)
    if frame is None:
        return FileReport(rows=None, checks=[unreadable]), {}
    gxe = expectations()
    checks = run_suite(
        frame,
        f"news-{path.stem}-table",
        [
            gxe.ExpectTableColumnsToMatchOrderedList(column_list=COLUMNS),
            gxe.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=rules.max_rows),
        ],
    )
    describe_row_count(checks, path, len(frame), rules.min_rows, rules.max_rows)
    missing = [c for c in COLUMNS if c not in frame.columns]
    for column in missing:
        checks.append(
            CheckResult(
                "column_present", column, False, f"{path.name} has no {column!r} column (found {list(frame.columns)})"
            )
        )
    counts: dict = {"rows": len(frame)}
    duplicates, counts["duplicate_rows"] = duplicate_rows_check(frame, path, rules.max_duplicate_fraction)
    checks.append(duplicates)
    if not {"title", "text"} & set(missing):
        content = has_content(frame)
        content_check = run_suite(
            pd.DataFrame({"has_title_or_text": content}),
            f"news-{path.stem}-content",
            [
                gxe.ExpectColumnValuesToBeInSet(
                    column="has_title_or_text", value_set=[True], mostly=1 - rules.max_empty_fraction
                ),
            ],
        )[0]
        empty = int((~content).sum())
        counts["rows_without_title_or_text"] = empty
        if not content_check.success:
            rows = (np.flatnonzero(~content.to_numpy())[:5] + 2).tolist()  # +2: header line, 1-based
            content_check.detail = (
                f"{path.name}: {empty} of {len(frame)} row(s) ({empty / max(len(frame), 1):.1%}) "
                f"have an empty 'title' and 'text', more than the {rules.max_empty_fraction:.0%} "
                f"that may be dropped (first at lines {rows})"
            )
        checks.append(content_check)
    if "date" not in missing:
        parsed, _ = parse_dates(frame["date"])
        in_range = parsed.between(pd.Timestamp(rules.first_date), pd.Timestamp.now() + pd.Timedelta(days=1))
        date_check = run_suite(
            pd.DataFrame({"date_valid": in_range}),
            f"news-{path.stem}-date",
            [
                gxe.ExpectColumnValuesToBeInSet(
                    column="date_valid", value_set=[True], mostly=1 - rules.max_unparseable_date_fraction
                ),
            ],
        )[0]
        date_check.column = "date"
        bad = frame["date"][parsed.isna()]
        out_of_range = frame["date"][parsed.notna() & ~in_range]
        counts["unparseable_dates"] = len(bad)
        counts["unparseable_date_examples"] = [value[:80] for value in bad.head(3)]
        counts["out_of_range_dates"] = len(out_of_range)
        if not date_check.success:
            examples = [value[:80] for value in pd.concat([bad.head(3), out_of_range.head(3)])]
            date_check.detail = (
                f"{path.name}: {len(bad)} of {len(frame)} 'date' value(s) match none of "
                f"{list(DATE_FORMATS)} and {len(out_of_range)} lie outside {rules.first_date} to "
                f"today (together more than {rules.max_unparseable_date_fraction:.0%}); "
                f"e.g. {examples}"
            )
        checks.append(date_check)
    return FileReport(rows=len(frame), checks=checks), counts


def class_balance(rows: dict[str, int], rules: NewsRules) -> FileReport:
    """The share of Fake rows across both files, checked with GX on one 0/1 column."""
    is_fake = np.concatenate([np.full(n, CLASS_FILES[name]) for name, n in rows.items()])
    low, high = rules.fake_share
    check = run_suite(
        pd.DataFrame({"is_fake": is_fake}),
        "news-class-balance",
        [
            expectations().ExpectColumnMeanToBeBetween(column="is_fake", min_value=low, max_value=high),
        ],
    )[0]
    if not check.success:
        share = float(is_fake.mean()) if len(is_fake) else float("nan")
        check.detail = (
            f"Fake.csv holds {share:.1%} of {len(is_fake)} rows ({rows}); expected between {low:.0%} and {high:.0%}"
        )
    return FileReport(rows=None, checks=[check])


def validate_snapshot(folder: Path, snapshot_hash: str, rules: NewsRules) -> ValidationReport:
    report = ValidationReport(dataset="fake_news", snapshot=snapshot_hash)
    for name in CLASS_FILES:
        report.files[name], report.summary[name] = validate_file(folder / name, rules)
    readable = {name: r.rows for name, r in report.files.items() if r.rows is not None}
    if len(readable) == len(CLASS_FILES):
        report.files["class_balance"] = class_balance(readable, rules)
        report.summary["fake_share"] = round(readable["Fake.csv"] / max(sum(readable.values()), 1), 4)
    return report
