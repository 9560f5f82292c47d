"""Immutable, content-hashed data snapshots with a `last_good` pointer, in shared storage.

Layout under `<MLOPS_STORAGE_URL>/snapshots/<dataset>/` (`file://$MLOPS_HOME/…` by default, `s3://…`
in the compose setup):

    <sha256>/             a snapshot: the files in Kaggle's layout, then manifest.json
    last_good.json        which snapshot last passed validation

A snapshot is written in a private local staging folder, hashed, uploaded file by file, and
becomes visible only when its `manifest.json` is written — last, in one atomic write (a rename on
a file system, one PUT on an object store). Readers ignore a folder without a manifest, and the
folder name is the hash of its content, so a crash or a concurrent upload of the same data can
never make a different or half-written snapshot visible. `last_good.json` is replaced the same
atomic way, so the previous good snapshot stays usable whatever fails.

Tasks read a snapshot from a local copy under `<MLOPS_WORK_DIR>/snapshots/<dataset>/<sha256>/`,
downloaded once per machine and checked against the manifest's hashes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from mlops_onnx.storage import Storage

MANIFEST = "manifest.json"
LAST_GOOD = "last_good.json"
STAGING_PREFIX = ".staging-"
DOWNLOAD_PREFIX = ".download-"
STALE_STAGING_SECONDS = 6 * 3600


class SnapshotError(RuntimeError):
    """A snapshot is missing, incomplete or does not match its manifest."""


@dataclass(frozen=True)
class Snapshot:
    dataset: str
    content_hash: str
    path: Path
    manifest: dict
    created: bool = False  # True only from the `commit` that published it: this content was never seen before

    @property
    def files(self) -> list[str]:
        return [f["path"] for f in self.manifest["files"]]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def content_hash(entries: list[dict]) -> str:
    """sha256 over (relative path, file sha256) pairs: same bytes in the same layout, same hash."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e["path"]):
        digest.update(f"{entry['path']}\0{entry['sha256']}\n".encode())
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class SnapshotStore:
    """Snapshots in shared storage (`root`: a URL or a local folder), read through a local copy in `cache_dir`
    (default: `<MLOPS_WORK_DIR>/snapshots`)."""

    def __init__(self, root: str | Path, cache_dir: Path | None = None) -> None:
        if cache_dir is None:
            from mlops_onnx.settings import get_settings

            cache_dir = get_settings().work_dir / "snapshots"
        self.storage = Storage(root)
        self.cache_dir = cache_dir

    def local_dir(self, dataset: str) -> Path:
        return self.cache_dir / dataset

    @contextlib.contextmanager
    def staging(self, dataset: str) -> Iterator[Path]:
        """A private local folder to write a new snapshot into; removed if the block fails.

        The writer holds an exclusive lock on `<folder>.lock` while the folder exists, so a folder
        whose lock is free belongs to a writer that died (SIGKILL, OOM, power loss) and the next
        run removes it at once.
        """
        self._remove_stale(dataset)
        folder = self.local_dir(dataset) / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = _writer_lock(folder)
        try:
            folder.mkdir()
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            Path(lock.name).unlink(missing_ok=True)
            lock.close()

    def commit(self, dataset: str, staging_dir: Path, *, source: str, details: dict | None = None) -> Snapshot:
        """Hash the staged files and publish them: data files first, the manifest last (what makes it visible)."""
        files = _data_files(staging_dir)
        if not files:
            shutil.rmtree(staging_dir, ignore_errors=True)
            raise SnapshotError(f"the {source} source wrote no files for dataset {dataset!r}")
        entries = [
            {"path": p.relative_to(staging_dir).as_posix(), "sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in files
        ]
        digest = content_hash(entries)
        manifest = {
            "dataset": dataset,
            "content_hash": digest,
            "source": source,
            "created_at": datetime.now(UTC).isoformat(),
            "files": entries,
            "details": details or {},
        }
        # Same content already published (a re-run, or a concurrent run): keep the first.
        created = not self.storage.exists(f"{dataset}/{digest}/{MANIFEST}")
        if created:
            for entry in entries:
                self.storage.upload(staging_dir / entry["path"], f"{dataset}/{digest}/{entry['path']}")
            self.storage.write_json_atomic(f"{dataset}/{digest}/{MANIFEST}", manifest)
        published = self.storage.read_json(f"{dataset}/{digest}/{MANIFEST}")
        write_json_atomic(staging_dir / MANIFEST, published)
        self._keep_local(staging_dir, dataset, digest)
        return replace(self.get(dataset, digest), created=created)

    def get(self, dataset: str, digest: str) -> Snapshot:
        """The published snapshot, from this machine's copy (downloaded and checked on first use)."""
        local = self.local_dir(dataset) / digest
        if not (local / MANIFEST).is_file():
            manifest = f"{dataset}/{digest}/{MANIFEST}"
            if not self.storage.exists(manifest):
                raise SnapshotError(f"snapshot {dataset}/{digest} not found (no {self.storage.url_of(manifest)})")
            self._download(dataset, digest)
        manifest = json.loads((local / MANIFEST).read_text(encoding="utf-8"))
        return Snapshot(dataset=dataset, content_hash=digest, path=local, manifest=manifest)

    def _download(self, dataset: str, digest: str) -> None:
        manifest = self.storage.read_json(f"{dataset}/{digest}/{MANIFEST}")
        folder = self.local_dir(dataset) / f"{DOWNLOAD_PREFIX}{uuid.uuid4().hex}"
        try:
            for entry in manifest["files"]:
                source, target = f"{dataset}/{digest}/{entry['path']}", folder / entry["path"]
                self.storage.download(source, target)
                if file_sha256(target) != entry["sha256"]:
                    raise SnapshotError(f"{self.storage.url_of(source)}: content differs from its manifest entry")
            write_json_atomic(folder / MANIFEST, manifest)
            self._keep_local(folder, dataset, digest)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _keep_local(self, folder: Path, dataset: str, digest: str) -> None:
        """Make a complete local folder this machine's copy of the snapshot by one rename (or drop it when a
        parallel task was first)."""
        target = self.local_dir(dataset) / digest
        if not target.exists():
            with contextlib.suppress(OSError):
                os.rename(folder, target)
        shutil.rmtree(folder, ignore_errors=True)

    def verify(self, snapshot: Snapshot) -> None:
        """Re-hash every file; raise if anything changed since the snapshot was published."""
        for entry in snapshot.manifest["files"]:
            path = snapshot.path / entry["path"]
            if not path.is_file():
                raise SnapshotError(f"{path}: listed in the manifest of {snapshot.content_hash} but missing")
            if file_sha256(path) != entry["sha256"]:
                raise SnapshotError(f"{path}: content differs from its manifest entry")

    def promote(self, snapshot: Snapshot, *, validation: dict | None = None) -> None:
        """Move `last_good` to this snapshot (called only after validation passed)."""
        self.storage.write_json_atomic(
            f"{snapshot.dataset}/{LAST_GOOD}",
            {
                "content_hash": snapshot.content_hash,
                "promoted_at": datetime.now(UTC).isoformat(),
                "validation": validation or {},
            },
        )

    def last_good_hash(self, dataset: str) -> str | None:
        if not self.storage.exists(f"{dataset}/{LAST_GOOD}"):
            return None
        return self.storage.read_json(f"{dataset}/{LAST_GOOD}")["content_hash"]

    def last_good(self, dataset: str) -> Snapshot | None:
        digest = self.last_good_hash(dataset)
        return None if digest is None else self.get(dataset, digest)

    def published(self, dataset: str) -> dict[str, dict]:
        """Every visible snapshot of `dataset` (a folder with its manifest): hash -> manifest."""
        found = {}
        for digest in self.storage.folders(dataset):
            if self.storage.exists(f"{dataset}/{digest}/{MANIFEST}"):
                found[digest] = self.storage.read_json(f"{dataset}/{digest}/{MANIFEST}")
        return found

    def delete(self, dataset: str, digest: str) -> None:
        """Remove a snapshot: its manifest first (it is invisible from then on), then its files and the local copy."""
        self.storage.remove(f"{dataset}/{digest}/{MANIFEST}")
        self.storage.remove(f"{dataset}/{digest}")
        shutil.rmtree(self.local_dir(dataset) / digest, ignore_errors=True)

    def _remove_stale(self, dataset: str) -> None:
        """Staging folders whose writer is gone (its lock is free) or that are very old, and download
        folders left by a killed task on this machine."""
        folder = self.local_dir(dataset)
        if not folder.is_dir():
            return
        cutoff = time.time() - STALE_STAGING_SECONDS
        for leftover in folder.glob(f"{STAGING_PREFIX}*"):
            if leftover.suffix == ".lock" or not leftover.is_dir():
                continue
            lock_path = leftover.with_name(leftover.name + ".lock")
            try:
                with lock_path.open("a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: the writer died
                    shutil.rmtree(leftover, ignore_errors=True)
                    lock_path.unlink(missing_ok=True)
            except BlockingIOError:  # a live writer (another run) holds it
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
        for leftover in folder.glob(f"{DOWNLOAD_PREFIX}*"):
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)


def _writer_lock(folder: Path):
    """An open file holding an exclusive lock on `<folder>.lock`; the kernel drops it when the process dies."""
    lock = Path(f"{folder}.lock").open("a")  # noqa: SIM115 (held open for the staging block, closed by it)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock
