"""Shared storage: one DAG run's files handed from one worker's local folder to another's, on file:// and s3://."""

from pathlib import Path

import pytest

from mlops_onnx.snapshots import SnapshotStore
from mlops_onnx.storage import RunFiles, Storage, as_url, size_bytes


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 API (moto's server) on a free local port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(params=["file", "s3"])
def storage_url(request, tmp_path, monkeypatch):
    if request.param == "file":
        yield (tmp_path / "shared").as_uri()
        return
    import boto3
    import s3fs

    endpoint = request.getfixturevalue("s3_endpoint")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-key",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # the endpoint comes from the environment, not the cache key
    bucket = f"mlops-{request.node.name.split('[')[0][-20:].replace('_', '-')}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/mlops"
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_plain_path_is_a_file_url(tmp_path):
    assert as_url(tmp_path / "x") == f"file://{tmp_path}/x"
    assert as_url("s3://bucket/prefix/") == "s3://bucket/prefix"


def test_the_next_task_gets_urls_and_reads_its_own_copy(storage_url, tmp_path):
    remote = Storage(storage_url).child("runs", "dag", "run1")
    worker_a = RunFiles(local=tmp_path / "a", remote=remote)
    assert worker_a.pull() == []
    (worker_a.local / "reports").mkdir(parents=True)
    (worker_a.local / "model.pt").write_bytes(b"weights")
    (worker_a.local / "reports" / "parity.json").write_text("{}")
    assert sorted(worker_a.push()) == ["model.pt", "reports/parity.json"]
    state = worker_a.publish(
        {
            "workdir": str(worker_a.local),
            "checkpoint": str(worker_a.local / "model.pt"),
            "variants": {"fp16": {"path": str(worker_a.local / "m.onnx")}},
            "snapshot": "abc",
        }
    )
    assert state == {
        "workdir": remote.url,
        "checkpoint": f"{remote.url}/model.pt",
        "variants": {"fp16": {"path": f"{remote.url}/m.onnx"}},
        "snapshot": "abc",
    }
    assert str(worker_a.local) not in str(state)

    worker_b = RunFiles(local=tmp_path / "b", remote=remote)
    assert sorted(worker_b.pull()) == ["model.pt", "reports/parity.json"]
    local = worker_b.localise(state)
    assert local["checkpoint"] == str(tmp_path / "b" / "model.pt")
    assert (tmp_path / "b" / "model.pt").read_bytes() == b"weights"
    (worker_b.local / "model_fp32.onnx").write_bytes(b"onnx")
    assert worker_b.push() == ["model_fp32.onnx"]  # what it pulled is not uploaded again


def test_a_folder_checkpoint_travels_whole_and_weighs_its_files(storage_url, tmp_path):
    """An ensemble's checkpoint is a folder of its members: asking for the folder pulls everything under it."""
    remote = Storage(storage_url).child("runs", "dag", "run1")
    worker_a = RunFiles(local=tmp_path / "a", remote=remote)
    worker_a.pull()
    members = worker_a.local / "ensemble" / "members"
    members.mkdir(parents=True)
    (members / "lstm.keras").write_bytes(b"lstm weights")
    (members / "transformer.keras").write_bytes(b"transformer")
    (worker_a.local / "ensemble" / "members_notes.txt").write_text("not the checkpoint")
    worker_a.push("ensemble")
    state = worker_a.publish({"checkpoint": str(members)})
    assert state["checkpoint"] == f"{remote.url}/ensemble/members"

    worker_b = RunFiles(local=tmp_path / "b", remote=remote)
    assert sorted(worker_b.pull(["ensemble/members"])) == [
        "ensemble/members/lstm.keras",
        "ensemble/members/transformer.keras",
    ]
    checkpoint = tmp_path / "b" / "ensemble" / "members"
    assert worker_b.localise(state)["checkpoint"] == str(checkpoint)
    assert (checkpoint / "lstm.keras").read_bytes() == b"lstm weights"
    assert size_bytes(checkpoint) == len(b"lstm weights") + len(b"transformer")
    assert size_bytes(checkpoint / "lstm.keras") == len(b"lstm weights")


def test_snapshots_round_trip_through_the_storage(storage_url, tmp_path):
    store_a = SnapshotStore(f"{storage_url}/snapshots", cache_dir=tmp_path / "a")
    with store_a.staging("d") as folder:
        (folder / "x.csv").write_text("1,2\n")
        snapshot = store_a.commit("d", folder, source="test")
    store_a.promote(snapshot)
    store_b = SnapshotStore(f"{storage_url}/snapshots", cache_dir=tmp_path / "b")
    copy = store_b.last_good("d")
    assert copy.content_hash == snapshot.content_hash and (copy.path / "x.csv").read_text() == "1,2\n"
    assert copy.path.is_relative_to(tmp_path / "b")


def test_the_default_storage_is_the_home_folder_and_s3_is_a_setting(settings_env, tmp_path):
    settings = settings_env()
    home = tmp_path / "mlops"
    assert settings.snapshots_dir == f"{home.as_uri()}/snapshots" and settings.work_dir == home / "work"
    settings = settings_env(MLOPS_STORAGE_URL="s3://bucket/mlops/", MLOPS_WORK_DIR=str(tmp_path / "local"))
    assert settings.runs_url == "s3://bucket/mlops/runs" and settings.work_dir == tmp_path / "local"


def test_a_stage_on_a_worker_that_never_saw_the_candidates_folder_writes_into_it(settings_env, tmp_path):
    """`candidates` ran on worker A and named an empty folder; `train` runs on worker B, where nothing was
    pulled into it (an empty folder is no file in the storage): the stage still finds its folder to write to."""
    from mlops_onnx.stages import run_files, stage
    from mlops_onnx.tracking import RunContext

    settings = settings_env(MLOPS_STORAGE_URL=(tmp_path / "shared").as_uri(), MLOPS_WORK_DIR=str(tmp_path / "a"))
    ctx = RunContext(dag_id="dag", run_id="manual__1", try_number=1)
    worker_a = run_files(settings, ctx)
    (worker_a.local / "cnn").mkdir(parents=True)
    handed_on = worker_a.publish({"architecture": "cnn", "workdir": str(worker_a.local / "cnn")})

    @stage(reads=("checkpoint",))
    def train(spec, ctx, state):
        checkpoint = Path(state["workdir"]) / "model.pt"
        checkpoint.write_bytes(b"weights")
        return {**state, "checkpoint": str(checkpoint)}

    settings_env(MLOPS_WORK_DIR=str(tmp_path / "b"))  # now on worker B
    result = train(None, ctx, handed_on)
    assert result["checkpoint"] == f"{handed_on['workdir']}/model.pt"
    assert (tmp_path / "shared" / "runs" / "dag" / "manual__1" / "cnn" / "model.pt").read_bytes() == b"weights"
