"""Scale out: `fashion_mnist_nightly` through Airflow's CeleryExecutor on two workers that share no disk.

The topology of docker-compose.yaml with real processes instead of containers: fresh Postgres databases for
Airflow's metadata (and Celery's results) and for MLflow's backend store, Redis as the Celery broker, the
scheduler, DAG processor and API server (the task runners' execution API), two `airflow celery worker`s with
their own MLOPS_HOME, working folder, AIRFLOW_HOME and host name (`worker-b` also serves the `gpu` queue), an
MLflow server on Postgres, and an S3 API (moto's server, as MinIO in compose) holding the shared storage
(`MLOPS_STORAGE_URL=s3://…`) and MLflow's artifacts. The run is triggered like a user would and scheduled by
the scheduler; the module's tests then read what it left. Everything is stopped, and the databases dropped,
even when something fails.

Skipped only where Postgres (127.0.0.1:5432, trust auth for `postgres` or `root`) or Redis (127.0.0.1:6379)
is not running.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import pipeline_env
from test_services import free_port

pytestmark = pytest.mark.e2e

DAG_ID = "fashion_mnist_nightly"
MODEL = "fashion_mnist_classifier"
WORKERS = {"worker-a": "default", "worker-b": "default,gpu"}
BUCKET = "mlops-scale-out"
PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "scale-out-test",
    "AWS_SECRET_ACCESS_KEY": "not-a-real-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Workers on one machine share its host name; Airflow records the task's host from this callable.
IDENTITY_MODULE = "import os\n\n\ndef hostname():\n    return os.environ['MLOPS_TEST_WORKER_NAME']\n"


def postgres_user() -> str | None:
    import psycopg2

    for user in ("postgres", "root"):
        with contextlib.suppress(psycopg2.Error):
            psycopg2.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=3).close()
            return user
    return None


def free_redis_db() -> int | None:
    """A Redis database number nobody uses (high numbers: other tools start at 0)."""
    import redis

    try:
        sizes = {
            db: redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=db, socket_timeout=3).dbsize() for db in range(8, 16)
        }
    except redis.RedisError:
        return None
    empty = [db for db, size in sizes.items() if size == 0]
    return random.choice(empty) if empty else None


@dataclass
class Cluster:
    root: Path
    pg_user: str
    databases: dict[str, str]
    redis_db: int
    ports: dict[str, int]
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    run_id: str = ""
    manual_run_id: str = ""  # triggered while `run_id` runs: it must wait its turn (max_active_runs=1)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    def worker_home(self, name: str) -> Path:
        return self.root / name

    def query(self, database: str, sql: str, *args) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=self.pg_user, dbname=self.databases[database])
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def metadata(self, sql: str, *args) -> list[tuple]:
        return self.query("airflow", sql, *args)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log_file:
            self.processes[name] = subprocess.Popen(
                command,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> list[int]:
        """Stop every process's whole session (Celery's pool and the task processes included); return survivors."""
        from mlops_onnx.services import _session_members, _signal_session

        def survivors() -> list[int]:
            return [pid for p in self.processes.values() for pid in _session_members(p.pid)]

        for signum, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            for process in reversed(list(self.processes.values())):
                _signal_session(process.pid, signum)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and survivors():
                for process in self.processes.values():
                    process.poll()  # reap our own children
                time.sleep(0.5)
        return survivors()


def admin_sql(user: str, *statements: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def airflow_env(cluster: Cluster, home: Path, **extra: str) -> dict[str, str]:
    """What every Airflow process gets (as x-airflow-common in docker-compose.yaml), on its own MLOPS_HOME."""
    db = f"{cluster.pg_user}@{PG_HOST}:{PG_PORT}/{cluster.databases['airflow']}"
    api = f"http://127.0.0.1:{cluster.ports['api']}"
    env = pipeline_env(home)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/{cluster.redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the run this test triggers, not tonight's
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(cluster.ports["api"]),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": cluster.jwt_secret,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # the task logs show what each task pulled and pushed
            "MLFLOW_TRACKING_URI": cluster.mlflow_url,
            "MLOPS_MLFLOW_UI_URL": cluster.mlflow_url,
            "MLOPS_STORAGE_URL": f"s3://{BUCKET}/mlops",
            "MLOPS_WORK_DIR": str(home / "work"),
            **S3_CREDENTIALS,
            "AWS_ENDPOINT_URL": cluster.s3_endpoint,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(cluster.root / "identity"), os.environ.get("PYTHONPATH")) if p
            ),
        }
    )
    env.update(extra)
    return env


def wait_until(what: str, check, timeout: float, cluster: Cluster, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        dead = {n: p.returncode for n, p in cluster.processes.items() if p.poll() is not None}
        if dead:
            raise AssertionError(
                f"while waiting for {what}: exited {dead}\n"
                + "\n".join(f"--- {n}\n{cluster.log_tail(n)}" for n in dead)
            )
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def s3_client(cluster: Cluster):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=cluster.s3_endpoint,
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        **{k.lower(): v for k, v in S3_CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"},
    )


def bring_up(cluster: Cluster) -> None:
    started = time.monotonic()
    (cluster.root / "identity").mkdir(parents=True)
    (cluster.root / "identity" / "scale_out_identity.py").write_text(IDENTITY_MODULE)
    cluster.start(
        "s3",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(cluster.ports["s3"])],
        {**os.environ, **S3_CREDENTIALS},
    )
    control = airflow_env(cluster, cluster.root / "control")
    Path(control["AIRFLOW_HOME"]).mkdir(parents=True)
    from mlops_onnx.cli import prepare_airflow

    prepare_airflow(None, control)  # as compose's init: migrate, the `gpu` pool, one registry pool per model
    wait_until("the S3 API", lambda: http_ok(f"{cluster.s3_endpoint}/moto-api/"), 30, cluster, 0.3)
    s3 = s3_client(cluster)
    for bucket in (BUCKET, "mlflow"):
        s3.create_bucket(Bucket=bucket)
    cluster.seconds["migrate"] = time.monotonic() - started

    mlflow_db = f"postgresql+psycopg2://{cluster.pg_user}@{PG_HOST}:{PG_PORT}/{cluster.databases['mlflow']}"
    cluster.start(
        "mlflow",
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            mlflow_db,
            "--artifacts-destination",
            "s3://mlflow",
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(cluster.ports["mlflow"]),
            "--workers",
            "1",
        ],
        {**control, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_S3_ENDPOINT_URL": cluster.s3_endpoint},
    )
    cluster.start("api-server", [AIRFLOW_BIN, "api-server"], control)
    cluster.start("scheduler", [AIRFLOW_BIN, "scheduler"], control)
    cluster.start("dag-processor", [AIRFLOW_BIN, "dag-processor"], control)
    for name, queues in WORKERS.items():
        home = cluster.worker_home(name)
        env = airflow_env(
            cluster, home, MLOPS_TEST_WORKER_NAME=name, AIRFLOW__CORE__HOSTNAME_CALLABLE="scale_out_identity.hostname"
        )
        Path(env["AIRFLOW_HOME"]).mkdir(parents=True)
        # --skip-serve-logs: two workers on one host would both bind the log server's port (8793).
        cluster.start(
            name,
            [
                AIRFLOW_BIN,
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@localhost",
                "--queues",
                queues,
                "--concurrency",
                "1",
                "--skip-serve-logs",
            ],
            env,
        )
    wait_until("the MLflow server", lambda: http_ok(f"{cluster.mlflow_url}/health"), 180, cluster)
    wait_until(
        "the API server",
        lambda: http_ok(f"http://127.0.0.1:{cluster.ports['api']}/api/v2/monitor/health"),
        180,
        cluster,
    )
    wait_until(
        f"{DAG_ID} parsed", lambda: cluster.metadata("SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 180, cluster
    )
    cluster.seconds["services_up"] = time.monotonic() - started

    cluster.run_id = f"scale_out__{secrets.token_hex(4)}"
    cluster.manual_run_id = f"manual_during_night__{secrets.token_hex(4)}"
    for step in (
        ["dags", "unpause", DAG_ID],
        ["dags", "trigger", DAG_ID, "--run-id", cluster.run_id],
        ["dags", "trigger", DAG_ID, "--run-id", cluster.manual_run_id, "--conf", '{"force_retrain": true}'],
    ):
        done = subprocess.run([AIRFLOW_BIN, *step], env=control, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"airflow {' '.join(step)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    triggered = time.monotonic()

    def finished(run_id: str) -> str | None:
        rows = cluster.metadata("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)
        return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None

    for run_id in (cluster.run_id, cluster.manual_run_id):
        state = wait_until(f"the DAG run {run_id} to finish", lambda r=run_id: finished(r), 480, cluster, 3)
        cluster.seconds[f"dag_run {run_id}"] = time.monotonic() - triggered
        assert state == "success", f"DAG run {run_id} {state}: {task_instances(cluster, run_id)}\n" + failed_logs(
            cluster, run_id
        )


def task_instances(cluster: Cluster, run_id: str | None = None) -> dict[str, dict]:
    rows = cluster.metadata(
        "SELECT task_id, state, hostname, queue, start_date, end_date, try_number FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s",
        DAG_ID,
        run_id or cluster.run_id,
    )
    return {
        short(task): {"state": state, "hostname": host, "queue": queue, "start": start, "end": end, "tries": tries}
        for task, state, host, queue, start, end, tries in rows
    }


def short(task_id: str) -> str:
    """A task's name without its group: the one candidate's `candidate.train` is `train` here."""
    return task_id.removeprefix("candidate.")


def task_logs(cluster: Cluster, worker: str, run_id: str | None = None) -> dict[str, str]:
    folder = (
        cluster.worker_home(worker) / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id or cluster.run_id}"
    )
    return {
        short(next(part for part in p.parts if part.startswith("task_id=")).removeprefix("task_id=")): p.read_text(
            errors="replace"
        )
        for p in folder.rglob("*.log")
    }


def failed_logs(cluster: Cluster, run_id: str | None = None) -> str:
    """The failed run's task logs, failed tasks first and with the longest tails, then the workers' logs."""
    failed = {t for t, ti in task_instances(cluster, run_id).items() if ti["state"] in ("failed", "upstream_failed")}
    parts = []
    for worker in WORKERS:
        logs = sorted(task_logs(cluster, worker, run_id).items(), key=lambda item: item[0] not in failed)
        parts += [f"--- {worker} {task}\n{text[-(8000 if task in failed else 1500) :]}" for task, text in logs]
        parts.append(f"--- {worker} (worker log)\n{cluster.log_tail(worker)}")
    return "\n".join(parts + [f"--- scheduler\n{cluster.log_tail('scheduler')}"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pg_user = postgres_user()
    if pg_user is None:
        pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT} with trust auth for `postgres` or `root`")
    redis_db = free_redis_db()
    if redis_db is None:
        pytest.skip(f"no Redis on 127.0.0.1:{REDIS_PORT} (or no empty database among 8-15)")
    import redis

    prefix = f"mlops_scale_out_{secrets.token_hex(4)}"
    ports = {name: free_port() for name in ("s3", "mlflow", "api")}
    cluster = Cluster(
        root=tmp_path_factory.mktemp("scale-out"),
        pg_user=pg_user,
        redis_db=redis_db,
        ports=ports,
        databases={"airflow": f"{prefix}_airflow", "mlflow": f"{prefix}_mlflow"},
    )
    started = time.monotonic()
    try:
        admin_sql(
            pg_user,
            f'CREATE DATABASE "{cluster.databases["airflow"]}"',
            f'CREATE DATABASE "{cluster.databases["mlflow"]}"',
        )
        bring_up(cluster)
        yield cluster
    finally:
        survivors = cluster.stop()
        admin_sql(
            pg_user,
            *(f'DROP DATABASE IF EXISTS "{cluster.databases[db]}" WITH (FORCE)' for db in ("airflow", "mlflow")),
        )
        redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=redis_db).flushdb()
        print(f"\nscale-out timings: {cluster.seconds}, total {time.monotonic() - started:.0f}s")
        assert not survivors, f"processes left running: {survivors}"


def test_the_run_is_scheduled_through_celery_to_success(cluster):
    tis = task_instances(cluster)
    assert {t for t, ti in tis.items() if ti["state"] == "success"} == {
        "ingest",
        "validate",
        "candidates",
        "train",
        "export",
        "quantize",
        "parity",
        "benchmark_cpu",
        "gate_and_register",
        "prune",
    }
    # No GPU here: skipped with its reason, and only ever on the worker that serves the `gpu` queue.
    assert tis["benchmark_gpu"]["state"] in ("skipped", "success")
    assert tis["benchmark_gpu"]["queue"] == "gpu" and tis["benchmark_gpu"]["hostname"] == "worker-b"
    run_type = cluster.metadata("SELECT run_type FROM dag_run WHERE run_id = %s", cluster.run_id)[0][0]
    assert run_type == "manual"


def test_tasks_ran_on_both_workers_and_handed_over_between_them(cluster):
    tis = task_instances(cluster)
    # (a task the scheduler skipped, e.g. apply_approval with nothing to approve, never reached a worker)
    assert {ti["hostname"] for ti in tis.values() if ti["hostname"]} == set(WORKERS), tis
    chain = ["ingest", "validate", "candidates", "train", "export", "quantize", "parity", "benchmark_cpu"]
    chain += ["gate_and_register"]
    handovers = [(a, b) for a, b in zip(chain, chain[1:]) if tis[a]["hostname"] != tis[b]["hostname"]]
    handovers += [("parity", "benchmark_gpu")] if tis["parity"]["hostname"] != "worker-b" else []
    assert handovers, f"every task ran on one worker: {tis}"


def test_the_version_is_in_the_postgres_backed_registry(cluster):
    import mlflow
    from mlflow import MlflowClient

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(cluster.mlflow_url)  # a logged model's artifacts resolve through the global URI
    try:
        client = MlflowClient()
        version = client.get_model_version_by_alias(MODEL, "champion")
        assert version.tags["airflow_run_id"] == cluster.run_id and version.tags["airflow_dag_id"] == DAG_ID
        run = client.get_run(version.run_id)
        assert run.data.tags["gate_status"] == "registered" and run.data.metrics["test_accuracy"] >= 0.5
        files = {a.path for a in client.list_artifacts(version.run_id, "model")}
        assert {"model/MLmodel", "model/model.onnx"} <= files, files
    finally:
        mlflow.set_tracking_uri(previous)
    rows = cluster.query("mlflow", "SELECT version, run_id FROM model_versions WHERE name = %s ORDER BY version", MODEL)
    assert rows[0] == (1, version.run_id) and len(rows) == 2  # the manual run's version came after it


def test_a_manual_run_during_the_night_waits_its_turn_and_meets_the_champion(cluster):
    """`max_active_runs=1` queues the second run behind the first; its gate, in the model's one-slot pool,
    compares with the first run's champion instead of also becoming the first champion."""
    from mlflow import MlflowClient

    first, manual = task_instances(cluster), task_instances(cluster, cluster.manual_run_id)
    ended = max(ti["end"] for ti in first.values() if ti["end"])
    assert ended <= min(ti["start"] for ti in manual.values() if ti["start"]), (first, manual)
    assert manual["train"]["state"] == "success"  # forced: the same data and config train again
    client = MlflowClient(tracking_uri=cluster.mlflow_url)
    decisions = {
        run.data.tags["airflow_run_id"]: run.data.tags
        for run in client.search_runs([client.get_experiment_by_name(MODEL).experiment_id], "tags.architecture = 'cnn'")
    }
    assert decisions[cluster.run_id]["promotion_decision"] == "first_champion"
    manual_tags = decisions[cluster.manual_run_id]
    assert manual_tags["forced"] == "true" and manual_tags["compare_champion_version"] == "1"
    assert manual_tags["promotion_decision"] in ("kept_champion", "promoted")


def s3_objects(cluster: Cluster, prefix: str) -> dict[str, bytes]:
    s3 = s3_client(cluster)
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"].removeprefix(prefix): s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}


def test_tasks_hand_on_storage_urls_and_no_worker_reads_another_workers_folder(cluster):
    roots = {name: str(cluster.worker_home(name)) for name in WORKERS}
    run_url = f"s3://{BUCKET}/mlops/runs/{DAG_ID}/{cluster.run_id}"
    xcoms = {
        short(task): value
        for task, value in cluster.metadata(
            "SELECT task_id, value FROM xcom WHERE dag_id = %s AND run_id = %s AND key = 'return_value'",
            DAG_ID,
            cluster.run_id,
        )
    }
    assert {"ingest", "train", "gate_and_register"} <= set(xcoms)
    for task, value in xcoms.items():
        text = json.dumps(value)
        assert not any(root in text for root in roots.values()), f"{task} handed on a local path: {text}"
    final = xcoms["gate_and_register"]  # the chosen candidate's state: its files in its folder of the run
    cnn = f"{run_url}/cnn"
    assert final["workdir"] == cnn and final["checkpoint"] == f"{cnn}/model.pt"
    assert final["onnx_fp32"] == f"{cnn}/model_fp32.onnx"
    assert all(url.startswith(f"{cnn}/") for url in final["passing_variants"].values())

    # What each worker holds of the run is its own output or a byte-exact copy of the shared storage.
    stored = s3_objects(cluster, f"mlops/runs/{DAG_ID}/{cluster.run_id}/")
    assert {"cnn/model.pt", "cnn/model_fp32.onnx", "reports/validation.json", "cnn/reports/parity.json"} <= set(stored)
    tis = task_instances(cluster)
    for worker, root in roots.items():
        local = cluster.worker_home(worker) / "work" / DAG_ID / cluster.run_id
        assert local.is_dir(), f"{worker} ran {[t for t, ti in tis.items() if ti['hostname'] == worker]}"
        for path in (p for p in local.rglob("*") if p.is_file()):
            name = path.relative_to(local).as_posix()
            assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(stored[name]).digest(), name
        # Its task logs show it pulled from the shared storage and never name the other worker's folder.
        logs = task_logs(cluster, worker)
        ran_here = {t for t, ti in tis.items() if ti["hostname"] == worker}
        # A task's earlier try that ran here (a retry went to the other worker) leaves its log here too.
        retried = {t for t in set(logs) - ran_here if tis[t]["tries"] > 1}
        assert set(logs) - retried == ran_here
        other = next(r for n, r in roots.items() if n != worker)
        assert not any(other in text for text in logs.values()), f"{worker}'s logs mention {other}"
        stages_here = (task for task in logs if task not in ("prune", "approve_promotion"))
        assert all(f"pulled from {run_url} into {local}" in logs[task] for task in stages_here), (
            worker
        )  # prune (retention) and approve_promotion (Airflow's HITL form, skipped here) read no run files

    # The snapshot: published once to the storage, validated there, and copied into each reader's own cache.
    digest = xcoms["ingest"]["snapshot"]
    snapshots = s3_objects(cluster, "mlops/snapshots/fashionmnist/")
    assert f"{digest}/manifest.json" in snapshots
    assert json.loads(snapshots["last_good.json"])["content_hash"] == digest
    readers = {tis[t]["hostname"] for t in ("ingest", "validate", "train", "quantize", "parity", "benchmark_cpu")}
    for worker in readers:
        copy = cluster.worker_home(worker) / "work" / "snapshots" / "fashionmnist" / digest
        assert (copy / "manifest.json").is_file(), worker
