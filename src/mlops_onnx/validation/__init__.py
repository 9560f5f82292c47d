"""Great Expectations 1.x runner shared by every dataset's suite, and the validation report.

GX 1.x does not raise on a failed expectation: the report's `success` is what the `validate`
stage checks before it lets anything downstream run.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class DataValidationError(RuntimeError):
    """The snapshot failed its suite; the message names each file and failed expectation."""


@dataclass
class CheckResult:
    expectation: str
    column: str | None
    success: bool
    detail: str = ""

    def describe(self) -> str:
        where = f"[{self.column}]" if self.column else ""
        return f"{self.expectation}{where}: {self.detail}"


@dataclass
class FileReport:
    rows: int | None
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)


@dataclass
class ValidationReport:
    """Per-file checks. By default every file must pass; with `min_passing_files` set (datasets of
    many files, e.g. one per ticker) a failing file is quarantined and the snapshot passes while
    at least that many files pass."""

    dataset: str
    snapshot: str
    files: dict[str, FileReport] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    min_passing_files: int | None = None

    @property
    def success(self) -> bool:
        if not self.files:
            return False
        if self.min_passing_files is not None:
            return len(self.passing_files()) >= self.min_passing_files
        return all(f.success for f in self.files.values())

    def passing_files(self) -> list[str]:
        return [name for name, report in self.files.items() if report.success]

    def quarantined(self) -> dict[str, list[str]]:
        """Failing files and why, when failing files are quarantined rather than fatal."""
        if self.min_passing_files is None:
            return {}
        return {
            name: [c.describe() for c in r.checks if not c.success] for name, r in self.files.items() if not r.success
        }

    def failures(self) -> list[str]:
        return [f"{name}: {c.describe()}" for name, r in self.files.items() for c in r.checks if not c.success]

    def message(self) -> str:
        failures = self.failures()
        head = f"validation of {self.dataset} snapshot {self.snapshot[:12]} failed ({len(failures)} problem(s))"
        if self.min_passing_files is not None:
            head += f"; only {len(self.passing_files())} file(s) passed, at least {self.min_passing_files} required"
        return head + ":\n  - " + "\n  - ".join(failures[:50])

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "snapshot": self.snapshot,
            "success": self.success,
            "summary": self.summary,
            "min_passing_files": self.min_passing_files,
            "passing_files": self.passing_files(),
            "quarantined": self.quarantined(),
            "files": {
                name: {"rows": r.rows, "success": r.success, "checks": [asdict(c) for c in r.checks]}
                for name, r in self.files.items()
            },
        }

    def to_html(self) -> str:
        """A one-page summary (MLflow's artifact viewer renders it), one table row per check."""
        from html import escape

        status = "PASSED" if self.success else "FAILED"
        rows = []
        for name, report in self.files.items():
            for check in report.checks or [CheckResult("(no checks)", None, report.success)]:
                colour = "#e6f4ea" if check.success else "#fce8e6"
                rows.append(
                    f'<tr style="background:{colour}"><td>{escape(name)}</td><td>{report.rows}</td>'
                    f"<td>{escape(check.expectation)}</td><td>{escape(check.column or '')}</td>"
                    f"<td>{'pass' if check.success else 'FAIL'}</td><td>{escape(check.detail)}</td></tr>"
                )
        return (
            f"<html><body style='font-family:sans-serif'><h2>{escape(self.dataset)}: validation {status}</h2>"
            f"<p>snapshot <code>{self.snapshot}</code></p>"
            "<table border=1 cellpadding=4 style='border-collapse:collapse'>"
            "<tr><th>file</th><th>rows</th><th>expectation</th><th>column</th><th>result</th><th>detail</th></tr>"
            + "".join(rows)
            + "</table></body></html>"
        )


def load_report(workdir: Path) -> dict:
    """The validation report the `validate` stage wrote for this DAG run."""
    import json

    return json.loads((workdir / "reports" / "validation.json").read_text(encoding="utf-8"))


def read_csv_checked(path: Path, **kwargs: Any) -> tuple[pd.DataFrame | None, CheckResult | None]:
    """Read a CSV; on failure return a failed check that names the file's problem instead of raising.

    Unreadable means: a directory, missing, 0 bytes, not UTF-8 (the column(s) and row holding the bad
    bytes are named), not parseable as CSV, or truncated (the last line ends without a line break and
    with fewer fields than the header: an interrupted write or download).
    """
    if path.is_dir():
        return None, CheckResult("file_is_readable", None, False, f"{path} is a directory, not a file")
    if not path.exists():
        return None, CheckResult("file_is_readable", None, False, f"{path.name} is missing")
    if path.stat().st_size == 0:
        return None, CheckResult("file_is_readable", None, False, f"{path.name} is empty (0 bytes, no header)")
    try:
        frame = pd.read_csv(path, encoding="utf-8", **kwargs)
    except UnicodeDecodeError as exc:
        detail = f"{path.name} is not valid UTF-8 (byte {exc.start}: {exc.reason}){where_undecodable(path)}"
        return None, CheckResult("file_is_readable", None, False, detail)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0]
        if "EOF inside string" in reason:
            reason += " (truncated inside a quoted field?)"
        detail = f"{path.name} is not a readable CSV: {reason}"
        return None, CheckResult("file_is_readable", None, False, detail)
    truncated = truncated_last_line(path, list(map(str, frame.columns)))
    if truncated is not None:
        return None, truncated
    return frame, None


def where_undecodable(path: Path) -> str:
    """Which column(s) hold bytes that are not UTF-8 (e.g. a cp1252 resave), how many cells, and the first row."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", encoding_errors="replace")
    except (pd.errors.ParserError, ValueError):
        return ""
    bad = frame.apply(lambda column: column.str.contains("\ufffd", regex=False))
    places = [
        f"column {column!r} (first at data row {int(bad.index[bad[column]][0]) + 1}): {int(bad[column].sum())} cell(s)"
        for column in frame.columns
        if bad[column].any()
    ]
    return "; in " + ", ".join(places) if places else ""


def truncated_last_line(path: Path, columns: list[str]) -> CheckResult | None:
    """A failed check when the file ends mid-record: no final line break and fewer fields than the header."""
    import csv

    with path.open("rb") as handle:
        handle.seek(max(path.stat().st_size - (1 << 16), 0))
        tail = handle.read()
    if tail.endswith(b"\n"):
        return None
    lines = tail.decode("utf-8", errors="replace").splitlines()
    fields = next(csv.reader([lines[-1]]), []) if lines else []
    if len(fields) >= len(columns):
        return None  # only the final line break is missing: the record is whole
    with path.open("rb") as handle:
        line_number = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) + 1
    detail = (
        f"{path.name} is truncated: its last line (line {line_number}) has {len(fields)} of {len(columns)} "
        f"fields and no line break (cut off from column {columns[len(fields)]!r} on)"
    )
    return CheckResult("file_is_complete", columns[len(fields)], False, detail)


def describe_row_count(checks: list[CheckResult], path: Path, rows: int, low: int, high: int | None) -> None:
    """Say the file, its row count and the allowed range when the row-count expectation failed."""
    for check in checks:
        if check.expectation == "expect_table_row_count_to_be_between" and not check.success:
            bound = f"between {low:,} and {high:,}" if high is not None else f"at least {low:,}"
            check.detail = f"{path.name}: {rows:,} data row(s); expected {bound}"


def duplicate_rows_check(frame: pd.DataFrame, path: Path, max_fraction: float) -> tuple[CheckResult, int]:
    """GX on one boolean column: rows that repeat an earlier row in every column, at most `max_fraction`."""
    duplicated = frame.duplicated()
    count = int(duplicated.sum())
    check = run_suite(
        pd.DataFrame({"repeats_an_earlier_row": duplicated}),
        f"{path.stem}-duplicates",
        [
            expectations().ExpectColumnValuesToBeInSet(
                column="repeats_an_earlier_row", value_set=[False], mostly=1 - max_fraction
            ),
        ],
    )[0]
    if not check.success:
        lines = (np.flatnonzero(duplicated.to_numpy())[:5] + 2).tolist()  # +2: header line, 1-based
        check.detail = (
            f"{path.name}: {count:,} of {len(frame):,} row(s) ({count / len(frame):.1%}) repeat an "
            f"earlier row in all {len(frame.columns)} columns, more than the {max_fraction:.0%} "
            f"allowed (first at lines {lines})"
        )
    return check, count


def check_sizes_against(report: ValidationReport, manifest: dict, baseline: dict, max_growth: float) -> None:
    """Fail files whose size is off by more than `max_growth`x (either way) from the last good snapshot.

    "Usual" is what last passed validation from the same source: a file 10x larger (or a fifth of
    the size) is a broken export or download even when each row looks fine. Files new since then,
    or empty in it, are not compared; a change of source (synthetic -> local -> kaggle) resets the
    baseline. For datasets that quarantine files, the file is quarantined; otherwise the run fails.
    """
    if baseline.get("source") != manifest.get("source"):
        return
    before = {entry["path"]: entry["bytes"] for entry in baseline["files"]}
    for entry in manifest["files"]:
        name, size, usual = entry["path"], entry["bytes"], before.get(entry["path"])
        if name not in report.files or not usual:
            continue
        ratio = size / usual
        if 1 / max_growth <= ratio <= max_growth:
            continue
        detail = (
            f"{name}: {size:,} bytes, {ratio:.2f}x the {usual:,} bytes it had in the last good snapshot "
            f"{baseline['content_hash'][:12]} (allowed {1 / max_growth:.2f}x to {max_growth:g}x; "
            "MLOPS_MAX_FILE_GROWTH)"
        )
        report.files[name].checks.append(CheckResult("file_size_near_last_good", None, False, detail))
    if "passing" in report.summary:
        report.summary["passing"] = len(report.passing_files())
        report.summary["quarantined"] = len(report.files) - report.summary["passing"]


@lru_cache(maxsize=1)
def _gx_context():
    # Imported after Airflow, GX logs ~200 "Skipping registering function" lines at INFO; its
    # progress bars would fill the task logs, and its analytics would try to reach the internet.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, context


def expectations():
    """The `great_expectations.expectations` module, for suites to build their expectations from."""
    gx, _ = _gx_context()
    return gx.expectations


def validate_frame(frame: pd.DataFrame, name: str, expectation_list: list, result_format: dict | str = "SUMMARY"):
    """One GX validation of an in-memory frame (ephemeral context); the raw GX result."""
    gx, context = _gx_context()
    unique = f"{name}-{uuid.uuid4().hex[:8]}"
    batch = (
        context.data_sources.add_pandas(unique)
        .add_dataframe_asset(unique)
        .add_batch_definition_whole_dataframe(unique)
        .get_batch(batch_parameters={"dataframe": frame})
    )
    try:
        return batch.validate(
            gx.ExpectationSuite(name=unique, expectations=expectation_list), result_format=result_format
        )
    finally:
        context.data_sources.delete(unique)


def run_suite(frame: pd.DataFrame, suite_name: str, expectation_list: list) -> list[CheckResult]:
    """Validate `frame` against the given GX expectations; one CheckResult per expectation."""
    result = validate_frame(
        frame, suite_name, expectation_list, {"result_format": "SUMMARY", "partial_unexpected_count": 5}
    )
    return [
        CheckResult(
            expectation=item.expectation_config.type,
            column=item.expectation_config.kwargs.get("column"),
            success=bool(item.success),
            detail="" if item.success else describe_failure(item.result or {}, item.exception_info),
        )
        for item in result.results
    ]


def describe_failure(result: dict, exception_info: Any) -> str:
    if result.get("unexpected_count"):
        sample = result.get("partial_unexpected_list") or []
        return (
            f"{result['unexpected_count']} unexpected value(s) of {result.get('element_count', '?')}"
            f" (e.g. {sample[:5]})"
        )
    if "observed_value" in result:
        observed = result["observed_value"]
        if isinstance(observed, list) and len(observed) > 8:
            observed = f"{observed[:4]} ... {observed[-2:]} ({len(observed)} columns)"
        details = result.get("details") or {}
        mismatch = details.get("mismatched") if isinstance(details, dict) else None
        extra = f"; mismatched: {mismatch[:5]}" if mismatch else ""
        return f"observed {observed}{extra}"
    if exception_info and isinstance(exception_info, dict) and exception_info.get("raised_exception"):
        return f"could not evaluate: {exception_info.get('exception_message')}"
    return "failed"
