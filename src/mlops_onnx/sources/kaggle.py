"""The `kaggle` source: the official client, credentials from the environment or kaggle.json.

The zip is kept in `<MLOPS_HOME>/cache/kaggle/<owner>/<slug>/`; the client compares the remote
file's date with it and skips the download when the dataset has not changed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import zipfile
import zlib
from pathlib import Path

from mlops_onnx.datasets import DatasetSpec
from mlops_onnx.settings import Settings, kaggle_credentials_present
from mlops_onnx.sources.errors import SourceError

log = logging.getLogger(__name__)

NO_CREDENTIALS = (
    "kaggle source: no credentials; set KAGGLE_USERNAME and KAGGLE_KEY, write ~/.kaggle/kaggle.json, "
    "or add the Airflow connection 'kaggle_default' (login = username, password = key)"
)


def _client():
    # The package authenticates and prints help at import time: keep that out of the logs.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi
    api = KaggleApi()
    api.authenticate()
    return api


def fetch_kaggle(dataset: DatasetSpec, dest: Path, settings: Settings) -> dict:
    if not kaggle_credentials_present():
        raise SourceError(NO_CREDENTIALS, retryable=False)
    cache = settings.cache_dir / "kaggle" / dataset.slug
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"{dataset.folder}.zip"
    before = _stamp(archive)
    try:
        api = _client()
        with contextlib.redirect_stdout(io.StringIO()):
            api.dataset_download_files(dataset.slug, path=str(cache), unzip=False, quiet=True)
    except (Exception, SystemExit) as exc:  # the client raises bare Exception and SystemExit
        if _stamp(archive) != before:  # an interrupted download: never leave a partial zip to be reused
            _discard(archive)
        raise _download_error(dataset, exc) from exc
    if not archive.is_file():
        raise SourceError(f"kaggle source: the client reported success but {archive} is missing")
    downloaded = before is None or _stamp(archive) != before
    log.info("kaggle %s: %s", dataset.slug, "downloaded" if downloaded else "unchanged, used the cached copy")
    try:
        extracted = extract_dataset_files(dataset, archive, dest)
    except SourceError:
        _discard(archive)  # a corrupt zip in the cache would be "unchanged" next night and fail again
        raise
    return {"kaggle_slug": dataset.slug, "downloaded": downloaded, "files_extracted": extracted}


def _stamp(archive: Path) -> tuple[int, int] | None:
    """(size, mtime) of the cached zip, or None when there is none."""
    try:
        info = archive.stat()
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime_ns


def _discard(archive: Path) -> None:
    """Remove a partial or corrupt zip and the client's resume marker beside it."""
    for leftover in (archive, *archive.parent.glob(f"{archive.name}*.kaggle-partial*")):
        leftover.unlink(missing_ok=True)


def _download_error(dataset: DatasetSpec, exc: BaseException) -> SourceError:
    """One line saying what failed; rejected credentials are not retried (a retry cannot fix them)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        user = os.environ.get("KAGGLE_USERNAME") or "from kaggle.json"
        return SourceError(
            f"kaggle source: Kaggle rejected the credentials (HTTP {status}) of user {user!r} downloading "
            f"{dataset.slug}; check KAGGLE_USERNAME/KAGGLE_KEY, ~/.kaggle/kaggle.json or the Airflow connection "
            "'kaggle_default'",
            retryable=False,
        )
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return SourceError(f"kaggle source: could not download {dataset.slug}: {type(exc).__name__}: {first_line}")


def extract_dataset_files(dataset: DatasetSpec, archive: Path, dest: Path) -> int:
    """Extract the members the dataset declares, refusing paths that escape `dest`."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{archive}: not a valid zip (interrupted download?)") from exc
    try:
        with zf:
            return _extract(dataset, archive, zf, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a CRC mismatch or a cut-off member
        raise SourceError(f"{archive}: corrupt member ({type(exc).__name__}: {exc})") from exc


def _extract(dataset: DatasetSpec, archive: Path, zf: zipfile.ZipFile, dest: Path) -> int:
    import fnmatch

    extracted = 0
    for member in zf.infolist():
        name = member.filename
        if member.is_dir() or not any(fnmatch.fnmatch(name, p) for p in dataset.file_patterns):
            continue
        target = (dest / name).resolve()
        if not target.is_relative_to(dest.resolve()):
            raise SourceError(f"{archive}: member {name!r} points outside the snapshot folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, target.open("wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
        extracted += 1
    if extracted == 0:
        raise SourceError(f"{archive}: none of {list(dataset.file_patterns)} found in the archive")
    return extracted
