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
            name: [c.describe() for c in r.checks if not c.success]
            for name, r in self.files.items()
            if not r.success
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
    """Read a CSV; on failure return a failed check that names the file's problem instead of raising."""
    if path.is_dir():
        return None, CheckResult("file_is_readable", None, False, f"{path.name} is a directory, not a file")
    if not path.exists():
        return None, CheckResult("file_is_readable", None, False, f"{path.name} is missing")
    if path.stat().st_size == 0:
        return None, CheckResult("file_is_readable", None, False, f"{path.name} is empty (0 bytes, no header)")
    try:
        frame = pd.read_csv(path, encoding="utf-8", **kwargs)
    except UnicodeDecodeError as exc:
        detail = f"{path.name} is not valid UTF-8 (byte {exc.start}: {exc.reason})"
        return None, CheckResult("file_is_readable", None, False, detail)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        detail = f"{path.name} is not a readable CSV: {str(exc).strip().splitlines()[0]}"
        return None, CheckResult("file_is_readable", None, False, detail)
    return frame, None


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
        return batch.validate(gx.ExpectationSuite(name=unique, expectations=expectation_list),
                              result_format=result_format)  # fmt: skip
    finally:
        context.data_sources.delete(unique)


def run_suite(frame: pd.DataFrame, suite_name: str, expectation_list: list) -> list[CheckResult]:
    """Validate `frame` against the given GX expectations; one CheckResult per expectation."""
    result = validate_frame(frame, suite_name, expectation_list,
                            {"result_format": "SUMMARY", "partial_unexpected_count": 5})  # fmt: skip
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
