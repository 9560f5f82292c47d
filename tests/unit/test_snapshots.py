import json

import pytest

from mlops_onnx.snapshots import SnapshotError, SnapshotStore


@pytest.fixture
def shared(tmp_path):
    """The shared storage (a file:// folder here) and a store whose local copies live elsewhere."""
    root = tmp_path / "shared"
    return root, SnapshotStore(root, cache_dir=tmp_path / "worker-a")


def stage_files(store, dataset, files):
    with store.staging(dataset) as folder:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        return store.commit(dataset, folder, source="test")


def test_same_content_gives_same_hash_and_one_folder(shared):
    root, store = shared
    first = stage_files(store, "d", {"a.csv": "x\n1\n", "sub/b.txt": "y"})
    second = stage_files(store, "d", {"sub/b.txt": "y", "a.csv": "x\n1\n"})
    assert first.content_hash == second.content_hash
    assert [p.name for p in (root / "d").iterdir()] == [first.content_hash]
    assert sorted(first.files) == ["a.csv", "sub/b.txt"]
    assert [p.name for p in store.local_dir("d").iterdir()] == [first.content_hash]  # staging folders are gone


def test_different_content_gives_different_hash(shared):
    _, store = shared
    assert stage_files(store, "d", {"a.csv": "1"}).content_hash != stage_files(store, "d", {"a.csv": "2"}).content_hash


def test_failed_write_leaves_nothing_visible(shared):
    root, store = shared
    with pytest.raises(RuntimeError), store.staging("d") as folder:
        (folder / "a.csv").write_text("partial")
        raise RuntimeError("download interrupted")
    assert not (root / "d").exists()
    assert list(store.local_dir("d").iterdir()) == []
    assert store.last_good("d") is None


def test_an_upload_without_its_manifest_is_not_a_snapshot(shared, tmp_path):
    root, store = shared
    snap = stage_files(store, "d", {"a.csv": "x"})
    (root / "d" / snap.content_hash / "manifest.json").unlink()  # as if the upload died before the manifest
    with pytest.raises(SnapshotError, match="not found"):
        SnapshotStore(root, cache_dir=tmp_path / "worker-b").get("d", snap.content_hash)


def test_last_good_moves_only_when_promoted(shared):
    root, store = shared
    good = stage_files(store, "d", {"a.csv": "good"})
    store.promote(good)
    stage_files(store, "d", {"a.csv": "bad"})  # ingested but never validated
    assert store.last_good("d").content_hash == good.content_hash
    pointer = json.loads((root / "d" / "last_good.json").read_text())
    assert pointer["content_hash"] == good.content_hash


def test_another_worker_reads_a_checked_copy_from_the_shared_storage(shared, tmp_path):
    root, store = shared
    snap = stage_files(store, "d", {"a.csv": "x\n1\n", "sub/b.txt": "y"})
    store.promote(snap)
    other = SnapshotStore(root.as_uri(), cache_dir=tmp_path / "worker-b")
    copy = other.last_good("d")
    assert copy.content_hash == snap.content_hash and copy.path == tmp_path / "worker-b" / "d" / snap.content_hash
    assert (copy.path / "sub" / "b.txt").read_text() == "y"
    other.verify(copy)


def test_a_download_that_does_not_match_the_manifest_is_rejected(shared, tmp_path):
    root, store = shared
    snap = stage_files(store, "d", {"a.csv": "original"})
    (root / "d" / snap.content_hash / "a.csv").write_text("changed in storage")
    other = SnapshotStore(root, cache_dir=tmp_path / "worker-b")
    with pytest.raises(SnapshotError, match="a.csv: content differs"):
        other.get("d", snap.content_hash)
    assert not (tmp_path / "worker-b" / "d" / snap.content_hash).exists()


def test_verify_detects_a_changed_file(shared):
    _, store = shared
    snap = stage_files(store, "d", {"a.csv": "original"})
    store.verify(snap)
    (snap.path / "a.csv").write_text("tampered")
    with pytest.raises(SnapshotError, match="a.csv"):
        store.verify(snap)


def test_empty_source_output_is_an_error(shared):
    _, store = shared
    with pytest.raises(SnapshotError, match="no files"), store.staging("d") as folder:
        store.commit("d", folder, source="test")
