import json

import pytest

from mlops_onnx.snapshots import SnapshotError, SnapshotStore


def stage_files(store, dataset, files):
    with store.staging(dataset) as folder:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        return store.commit(dataset, folder, source="test")


def test_same_content_gives_same_hash_and_one_folder(tmp_path):
    store = SnapshotStore(tmp_path)
    first = stage_files(store, "d", {"a.csv": "x\n1\n", "sub/b.txt": "y"})
    second = stage_files(store, "d", {"sub/b.txt": "y", "a.csv": "x\n1\n"})
    assert first.content_hash == second.content_hash
    assert [p.name for p in (tmp_path / "d").iterdir()] == [first.content_hash]
    assert sorted(first.files) == ["a.csv", "sub/b.txt"]


def test_different_content_gives_different_hash(tmp_path):
    store = SnapshotStore(tmp_path)
    assert stage_files(store, "d", {"a.csv": "1"}).content_hash != stage_files(store, "d", {"a.csv": "2"}).content_hash


def test_failed_write_leaves_nothing_visible(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(RuntimeError), store.staging("d") as folder:
        (folder / "a.csv").write_text("partial")
        raise RuntimeError("download interrupted")
    assert list((tmp_path / "d").iterdir()) == []
    assert store.last_good("d") is None


def test_last_good_moves_only_when_promoted(tmp_path):
    store = SnapshotStore(tmp_path)
    good = stage_files(store, "d", {"a.csv": "good"})
    store.promote(good)
    stage_files(store, "d", {"a.csv": "bad"})  # ingested but never validated
    assert store.last_good("d").content_hash == good.content_hash
    pointer = json.loads((tmp_path / "d" / "last_good.json").read_text())
    assert pointer["content_hash"] == good.content_hash


def test_verify_detects_a_changed_file(tmp_path):
    store = SnapshotStore(tmp_path)
    snap = stage_files(store, "d", {"a.csv": "original"})
    store.verify(snap)
    (snap.path / "a.csv").write_text("tampered")
    with pytest.raises(SnapshotError, match="a.csv"):
        store.verify(snap)


def test_empty_source_output_is_an_error(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(SnapshotError, match="no files"), store.staging("d") as folder:
        store.commit("d", folder, source="test")
