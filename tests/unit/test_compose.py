"""docker-compose.yaml: structure, variables against .env.example, no literal secrets, and `docker-compose config`.

The structural checks need only PyYAML. The last test asks a real Compose implementation to validate the file
(schema, interpolation, `depends_on` conditions, `deploy.resources.reservations.devices`): Debian's
`docker-compose` 1.29 (`apt-get install docker-compose`) validates against the Compose Specification schema it
bundles, offline, without a Docker daemon; `docker compose` (v2) does the same. Without either it is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-gpu",
}
ONE_SHOT = {"airflow-init", "minio-init", "mlflow-init"}  # run to completion; dependents wait for that
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; `$$` is a literal `$`.
REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
BARE_REFERENCE = re.compile(r"\$[A-Za-z_]")
ONLY_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*|:?-)?\}$")  # no default, or an empty one
URL_CREDENTIALS = re.compile(r"://(?P<user>[^:/@\s]+):(?P<password>[^@\s]+)@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def strings(node) -> Iterator[str]:
    """Every string value in the parsed file (keys included: Compose interpolates values only, but a `$` in a
    key is a mistake either way)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def references(compose: dict) -> Iterator[re.Match]:
    for text in strings(compose):
        yield from REFERENCE.finditer(text.replace("$$", ""))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, str]:
    """{dependency: condition}; the short list form means service_started."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command_words(service: dict) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(word) for word in command]


def queues(service: dict) -> set[str]:
    words = command_words(service)
    assert words[:2] == ["celery", "worker"] or words[:3] == ["airflow", "celery", "worker"], words
    if "--queues" in words:
        return set(words[words.index("--queues") + 1].split(","))
    if "-q" in words:
        return set(words[words.index("-q") + 1].split(","))
    return {"default"}


def test_services_are_there(services):
    expected = {"postgres", "redis", "minio", "minio-init", "mlflow", "mlflow-init"} | AIRFLOW_SERVICES
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


def test_every_service_has_an_image_or_a_build(services):
    for name, service in services.items():
        build = service.get("build")
        assert service.get("image") or build, f"{name}: neither image nor build"
        if build:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: no {context / dockerfile}"


def test_airflow_image_is_built_from_the_repository(services):
    for name in AIRFLOW_SERVICES:
        build = services[name]["build"]
        assert build["context"] == "." and build["dockerfile"] == "Dockerfile", name
        variant = build["args"]["VARIANT"]
        assert variant == ("gpu" if name == "airflow-worker-gpu" else "cpu"), (name, variant)
    assert services["mlflow"]["build"]["dockerfile"] == "mlflow/Dockerfile"


def test_the_image_code_version_comes_from_the_build_and_is_never_unknown_by_default(services, env_example):
    """An image stamped `unknown` would call every night's code the same: a code change would never retrain.
    The build arg defaults to empty, which leaves MLOPS_CODE_VERSION unset: the package's source hash."""
    for name in AIRFLOW_SERVICES:
        assert services[name]["build"]["args"]["GIT_COMMIT"] == "${GIT_COMMIT:-}", name
    assert env_example["GIT_COMMIT"] == ""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG GIT_COMMIT=$", dockerfile, re.MULTILINE)
    assert "MLOPS_CODE_VERSION=${GIT_COMMIT}" in dockerfile


def test_bind_mounts_exist(services):
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith(("./", "../")):
                assert (ROOT / source).exists(), f"{name}: bind mount source {source} does not exist"


def test_every_variable_is_in_env_example(compose, env_example):
    missing = set()
    for match in references(compose):
        has_default = match["op"] in ("-", ":-")
        if not has_default and not env_example.get(match["name"]):
            missing.add(match["name"])
    assert not missing, f"used in docker-compose.yaml without a default, not set in .env.example: {sorted(missing)}"


def test_no_bare_dollar_variables(compose):
    # Compose would interpolate `$NAME` from the host; inside containers' shell commands it must be `$${NAME}`.
    bad = [text for text in strings(compose) if BARE_REFERENCE.search(text.replace("$$", ""))]
    assert not bad, f"unescaped $NAME (write $${{NAME}} for the container's shell, ${{NAME}} for Compose): {bad}"


def test_env_example_has_placeholders_only(env_example):
    for name, value in env_example.items():
        if SECRET_NAME.search(name):
            assert value == "" or value.startswith("change-me"), f".env.example: {name} should be a placeholder"


def test_secrets_are_references_never_literals(compose):
    def check(where: str, env: dict[str, str]) -> None:
        for key, value in env.items():
            if SECRET_NAME.search(key):
                assert ONLY_REFERENCE.match(value), f"{where}: {key} must be a ${{VAR}} reference, not {value!r}"

    for name, service in {**compose["services"], "x-airflow-common": compose["x-airflow-common"]}.items():
        check(name, environment(service))
        build = service.get("build")
        if isinstance(build, dict):
            check(f"{name} build args", {str(k): str(v) for k, v in (build.get("args") or {}).items()})
    urls = 0
    for text in strings(compose):
        masked = REFERENCE.sub("<ref>", text.replace("$$", ""))
        for match in URL_CREDENTIALS.finditer(masked):
            urls += 1
            assert match["password"] == "<ref>", f"the password in a URL must be one ${{VAR}} reference: {text}"
    assert urls, "expected the Postgres URLs with user:password@ (is the URL check still matching?)"
    secret_defaults = [
        m.group(0)
        for m in references(compose)
        if SECRET_NAME.search(m["name"]) and m["op"] and m["op"].endswith("-") and m["arg"]
    ]
    assert not secret_defaults, f"secrets with a default value: {secret_defaults}"


def test_published_ports_bind_to_localhost(services):
    for name, service in services.items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: port {port!r} is not bound to 127.0.0.1"


def test_gpu_worker_reserves_an_nvidia_gpu_and_takes_the_gpu_queue(services, env_example):
    worker = services["airflow-worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices
    assert {"gpu", "default"} <= queues(worker), f"airflow-worker-gpu listens on {sorted(queues(worker))}"
    # Left to itself, the CPU worker must not take GPU tasks (.env.example's AIRFLOW_CPU_WORKER_QUEUES=default).
    cpu_command = " ".join(command_words(services["airflow-worker"]))
    cpu_command = REFERENCE.sub(lambda m: m["arg"] if m["op"] in ("-", ":-") else m.group(0), cpu_command)
    assert queues({"command": cpu_command}) == {"default"}
    assert env_example.get("AIRFLOW_CPU_WORKER_QUEUES", "default") == "default"


def test_airflow_runs_celery_against_postgres_and_redis(compose, services):
    env = environment(compose["x-airflow-common"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    # With the driver named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which the image lacks.
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    for name in AIRFLOW_SERVICES:
        assert environment(services[name])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    init = " ".join(command_words(services["airflow-init"]))
    assert "airflow db migrate" in init and "python -m mlops_onnx.cli pools" in init


def test_workers_share_the_bucket_not_a_disk(compose, services):
    env = environment(compose["x-airflow-common"])
    assert env["MLOPS_STORAGE_URL"] == "s3://${MLOPS_BUCKET:?see .env.example}/mlops"
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["MLOPS_WORK_DIR"].startswith(env["MLOPS_HOME"])
    assert "$${MLOPS_BUCKET}" in " ".join(command_words(services["minio-init"]))  # the bucket is created
    for name in AIRFLOW_SERVICES:
        mounts = [v.split(":")[1] for v in services[name].get("volumes") or [] if isinstance(v, str)]
        assert not any(m == env["MLOPS_HOME"] or m.startswith(env["MLOPS_HOME"] + "/") for m in mounts), name


def test_long_running_services_have_healthchecks(services):
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"


def test_dependencies_wait_for_health_or_completion(services):
    dependents: dict[str, set[str]] = {}
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            dependents.setdefault(dependency, set()).add(name)
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == expected, f"{name} -> {dependency}: condition {condition}, expected {expected}"
    for dependency in dependents.keys() - ONE_SHOT:
        assert services[dependency].get("healthcheck"), f"{dependency} has dependents but no healthcheck"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert depends_on(services[name]).get("airflow-init") == "service_completed_successfully", name


def test_mlflow_runs_behind_basic_auth_and_only_workers_log_in(compose, services):
    from mlops_onnx import mlflow_auth

    mlflow = services["mlflow"]
    script = command_words(mlflow)[-1]
    assert "exec mlflow server " + " ".join(mlflow_auth.SERVER_ARGUMENTS) in script
    # the configuration written at start is the one `make up` uses, with the database beside the backend store
    config = mlflow_auth.server_config("$${AUTH_DATABASE_URI}").splitlines()
    assert [line.strip() for line in script.splitlines() if line.strip() in config] == config
    env = environment(mlflow)
    assert env["AUTH_DATABASE_URI"].endswith("@postgres:5432/mlflow_auth")
    assert env["AUTH_DATABASE_URI"].rpartition("/")[0] == env["BACKEND_STORE_URI"].rpartition("/")[0]
    assert "CREATE DATABASE mlflow_auth;" in (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_AUTH_ADMIN_PASSWORD")

    init = services["mlflow-init"]
    assert command_words(init) == ["python", "-m", "mlops_onnx.mlflow_auth", "setup"]
    assert depends_on(init) == {"mlflow": "service_healthy"}
    assert set(mlflow_auth.PASSWORD_VARIABLES.values()) <= set(environment(init))

    pipeline_password = f"${{{mlflow_auth.PASSWORD_VARIABLES[mlflow_auth.PIPELINE]}:?see .env.example}}"
    assert environment(compose["x-airflow-common"])["MLOPS_MLFLOW_AUTH"] == "true"
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        if name.startswith("airflow-worker"):
            assert env["MLFLOW_TRACKING_USERNAME"] == mlflow_auth.PIPELINE, name
            assert env["MLFLOW_TRACKING_PASSWORD"] == pipeline_password, name
            assert depends_on(services[name])["mlflow-init"] == "service_completed_successfully", name
        else:  # the scheduler, API server, DAG processor and triggerer never talk to MLflow
            assert not {"MLFLOW_TRACKING_PASSWORD", *mlflow_auth.PASSWORD_VARIABLES.values()} & set(env), name


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_accepts_the_file():
    command = compose_command()
    if command is None:
        pytest.skip("no docker-compose (Debian: apt-get install docker-compose) and no `docker compose` plugin")
    # Only .env.example's values: a developer's .env or exported variables must not decide the outcome.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(command)} config failed:\n{done.stdout}\n{done.stderr}"
