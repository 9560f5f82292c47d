"""Crash mid-write: a process killed with SIGKILL while it writes a snapshot, the `last_good` pointer
or a report leaves nothing partial visible, the previous good snapshot stays usable, and the next
run recovers by itself (the dead writer's staging folder is removed at once).

The kill lands mid-write deterministically, not by timing: the writer in the child process pauses
after partial bytes are on disk (a half-done file copy, or a value in the JSON being written whose
serialisation blocks), signals the test through a marker file, and the test kills it there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_stage
from fault_samples import FASHION, pointer, publish_last_good, snapshots_root, write_good

from mlops_onnx.snapshots import STAGING_PREFIX, SnapshotStore
from mlops_onnx.tracking import RunContext

CHILD = r'''
import json, os, shutil, sys, time
from pathlib import Path

marker, where, snapshots = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])


def pause():
    """Partial bytes are on disk: tell the test, then wait to be killed."""
    marker.write_text(str(os.getpid()))
    time.sleep(600)


class Blocking:
    """A value whose JSON form (default=str) blocks: json.dump has streamed the text before it."""

    def __str__(self):
        pause()


padding = {f"key{i:05d}": "x" * 64 for i in range(400)}  # > the file buffer: flushed before the pause

from mlops_onnx.snapshots import SnapshotStore

store = SnapshotStore(snapshots)


def write_half(data: bytes, target) -> None:
    """Half the bytes on disk, synced, then the pause (where the test kills this process)."""
    with open(target, "wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        os.fsync(out.fileno())
    pause()


def ingest_snapshot():
    """What `ingest` does before MLflow: source -> local staging -> publish (no torch/mlflow import)."""
    from mlops_onnx.datasets import FASHION_MNIST
    from mlops_onnx.settings import get_settings
    from mlops_onnx.stages.ingest import _snapshot_from_source

    _snapshot_from_source(FASHION_MNIST, store, get_settings())


if where == "snapshot_files":  # cut a file short while the source copies it into staging
    shutil.copyfile = lambda src, dst, *args, **kwargs: write_half(Path(src).read_bytes(), dst)
    ingest_snapshot()
elif where == "snapshot_upload":  # the staged files go to the shared storage: cut one short there
    from mlops_onnx.storage import Storage

    def half_upload(self, local, relative):
        target = Path(self._path(relative))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_half(Path(local).read_bytes(), target)

    Storage.upload = half_upload
    ingest_snapshot()
elif where == "snapshot_manifest":
    with store.staging("fashionmnist") as folder:
        (folder / "fashion-mnist_train.csv").write_text("label,pixel1\n1,2\n")
        store.commit("fashionmnist", folder, source="local", details={**padding, "zzz_blocking": Blocking()})
elif where == "last_good_pointer":
    with store.staging("fashionmnist") as folder:
        (folder / "fashion-mnist_train.csv").write_text("label,pixel1\n1,2\n")
        snapshot = store.commit("fashionmnist", folder, source="local")
    store.promote(snapshot, validation={**padding, "zzz_blocking": Blocking()})
elif where == "report":
    from mlops_onnx.stages import write_report

    write_report({"workdir": sys.argv[4]}, "validation.json", {**padding, "zzz_blocking": Blocking()})
'''


def kill_mid_write(tmp_path: Path, where: str, snapshots: Path, *args: str) -> None:
    """Run the writer in a child process and SIGKILL it once it has paused mid-write."""
    script, marker = tmp_path / "writer.py", tmp_path / f"paused-{where}"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, str(script), str(marker), where, str(snapshots), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the writer never paused mid-write: {child.communicate()[0].decode()[-3000:]}")
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


@pytest.fixture
def night(settings_env, tmp_path):
    settings = settings_env(MLOPS_DATA_SOURCE="local", MLOPS_DATA_DIR=str(tmp_path / "data"))
    good = publish_last_good(FASHION, write_good(FASHION, tmp_path / "earlier"), snapshots_root(settings))
    write_good(FASHION, tmp_path / "data")
    (tmp_path / "data" / FASHION.folder / "fashion-mnist_test.csv").write_text(
        (tmp_path / "data" / FASHION.folder / "fashion-mnist_test.csv").read_text().replace("\n0,", "\n1,", 1)
    )
    return settings, good


def visible(settings) -> list[str]:
    """What readers see in the shared storage: `last_good.json` and the snapshots that have a manifest."""
    folder = snapshots_root(settings) / FASHION.name
    return sorted(p.name for p in folder.iterdir() if p.name == "last_good.json" or (p / "manifest.json").is_file())


def staged(settings) -> list[Path]:
    """Staging folders on this machine (snapshots are written locally, then published)."""
    return [p for p in (settings.work_dir / "snapshots" / FASHION.name).glob(f"{STAGING_PREFIX}*") if p.is_dir()]


@pytest.mark.parametrize("where", ["snapshot_files", "snapshot_upload", "snapshot_manifest", "last_good_pointer"])
def test_a_killed_snapshot_writer_leaves_the_last_good_snapshot_and_the_next_run_recovers(night, tmp_path, where):
    settings, good = night
    before = pointer(snapshots_root(settings), FASHION)
    kill_mid_write(tmp_path, where, snapshots_root(settings))
    dataset_dir = snapshots_root(settings) / FASHION.name
    store = SnapshotStore(settings.snapshots_dir)

    if where != "last_good_pointer":  # the new snapshot never became visible
        assert visible(settings) == sorted([good, "last_good.json"])  # nothing partial is visible
        assert staged(settings)  # the dead writer's local staging folder
    if where in ("snapshot_upload", "snapshot_manifest"):  # files reached the storage, the manifest did not
        assert [p for p in dataset_dir.iterdir() if p.is_dir() and not (p / "manifest.json").exists()]
    assert pointer(snapshots_root(settings), FASHION) == before
    store.verify(store.last_good(FASHION.name))  # the previous good snapshot is whole and usable

    state = run_stage("ingest", FASHION.model, RunContext(FASHION.dag_id, "next-night"))  # recovers by itself
    assert state["snapshot"] != good and state["snapshot"] in visible(settings)
    store.verify(store.get(FASHION.name, state["snapshot"]))
    assert not staged(settings)  # the dead writer's staging folder is gone
    assert pointer(snapshots_root(settings), FASHION) == before  # still the good one until validate passes


def test_a_live_writers_staging_folder_is_left_alone(tmp_path):
    store = SnapshotStore(tmp_path / "storage", cache_dir=tmp_path / "cache")
    with store.staging("d") as first:
        (first / "a.csv").write_text("x")
        with store.staging("d") as second:  # another run starting meanwhile must not remove it
            assert first.is_dir() and second.is_dir()
            (second / "a.csv").write_text("y")
            store.commit("d", second, source="test")
        store.commit("d", first, source="test")
    assert len([p for p in (tmp_path / "storage" / "d").iterdir() if (p / "manifest.json").is_file()]) == 2
    assert not list((tmp_path / "cache" / "d").glob(f"{STAGING_PREFIX}*"))  # both writers cleaned up


def test_a_killed_report_writer_leaves_the_previous_report_whole(tmp_path):
    reports = tmp_path / "work" / "reports"
    reports.mkdir(parents=True)
    (reports / "validation.json").write_text(json.dumps({"success": True, "attempt": 1}))
    kill_mid_write(tmp_path, "report", tmp_path / "snapshots", str(tmp_path / "work"))
    partial = list(reports.glob(".validation.json.*.tmp"))
    assert partial and partial[0].stat().st_size > 8192  # the kill really landed mid-write
    assert json.loads((reports / "validation.json").read_text()) == {"success": True, "attempt": 1}
    from mlops_onnx.stages import write_report

    write_report({"workdir": str(tmp_path / "work")}, "validation.json", {"success": True, "attempt": 2})
    assert json.loads((reports / "validation.json").read_text()) == {"attempt": 2, "success": True}
