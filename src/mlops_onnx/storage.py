"""Shared storage for everything a later task reads: snapshots, models, reports.

With Celery, consecutive tasks of one DAG run land on different machines, so nothing a task
writes to its own disk is there for the next task. Every task therefore works in a local
working folder (`MLOPS_WORK_DIR`, per machine) and syncs it with one storage location that all
workers reach (`MLOPS_STORAGE_URL`): a `file://` folder under `MLOPS_HOME` by default, an
`s3://` bucket (MinIO) in the compose setup. Both go through fsspec; the S3 endpoint comes from
the standard `AWS_ENDPOINT_URL` (or fsspec's `FSSPEC_S3_ENDPOINT_URL`).

    <storage>/snapshots/<dataset>/...          content-hashed snapshots (see snapshots.py)
    <storage>/runs/<dag_id>/<run_id>/...       what the tasks of one DAG run produced

Tasks pass storage URLs to each other, never local paths (see `RunFiles.publish`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def as_url(location: str | Path) -> str:
    """A storage URL: `s3://…` stays as it is, a plain local path becomes `file:///abs/path`."""
    text = str(location)
    if "://" in text:
        return text.rstrip("/")
    return Path(text).expanduser().resolve().as_uri()


class Storage:
    """A folder in fsspec storage, addressed by paths relative to it (`a/b.json`)."""

    def __init__(self, url: str | Path) -> None:
        import fsspec  # not at import time: settings (read while the scheduler parses DAGs) imports this module
        from fsspec.implementations.local import LocalFileSystem

        self.url = as_url(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    def child(self, *parts: str) -> Storage:
        return Storage("/".join([self.url, *parts]))

    def url_of(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def exists(self, relative: str) -> bool:
        self.fs.invalidate_cache()  # another worker may have written it since this process last looked
        return self.fs.exists(self._path(relative))

    def read_text(self, relative: str) -> str:
        with self.fs.open(self._path(relative), "r", encoding="utf-8") as handle:
            return handle.read()

    def write_text_atomic(self, relative: str, text: str) -> None:
        """Readers see the old content or the new, never a part: an object store replaces an object in one
        PUT; a file system needs a temporary file and a rename."""
        target = self._path(relative)
        if self.is_local:
            folder, name = target.rsplit("/", 1)
            self.fs.makedirs(folder, exist_ok=True)
            tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        else:
            self.fs.pipe_file(target, text.encode("utf-8"))

    def write_json_atomic(self, relative: str, payload: dict) -> None:
        self.write_text_atomic(relative, json.dumps(payload, indent=2, sort_keys=True, default=str))

    def read_json(self, relative: str) -> dict:
        return json.loads(self.read_text(relative))

    def upload(self, local: Path, relative: str) -> None:
        target = self._path(relative)
        if self.is_local:
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.put_file(str(local), target)

    def download(self, relative: str, local: Path) -> None:
        """Copy to `local` through a temporary file and a rename: a reader of `local` (a parallel task on this
        machine) keeps the complete old file."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.part")
        try:
            self.fs.get_file(self._path(relative), str(tmp))
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)

    def folders(self, relative: str = "") -> list[str]:
        """The names of the folders directly under `relative` (sorted)."""
        base = self._path(relative)
        self.fs.invalidate_cache()
        if not self.fs.exists(base):
            return []
        return sorted(
            info["name"].rstrip("/").rsplit("/", 1)[-1]
            for info in self.fs.ls(base, detail=True)
            if info["type"] == "directory"
        )

    def modified(self, relative: str) -> float | None:
        """When anything under `relative` last changed (epoch seconds of its newest file), None if it is empty."""
        import datetime

        times = []
        for info in self.fs.find(self._path(relative), detail=True).values():
            stamp = info.get("mtime", info.get("LastModified"))
            if isinstance(stamp, datetime.datetime):
                stamp = stamp.timestamp()
            if stamp is not None:
                times.append(float(stamp))
        return max(times, default=None)

    def remove(self, relative: str) -> None:
        """Delete a file or a whole folder."""
        target = self._path(relative)
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)

    def files(self, relative: str = "") -> list[str]:
        """Every file under `relative`, as paths relative to it (sorted)."""
        base = self._path(relative)
        self.fs.invalidate_cache()
        if not self.fs.exists(base):
            return []
        return sorted(p[len(base) + 1 :] for p in self.fs.find(base))


@dataclass
class RunFiles:
    """One DAG run's files on this machine (`local`) and in shared storage (`remote`).

    A task `pull`s what earlier tasks published, works on local files, and `push`es what it wrote.
    `publish` turns the local paths in its result into storage URLs for the next task, which may
    run elsewhere; `localise` turns them back into paths under its own working folder.
    """

    local: Path
    remote: Storage
    _before: dict[str, tuple[int, int]] = field(default_factory=dict)

    def pull(self, wanted: list[str] | None = None) -> list[str]:
        """Download the run's files (`wanted`: only those, with what was derived from them, e.g. a model's
        optimised graph `model.opt.onnx` beside `model.onnx`, or everything under a folder)."""
        self.local.mkdir(parents=True, exist_ok=True)
        names = self.remote.files()
        if wanted is not None:
            names = [name for name in names if any(_derived(name, w) for w in wanted)]
        for name in names:
            self.remote.download(name, self.local / name)
        self._before = self._inventory()
        return names

    def push(self, under: str = "") -> list[str]:
        """Upload every file that is new or changed since `pull` (`under`: in that folder of the run only,
        e.g. a candidate's, while other candidates write theirs beside it)."""
        prefix = under.strip("/") + "/" if under.strip("/") else ""
        changed = [
            name
            for name, stamp in self._inventory().items()
            if self._before.get(name) != stamp and name.startswith(prefix)
        ]
        for name in changed:
            self.remote.upload(self.local / name, name)
        self._before = self._inventory()
        return changed

    def _inventory(self) -> dict[str, tuple[int, int]]:
        inventory = {}
        for path in self.local.rglob("*"):
            if path.is_file() and not path.name.endswith(".part"):
                stat = path.stat()
                inventory[path.relative_to(self.local).as_posix()] = (stat.st_size, stat.st_mtime_ns)
        return inventory

    def publish(self, state):
        """`state` with every path under the local folder replaced by its storage URL."""
        return _replace_prefix(state, str(self.local), self.remote.url)

    def localise(self, state):
        """`state` with every storage URL of this run replaced by its path in the local folder."""
        return _replace_prefix(state, self.remote.url, str(self.local))


def size_bytes(path: Path) -> int:
    """A file's size, or the total of the files under a folder (a checkpoint may be either: an ensemble's
    is a folder of its members)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _derived(name: str, wanted: str) -> bool:
    """`name` is `wanted`, a file under the folder `wanted`, or a sibling sharing its stem (`m.onnx` → `m.opt.onnx`)."""
    stem = wanted.rsplit(".", 1)[0] if "." in wanted.rsplit("/", 1)[-1] else wanted
    return name == wanted or name.startswith(wanted.rstrip("/") + "/") or name.startswith(stem + ".")


def _replace_prefix(value, old: str, new: str):
    if isinstance(value, str):
        if value == old:
            return new
        if value.startswith(old + "/"):
            return new + value[len(old) :]
        return value
    if isinstance(value, dict):
        return {k: _replace_prefix(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_prefix(v, old, new) for v in value]
    return value
