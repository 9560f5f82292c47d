"""MLflow's own authentication: the basic-auth server, its accounts, and how each process logs in.

docker-compose.yaml always runs the tracking server as `mlflow server --app-name basic-auth
--enable-workspaces`; `make up` does so when MLOPS_MLFLOW_AUTH is on. Then every request needs a
user and password (401 without) and may do only what the user's role grants (403 otherwise):

| account    | role              | what it may do                                                             |
| ---------- | ----------------- | -------------------------------------------------------------------------- |
| `admin`    | MLflow admin      | everything; used only to set up the accounts below                         |
| `pipeline` | `mlops-pipeline`  | EDIT every experiment and registered model: write runs, register versions, |
|            |                   | move aliases; create experiments and models; delete versions (retention)   |
| `reader`   | `mlops-read-only` | READ every experiment and registered model (the serving app, the dashboard)|
| `viewer`   | `mlops-read-only` | the same, for people in the MLflow UI                                      |

Grants use the pattern `*`, so they cover experiments and models created later. Workspaces are on
because without them MLflow lets any signed-in user create experiments and registered models
(and become their owner); with them creating needs a workspace grant, which only the pipeline's
role has. MLflow gives the creator of an experiment or a registered model MANAGE on it (deleting
it included), so setup creates each pipeline's experiment and model as the admin: the pipeline
account holds EDIT on them, and MANAGE only on the versions (retention deletes old ones), so it
cannot delete a model or an experiment, nor change who may do what.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from mlops_onnx.settings import Settings, get_settings, private_file

ADMIN, PIPELINE, READER, VIEWER = "admin", "pipeline", "reader", "viewer"
ACCOUNTS = (ADMIN, PIPELINE, READER, VIEWER)
WORKSPACE = "default"  # MLflow's default workspace: every experiment and model of this project
ROLES: dict[str, tuple[tuple[str, str], ...]] = {  # role: (resource type, permission) on every resource ("*")
    "mlops-pipeline": (
        ("workspace", "USE"),
        ("experiment", "EDIT"),
        ("registered_model", "EDIT"),
        ("registered_model_version", "MANAGE"),
    ),  # retention.prune_versions deletes versions
    "mlops-read-only": (("experiment", "READ"), ("registered_model", "READ")),
}
ACCOUNT_ROLES = {PIPELINE: "mlops-pipeline", READER: "mlops-read-only", VIEWER: "mlops-read-only"}
# Where `setup` (compose's mlflow-init) reads each password; `make up` generates them instead.
PASSWORD_VARIABLES = {
    ADMIN: "MLFLOW_AUTH_ADMIN_PASSWORD",  # MLflow's own: the server creates the admin with it on first start
    PIPELINE: "MLOPS_MLFLOW_PIPELINE_PASSWORD",
    READER: "MLOPS_MLFLOW_READER_PASSWORD",
    VIEWER: "MLOPS_MLFLOW_VIEWER_PASSWORD",
}
SERVER_ARGUMENTS = ("--app-name", "basic-auth", "--enable-workspaces")
LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")  # MLflow's client reads these
USERNAME_VARIABLE, PASSWORD_VARIABLE = LOGIN_VARIABLES
CONNECTION_ID = "mlflow_default"  # the pipeline's login as an Airflow connection (login, password)
MIN_PASSWORD_LENGTH = 12  # MLflow refuses shorter ones


class MlflowAuthError(RuntimeError):
    """MLflow needs a login that this process does not have, or the accounts cannot be set up."""


def server_config(database_uri: str) -> str:
    """The basic-auth app's configuration (MLFLOW_AUTH_CONFIG_PATH). It holds no password: the admin's
    comes from MLFLOW_AUTH_ADMIN_PASSWORD, and only on the server's first start."""
    return (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Checking a password costs a deliberately slow hash (about 0.15 s here) on every request, and a
        # nightly run makes hundreds; a cached check is safe with one server worker (a password changed
        # through the API is dropped from the cache at once).
        "auth_cache_ttl_seconds = 300\n"
    )


# --- logging in ---------------------------------------------------------------------------------


def log_in(settings: Settings, account: str) -> str | None:
    """Give this process's MLflow client a login, and return its user name (None: no login needed or found).

    In order: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (the compose workers; anything
    started by hand); `make up`'s generated password of `account`, when the tracking URI is the
    server `make up` started on this MLOPS_HOME; for the pipeline inside an Airflow task with
    MLOPS_MLFLOW_AUTH on, the Airflow connection `mlflow_default`. The password is masked in
    Airflow's task logs and never printed.
    """
    if not settings.tracking_uri.startswith(("http://", "https://")):
        return None  # a local store: no server to log in to
    username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if not (username and password):
        username, password = account, local_passwords(settings).get(account)
    if not password and settings.mlflow_auth and account == PIPELINE and os.environ.get("AIRFLOW_CTX_DAG_ID"):
        username, password = _airflow_connection()
    if not (username and password):
        if settings.mlflow_auth:
            where = f", or the Airflow connection '{CONNECTION_ID}'" if account == PIPELINE else ""
            raise MlflowAuthError(
                f"MLOPS_MLFLOW_AUTH is on but there is no MLflow login for the {account} account at "
                f"{settings.tracking_uri}: set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}{where}"
            )
        return None
    _mask_in_airflow_logs(password)
    os.environ[USERNAME_VARIABLE], os.environ[PASSWORD_VARIABLE] = username, password
    return username


def _airflow_connection() -> tuple[str | None, str | None]:
    try:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(CONNECTION_ID)
    except Exception:  # no such connection: the caller reports the missing login
        return None, None
    return connection.login, connection.password


def _mask_in_airflow_logs(password: str) -> None:
    if os.environ.get("AIRFLOW_CTX_DAG_ID"):  # inside an Airflow task
        from airflow.sdk.log import mask_secret

        mask_secret(password)


@contextlib.contextmanager
def logged_in(username: str, password: str) -> Iterator[None]:
    """MLflow's clients (MlflowClient, AuthServiceClient) read the login from the environment: set it
    for the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in LOGIN_VARIABLES}
    os.environ[USERNAME_VARIABLE], os.environ[PASSWORD_VARIABLE] = username, password
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- accounts -----------------------------------------------------------------------------------


def ensure_accounts(url: str, admin_password: str, passwords: dict[str, str], models: Iterable[str]) -> None:
    """Create or update, as the admin, the roles, the accounts (with these passwords) and each model's
    experiment and registered model. Idempotent: run at every `make up` and compose start; a changed
    password in `passwords` replaces the account's old one (rotation)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    with logged_in(ADMIN, admin_password):
        auth = AuthServiceClient(url)
        roles = {role.name: role for role in auth.list_roles(WORKSPACE)}
        for name, grants in ROLES.items():
            role = roles.get(name) or auth.create_role(WORKSPACE, name, description="mlops_onnx.mlflow_auth.ROLES")
            roles[name] = role
            wanted = {(resource_type, "*", permission) for resource_type, permission in grants}
            present = {
                (p.resource_type, p.resource_pattern, p.permission): p.id for p in auth.list_role_permissions(role.id)
            }
            for grant, grant_id in present.items():
                if grant not in wanted:
                    auth.remove_role_permission(grant_id)
            for grant in wanted - present.keys():
                auth.add_role_permission(role.id, *grant)
        for account, role_name in ACCOUNT_ROLES.items():
            try:
                auth.get_user(account)
            except MlflowException:
                auth.create_user(account, passwords[account])
            else:
                auth.update_user_password(account, passwords[account])
            if role_name not in {role.name for role in auth.list_user_roles(account)}:
                auth.assign_role(account, roles[role_name].id)
        client = MlflowClient(url)
        for model in models:  # created by the admin, so the pipeline holds EDIT on them, not the creator's MANAGE
            if client.get_experiment_by_name(model) is None:
                client.create_experiment(model, tags={"model": model})
            try:
                client.get_registered_model(model)
            except MlflowException:
                client.create_registered_model(model)


def requires_login(url: str) -> bool:
    """True when the server answers an anonymous API call with 401 (it runs the basic-auth app)."""
    import requests

    response = requests.get(f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=10)
    if response.status_code not in (200, 401):
        raise MlflowAuthError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    return response.status_code == 401


def _required_password(account: str, password: str | None, variable: str) -> str:
    if not password or password.startswith("change-me") or len(password) < MIN_PASSWORD_LENGTH:
        raise MlflowAuthError(
            f"{variable}: the {account} account needs a password of at least "
            f"{MIN_PASSWORD_LENGTH} characters, not a placeholder (see .env.example)"
        )
    return password


def setup_from_environment(settings: Settings) -> None:
    """Compose's `mlflow-init`: the accounts on MLFLOW_TRACKING_URI, passwords from the environment (.env)."""
    from mlops_onnx.catalog import PIPELINES

    url = settings.tracking_uri.rstrip("/")
    passwords = {
        account: _required_password(account, os.environ.get(variable), variable)
        for account, variable in PASSWORD_VARIABLES.items()
    }
    if not requires_login(url):
        raise MlflowAuthError(f"{url} answers without a login: start it with {' '.join(SERVER_ARGUMENTS)}")
    ensure_accounts(url, passwords[ADMIN], passwords, PIPELINES)
    print(f"MLflow accounts ready on {url}: " + ", ".join(f"{a} ({r})" for a, r in ACCOUNT_ROLES.items()))


# --- `make up`: generated secrets under MLOPS_HOME ------------------------------------------------


def credentials_file(settings: Settings) -> Path:
    return settings.home / "mlflow-auth" / "credentials.json"


def local_passwords(settings: Settings) -> dict[str, str]:
    """`make up`'s passwords, when the tracking URI is the server they were made for (never sent elsewhere)."""
    path = credentials_file(settings)
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    return stored["passwords"] if stored.get("url") == settings.tracking_uri.rstrip("/") else {}


def prepare_local_server(settings: Settings, url: str) -> dict[str, str]:
    """The basic-auth configuration of `make up`'s server and the environment only that process gets.

    On first start the admin's and the accounts' passwords and the server's secret key are generated
    into $MLOPS_HOME/mlflow-auth/credentials.json (mode 0600); the users live in
    $MLOPS_HOME/mlflow_auth.db, beside the backend store $MLOPS_HOME/mlflow.db.
    """
    path = credentials_file(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stored = json.loads(path.read_text()) if path.is_file() else {}
    passwords = stored.setdefault("passwords", {})
    for account in ACCOUNTS:
        passwords.setdefault(account, secrets.token_urlsafe(18))
    stored.setdefault("server_secret_key", secrets.token_urlsafe(32))
    stored["url"] = url
    _write_private(path, stored)
    config = path.parent / "basic_auth.ini"
    config.write_text(server_config(f"sqlite:///{private_file(settings.home / 'mlflow_auth.db')}"))
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        PASSWORD_VARIABLES[ADMIN]: passwords[ADMIN],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": stored["server_secret_key"],
    }


def ensure_local_accounts(settings: Settings) -> None:
    """`make up`: the accounts on its server, with the generated passwords."""
    from mlflow.exceptions import MlflowException

    from mlops_onnx.catalog import PIPELINES

    stored = json.loads(credentials_file(settings).read_text())
    url = stored["url"]
    if not requires_login(url):
        raise MlflowAuthError(
            f"the MLflow server at {url} runs without authentication (started before "
            "MLOPS_MLFLOW_AUTH was on?): `make down`, then `make up` again"
        )
    try:
        ensure_accounts(url, stored["passwords"][ADMIN], stored["passwords"], PIPELINES)
    except MlflowException as exc:
        raise MlflowAuthError(f"setting up the accounts on {url} failed: {exc.message}") from exc


def rotate(settings: Settings, account: str) -> None:
    """`make up`: a new generated password for `account`, set on the server first, then stored."""
    from mlflow.server.auth.client import AuthServiceClient

    path = credentials_file(settings)
    stored = json.loads(path.read_text())
    new_password = secrets.token_urlsafe(18)
    with logged_in(ADMIN, stored["passwords"][ADMIN]):
        # MLflow asks for the current password when a user (here the admin) changes their own.
        current = stored["passwords"][ADMIN] if account == ADMIN else None
        AuthServiceClient(stored["url"]).update_user_password(account, new_password, current_password=current)
    stored["passwords"][account] = new_password
    _write_private(path, stored)


def _write_private(path: Path, data: dict) -> None:
    """Write through a new 0600 file and one rename, so the secrets are never readable by others nor half-written."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(staging, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_onnx.mlflow_auth", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="create or update the accounts from the environment (compose's mlflow-init)")
    rotate_parser = commands.add_parser(
        "rotate", help="`make up`: a new password for an account, stored in $MLOPS_HOME/mlflow-auth/credentials.json"
    )
    rotate_parser.add_argument("account", choices=ACCOUNTS)
    args = parser.parse_args(argv)
    from mlflow.exceptions import MlflowException

    settings = get_settings()
    try:
        if args.command == "setup":
            setup_from_environment(settings)
        else:
            rotate(settings, args.account)
            print(f"new password for {args.account} in {credentials_file(settings)}")
    except (MlflowAuthError, MlflowException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
