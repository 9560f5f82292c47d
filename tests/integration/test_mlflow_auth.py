"""MLflow behind its basic-auth app: a real `mlflow server --app-name basic-auth` on loopback, started and
set up by the code `make up` runs with MLOPS_MLFLOW_AUTH on (one server for the module)."""

from __future__ import annotations

import json
import os
import secrets
import threading
from types import SimpleNamespace

import pytest
import requests
from conftest import free_port
from serving_support import TEXTS, tiny_classifier

from mlops_onnx import mlflow_auth, services, tracking
from mlops_onnx.mlflow_auth import ADMIN, PIPELINE, READER, VIEWER
from mlops_onnx.settings import get_settings

pytestmark = pytest.mark.slow  # real servers, registries and trained models: make test, not make test-fast

NAME = "fake_news_classifier"
# The registry code needs only these of a model spec; the tiny classifier stands in for the LSTM.
SPEC = SimpleNamespace(
    name=NAME,
    architecture="lstm",
    primary_metric="test_f1",
    higher_is_better=True,
    onnx_input_name="tokens",
    gate_min=lambda settings: 0.5,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`make up`'s MLflow server with authentication, its generated secrets and accounts."""
    home = tmp_path_factory.mktemp("auth-home")
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "MLOPS_HOME": str(home),
            "MLOPS_MLFLOW_AUTH": "1",
            "MLOPS_MLFLOW_PORT": str(port),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
            "MLOPS_PROFILE": "quick",
            "MLOPS_TRIAL_ROWS": "0",  # the registry here is the point; the server trial has tests of its own
        }.items():
            patch.setenv(name, value)
        patch.chdir(home)
        get_settings.cache_clear()
        settings = get_settings()
        ports = services.Ports.of(settings)
        url = services.mlflow_url(ports)
        env = services.service_environment(settings, ports) | mlflow_auth.prepare_local_server(settings, url)
        process = services.start(settings, "mlflow", services.service_commands(settings, ports)["mlflow"], env)
        # The server is this process's child: reap it as soon as it exits, or `down` waits out its timeout.
        threading.Thread(target=process.wait, daemon=True).start()
        try:
            assert services.wait_for(f"{url}/health", 120), (home / "logs" / "mlflow.log").read_text()[-3000:]
            mlflow_auth.ensure_local_accounts(settings)
            yield SimpleNamespace(url=url, settings=settings, home=home)
        finally:
            services.down()
            get_settings.cache_clear()


@pytest.fixture
def as_user(monkeypatch):
    """Log this process's MLflow client in as an account (restored after the test); "" = no login yet."""

    def log_in(account: str, password: str | None = None) -> None:
        monkeypatch.setenv(mlflow_auth.USERNAME_VARIABLE, account)
        monkeypatch.setenv(mlflow_auth.PASSWORD_VARIABLE, password if password is not None else passwords()[account])

    def passwords() -> dict[str, str]:
        return json.loads(mlflow_auth.credentials_file(get_settings()).read_text())["passwords"]

    log_in.passwords = passwords
    return log_in


@pytest.fixture(scope="module")
def champion(server, tmp_path_factory):
    """A version registered by the project's gate code, logged in as `make up`'s tasks are: the pipeline account."""
    from mlops_onnx import registry
    from mlops_onnx.text import Tokenizer, clean_text

    folder = tmp_path_factory.mktemp("pipeline-run")
    (folder / "reports").mkdir()
    (folder / "reports" / "parity.json").write_text(json.dumps({"ok": True}))
    model_path = folder / "model_fp32.onnx"
    model_path.write_bytes(tiny_classifier(0.5).SerializeToString())
    tokenizer = Tokenizer.fit([clean_text("", t) for t in TEXTS], vocab_size=50, sequence_length=8)
    with pytest.MonkeyPatch.context() as patch:
        for name in (mlflow_auth.USERNAME_VARIABLE, mlflow_auth.PASSWORD_VARIABLE):
            patch.setenv(name, "")  # no login in the environment: `make up`'s generated one is used
        ctx = tracking.RunContext("fake_news_nightly", "manual__auth")
        state = {
            "validation": "passed",
            "parity": {"fp32": True},
            "metrics": {"test_f1": 0.95},
            "onnx_fp32": str(model_path),
            "snapshot": "ab" * 32,
            "data_source": "synthetic",
            "workdir": str(folder),
            "passing_variants": {},
            "bench_cpu_b1_p95_ms": {"onnx_fp32": 0.3},
            "preprocessing": [str(tokenizer.save(folder / "tokenizer.json"))],
            "mlflow_run_id": tracking.find_or_create_run(NAME, ctx, server.settings),
        }
        result = registry.gate_and_register(SPEC, ctx, state, server.settings)
        logged_in_as = os.environ[mlflow_auth.USERNAME_VARIABLE]
    return SimpleNamespace(result=result, run_id=state["mlflow_run_id"], user=logged_in_as)


def api(
    server, method: str, path: str, auth: tuple[str, str] | None, api_version: str = "2.0", **body
) -> requests.Response:
    return requests.request(
        method,
        f"{server.url}/api/{api_version}/mlflow/{path}",
        auth=auth,
        timeout=30,
        **({"json": body} if method != "GET" else {"params": body}),
    )


def test_an_anonymous_or_wrong_login_gets_401_and_health_stays_open(server, as_user):
    assert api(server, "GET", "registered-models/search", None).status_code == 401
    assert api(server, "GET", "registered-models/search", (VIEWER, "not-the-password")).status_code == 401
    assert api(server, "GET", "registered-models/search", (VIEWER, as_user.passwords()[VIEWER])).status_code == 200
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200  # for health checks


def test_the_pipeline_account_registers_a_version_but_cannot_delete_the_model(server, champion, as_user):
    assert champion.user == PIPELINE
    assert champion.result["registered"] and champion.result["version"] == "1"
    assert champion.result["aliases"] == ["champion"]
    login = (PIPELINE, as_user.passwords()[PIPELINE])
    # setup created the model and the experiment as the admin: the pipeline holds EDIT on them, not the
    # creator's MANAGE (retention may delete versions, not the model, its experiment or their permissions)
    experiment = api(server, "GET", "experiments/get-by-name", login, experiment_name=NAME).json()["experiment"]
    refused = {
        "delete the model": api(server, "DELETE", "registered-models/delete", login, name=NAME),
        "delete the experiment": api(
            server, "POST", "experiments/delete", login, experiment_id=experiment["experiment_id"]
        ),
        "grant a permission": api(
            server,
            "POST",
            "users/permissions/grant",
            login,
            api_version="3.0",
            username=READER,
            resource_type="registered_model",
            resource_id=NAME,
            permission="MANAGE",
        ),
    }
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)
    # but it may delete a version, as retention does with old ones
    copy = api(server, "POST", "model-versions/create", login, name=NAME, source=f"models:/{NAME}/1")
    assert copy.status_code == 200, copy.text
    version = copy.json()["model_version"]["version"]
    assert api(server, "DELETE", "model-versions/delete", login, name=NAME, version=version).status_code == 200


@pytest.mark.parametrize("account", [READER, VIEWER])
def test_read_only_accounts_read_new_models_and_change_nothing(server, champion, as_user, account):
    login = (account, as_user.passwords()[account])
    got = api(server, "GET", "registered-models/alias", login, name=NAME, alias="champion")
    assert got.status_code == 200 and got.json()["model_version"]["version"] == "1"
    assert api(server, "GET", "runs/get", login, run_id=champion.run_id).status_code == 200
    refused = {
        "set an alias": api(server, "POST", "registered-models/alias", login, name=NAME, alias="champion", version="1"),
        "delete an alias": api(server, "DELETE", "registered-models/alias", login, name=NAME, alias="champion"),
        "delete a version": api(server, "DELETE", "model-versions/delete", login, name=NAME, version="1"),
        "tag a model": api(server, "POST", "registered-models/set-tag", login, name=NAME, key="k", value="v"),
        "log to a run": api(
            server, "POST", "runs/log-metric", login, run_id=champion.run_id, key="m", value=1.0, timestamp=0
        ),
        "create an experiment": api(server, "POST", "experiments/create", login, name=f"by-{account}"),
        "create a model": api(server, "POST", "registered-models/create", login, name=f"by-{account}"),
    }
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)


def test_the_serving_app_loads_the_champion_as_the_read_only_account(server, champion, as_user):
    from fastapi.testclient import TestClient

    from mlops_onnx.serving.app import ModelHolder, create_app

    as_user("", "")  # nothing in the environment: the app logs in as `reader` with `make up`'s password
    with TestClient(create_app(ModelHolder(NAME))) as client:
        assert client.get("/health").json()["version"] == "1"
        prediction = client.post("/predict", json={"text": "markets rose on tuesday"}).json()["predictions"][0]
    assert prediction["version"] == "1"
    assert os.environ[mlflow_auth.USERNAME_VARIABLE] == READER


def test_setup_is_idempotent_and_rotates_a_password(server, as_user):
    from mlflow.server.auth.client import AuthServiceClient

    mlflow_auth.ensure_local_accounts(server.settings)  # a second `make up`
    as_user(ADMIN)
    auth = AuthServiceClient(server.url)
    roles = {role.name: role for role in auth.list_roles(mlflow_auth.WORKSPACE)}
    for name, grants in mlflow_auth.ROLES.items():
        present = sorted(
            (p.resource_type, p.resource_pattern, p.permission) for p in auth.list_role_permissions(roles[name].id)
        )
        assert present == sorted((resource_type, "*", permission) for resource_type, permission in grants)
    for account, role in mlflow_auth.ACCOUNT_ROLES.items():
        assert role in {r.name for r in auth.list_user_roles(account)}

    old = as_user.passwords()[VIEWER]
    mlflow_auth.rotate(server.settings, VIEWER)
    new = as_user.passwords()[VIEWER]
    assert new != old
    assert api(server, "GET", "experiments/search", (VIEWER, old), max_results=1).status_code == 401
    assert api(server, "GET", "experiments/search", (VIEWER, new), max_results=1).status_code == 200


def test_make_up_keeps_the_secrets_out_of_the_repository_and_of_other_processes(server):
    credentials = mlflow_auth.credentials_file(server.settings)
    assert oct(credentials.stat().st_mode & 0o777) == "0o600"
    passwords = json.loads(credentials.read_text())["passwords"]
    config = (credentials.parent / "basic_auth.ini").read_text()
    assert not any(password in config for password in passwords.values())
    assert (server.home / "mlflow_auth.db").is_file() and (server.home / "mlflow.db").is_file()
    command = services.service_commands(server.settings, services.Ports.of(server.settings))["mlflow"]
    assert " ".join(mlflow_auth.SERVER_ARGUMENTS) in " ".join(command)
    # Airflow's processes (and so every task) never get the admin password; only the server does.
    airflow_env = services.service_environment(server.settings, services.Ports.of(server.settings))
    assert passwords[ADMIN] not in airflow_env.values()


def test_a_client_without_a_login_fails_clearly(settings_env, monkeypatch):
    monkeypatch.setenv(mlflow_auth.USERNAME_VARIABLE, "")
    monkeypatch.setenv(mlflow_auth.PASSWORD_VARIABLE, "")
    settings = settings_env(MLOPS_MLFLOW_AUTH="1", MLFLOW_TRACKING_URI="http://127.0.0.1:9/")
    with pytest.raises(mlflow_auth.MlflowAuthError, match="MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
        mlflow_auth.log_in(settings, PIPELINE)
    assert mlflow_auth.log_in(settings_env(MLOPS_MLFLOW_AUTH="0"), PIPELINE) is None  # off: no login needed


def test_an_airflow_task_logs_in_from_the_connection_and_masks_the_password(settings_env, monkeypatch):
    from airflow.sdk.log import redact

    password = secrets.token_urlsafe(18)
    monkeypatch.setenv(mlflow_auth.USERNAME_VARIABLE, "")
    monkeypatch.setenv(mlflow_auth.PASSWORD_VARIABLE, "")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "fashion_mnist_nightly")  # as inside a running task
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "login": PIPELINE, "password": password})
    )
    settings = settings_env(MLOPS_MLFLOW_AUTH="1", MLFLOW_TRACKING_URI="http://127.0.0.1:9/")
    assert mlflow_auth.log_in(settings, PIPELINE) == PIPELINE
    assert os.environ[mlflow_auth.PASSWORD_VARIABLE] == password
    assert redact(f"logging in with {password}") == "logging in with ***"
