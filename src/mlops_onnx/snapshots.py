"""Immutable, content-hashed data snapshots with a `last_good` pointer.

Layout under `<MLOPS_HOME>/snapshots/<dataset>/`:

    .staging-<uuid>/      a snapshot being written (never read by anyone)
    <sha256>/             a complete snapshot: the files in Kaggle's layout + manifest.json
    last_good.json        which snapshot last passed validation

A snapshot becomes visible only through one atomic `rename` of its finished staging folder, and
`last_good.json` is replaced atomically, so a crash at any point leaves the previous good snapshot
usable and nothing half-written visible.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MANIFEST = "manifest.json"
LAST_GOOD = "last_good.json"
STAGING_PREFIX = ".staging-"
STALE_STAGING_SECONDS = 6 * 3600


class SnapshotError(RuntimeError):
    """A snapshot is missing, incomplete or does not match its manifest."""


@dataclass(frozen=True)
class Snapshot:
    dataset: str
    content_hash: str
    path: Path
    manifest: dict

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
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    )


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
    def __init__(self, root: Path) -> None:
        self.root = root

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / dataset

    @contextlib.contextmanager
    def staging(self, dataset: str) -> Iterator[Path]:
        """A private folder to write a new snapshot into; removed if the block fails.

        The writer holds an exclusive lock on `<folder>.lock` while the folder exists, so a folder
        whose lock is free belongs to a writer that died (SIGKILL, OOM, power loss) and the next
        run removes it at once.
        """
        self._remove_stale_staging(dataset)
        folder = self.dataset_dir(dataset) / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
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
        """Hash the staged files, write the manifest and publish the snapshot by one rename."""
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
        write_json_atomic(staging_dir / MANIFEST, manifest)
        target = self.dataset_dir(dataset) / digest
        if target.exists():
            # Same content already published (a re-run, or a concurrent run): keep the first.
            shutil.rmtree(staging_dir, ignore_errors=True)
            return self.get(dataset, digest)
        try:
            os.rename(staging_dir, target)
        except OSError:
            if not target.exists():
                raise
            shutil.rmtree(staging_dir, ignore_errors=True)
        return self.get(dataset, digest)

    def get(self, dataset: str, digest: str) -> Snapshot:
        folder = self.dataset_dir(dataset) / digest
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise SnapshotError(f"snapshot {dataset}/{digest} not found (no {manifest_path})")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        return Snapshot(dataset=dataset, content_hash=digest, path=folder, manifest=manifest)

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
        write_json_atomic(
            self.dataset_dir(snapshot.dataset) / LAST_GOOD,
            {
                "content_hash": snapshot.content_hash,
                "promoted_at": datetime.now(UTC).isoformat(),
                "validation": validation or {},
            },
        )

    def last_good(self, dataset: str) -> Snapshot | None:
        pointer = self.dataset_dir(dataset) / LAST_GOOD
        if not pointer.is_file():
            return None
        digest = json.loads(pointer.read_text(encoding="utf-8"))["content_hash"]
        return self.get(dataset, digest)

    def _remove_stale_staging(self, dataset: str) -> None:
        """Remove staging folders whose writer is gone (its lock is free), or that are very old."""
        folder = self.dataset_dir(dataset)
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


def _writer_lock(folder: Path):
    """An open file holding an exclusive lock on `<folder>.lock`; the kernel drops it when the process dies."""
    lock = Path(f"{folder}.lock").open("a")  # noqa: SIM115 (held open for the staging block, closed by it)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock
