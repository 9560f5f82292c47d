"""Great Expectations suite for Kaggle's Fashion-MNIST CSVs (`label,pixel1..pixel784`)."""

from __future__ import annotations

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
)

PIXEL_COLUMNS = [f"pixel{i}" for i in range(1, 785)]
COLUMNS = ["label", *PIXEL_COLUMNS]
CLASSES = list(range(10))
# About twice the rows of Kaggle's files (60,000 / 10,000): a file far larger is a broken export.
MAX_ROWS = {"fashion-mnist_train.csv": 120_000, "fashion-mnist_test.csv": 20_000}
MAX_DUPLICATE_FRACTION = 0.01  # Fashion-MNIST's images are distinct; a few repeats are tolerated


def pixel_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-row aggregates of the 784 pixel columns, so GX checks 4 columns instead of 784.

    Non-numeric cells count as non-integer; a failure is then traced back to pixel columns by
    `offending_pixel_columns`.
    """
    block = frame[PIXEL_COLUMNS].apply(pd.to_numeric, errors="coerce")
    raw_nulls = frame[PIXEL_COLUMNS].isna()
    not_a_number = block.isna() & ~raw_nulls
    values = block.to_numpy(dtype=np.float64)
    non_integer = (np.nan_to_num(values) != np.round(np.nan_to_num(values))) | not_a_number.to_numpy()
    return pd.DataFrame(
        {
            "pixel_nulls": raw_nulls.sum(axis=1).to_numpy(),
            "pixel_non_integer": non_integer.sum(axis=1),
            "pixel_min": np.nanmin(np.where(np.isnan(values), np.inf, values), axis=1),
            "pixel_max": np.nanmax(np.where(np.isnan(values), -np.inf, values), axis=1),
        }
    )


def offending_pixel_columns(frame: pd.DataFrame, limit: int = 5) -> str:
    block = frame[PIXEL_COLUMNS].apply(pd.to_numeric, errors="coerce")
    bad = (block < 0) | (block > 255) | block.isna() | (block != block.round())
    counts = bad.sum()
    counts = counts[counts > 0].sort_values(ascending=False)
    if counts.empty:
        return ""
    parts = [f"{col}: {n}" for col, n in counts.head(limit).items()]
    more = f" and {len(counts) - limit} more column(s)" if len(counts) > limit else ""
    return "; offending columns (bad cells): " + ", ".join(parts) + more


def validate_file(path: Path, min_rows: int, max_rows: int | None = None) -> FileReport:
    frame, unreadable = read_csv_checked(path)
    if frame is None:
        return FileReport(rows=None, checks=[unreadable])
    gxe = expectations()
    # Imported lazily via GX; names follow the GX 1.x expectation classes.
    from mlops_onnx.validation import run_suite

    checks = run_suite(
        frame,
        f"fashion-{path.stem}-table",
        [
            gxe.ExpectTableColumnsToMatchOrderedList(column_list=COLUMNS),
            gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=max_rows),
        ],
    )
    describe_row_count(checks, path, len(frame), min_rows, max_rows)
    checks.append(duplicate_rows_check(frame, path, MAX_DUPLICATE_FRACTION)[0])
    if "label" not in frame.columns:
        found = [str(c) for c in frame.columns if not str(c).startswith("pixel")]
        detail = f"{path.name} has no 'label' column (non-pixel columns found: {found[:5]})"
        checks.append(CheckResult("column_present", "label", False, detail))
    else:
        checks += run_suite(
            frame[["label"]],
            f"fashion-{path.stem}-label",
            [
                gxe.ExpectColumnValuesToNotBeNull(column="label"),
                gxe.ExpectColumnValuesToBeInSet(column="label", value_set=CLASSES),
                gxe.ExpectColumnDistinctValuesToContainSet(column="label", value_set=CLASSES),
            ],
        )
    present = [c for c in PIXEL_COLUMNS if c in frame.columns]
    if len(present) == len(PIXEL_COLUMNS):
        summary = pixel_summary(frame)
        pixel_checks = run_suite(
            summary,
            f"fashion-{path.stem}-pixels",
            [
                gxe.ExpectColumnValuesToBeBetween(column="pixel_nulls", min_value=0, max_value=0),
                gxe.ExpectColumnValuesToBeBetween(column="pixel_non_integer", min_value=0, max_value=0),
                gxe.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=0),
                gxe.ExpectColumnValuesToBeBetween(column="pixel_max", max_value=255),
            ],
        )
        if not all(c.success for c in pixel_checks):
            where = offending_pixel_columns(frame)
            for check in pixel_checks:
                if not check.success:
                    check.detail += where
        checks += pixel_checks
    elif present:
        missing = [c for c in PIXEL_COLUMNS if c not in frame.columns]
        checks.append(
            CheckResult("pixel_columns_present", None, False, f"{len(missing)} pixel column(s) missing: {missing[:5]}")
        )
    return FileReport(rows=len(frame), checks=checks)


def validate_snapshot(folder: Path, snapshot_hash: str, files: list[str], min_rows: dict[str, int]) -> ValidationReport:
    report = ValidationReport(dataset="fashionmnist", snapshot=snapshot_hash)
    for name in files:
        report.files[name] = validate_file(folder / name, min_rows.get(name, 1), MAX_ROWS.get(name))
    report.summary = {name: r.rows for name, r in report.files.items()}
    return report
