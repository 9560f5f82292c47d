"""Three Fashion-MNIST nights through Airflow, mailing a local SMTP server (aiosmtpd) through the standard
`smtp_default` connection and posting to a local webhook through an Apprise `json://` URL (the connection
MLOPS_NOTIFY_APPRISE names): a first champion, a night whose data fails validation and a night that fails in
ingest each deliver exactly one mail and one post, naming the model, the decision, the reason and both UIs'
links."""

import email
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port, pipeline_env, run_dag, write_fashion_sample

pytestmark = pytest.mark.e2e
DAG_ID, MODEL = "fashion_mnist_nightly", "fashion_mnist_classifier"
TRAIN = "fashion-mnist_train.csv"


class Inbox:
    """aiosmtpd's handler: keeps every message it is sent."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
def inbox():
    from aiosmtpd.controller import Controller

    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def webhook():
    """A local HTTP endpoint that keeps the JSON bodies posted to it (what Apprise's json:// URL sends)."""
    posts = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's hook name)
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield posts, server.server_address[1]
    server.shutdown()


def body(message) -> str:
    return message.get_body(("html", "plain")).get_content()


def test_a_promotion_bad_data_and_a_failed_night_each_send_one_mail_and_one_post(tmp_path, inbox, webhook):
    mails, port = inbox
    posts, hook_port = webhook
    apprise = {"conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{hook_port}/"}}}
    data = write_fashion_sample(tmp_path / "data")
    env = pipeline_env(
        tmp_path / "home",
        data_dir=tmp_path / "data",
        MLOPS_EPOCHS="1",
        MLOPS_BENCH_RUNS="3",
        MLOPS_TASK_RETRIES="0",  # a failed task fails the night at once
        MLOPS_NOTIFY_EMAIL="oncall@example.org, ml-team@example.org",
        AIRFLOW_CONN_SMTP_DEFAULT=f"smtp://127.0.0.1:{port}?disable_ssl=true&disable_tls=true&timeout=10",
        MLOPS_NOTIFY_APPRISE="apprise_alerts",
        AIRFLOW_CONN_APPRISE_ALERTS=json.dumps(apprise),
    )
    done = run_dag(DAG_ID, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(mails.mails) == 1
    recipients, mail = mails.mails[0]
    assert sorted(recipients) == ["ml-team@example.org", "oncall@example.org"]
    assert mail["Subject"] == f"[mlops-onnx] {MODEL}: champion moved (first_champion: v1)"
    text = body(mail)
    assert "First champion" in text and "/dags/fashion_mnist_nightly/runs/manual__" in text
    assert f"/#/models/{MODEL}/versions/1" in text
    assert len(posts) == 1 and posts[0]["title"] == mail["Subject"]
    assert (
        "decision: first_champion: v1" in posts[0]["message"]
        and "/dags/fashion_mnist_nightly/runs/" in posts[0]["message"]
    )

    train = data / TRAIN  # night 2: the label column is gone
    lines = train.read_text().splitlines()
    train.write_text("\n".join(",".join(line.split(",")[1:]) for line in lines) + "\n")
    assert run_dag(DAG_ID, env).returncode != 0
    assert len(mails.mails) == 2
    mail = mails.mails[1][1]
    assert mail["Subject"] == f"[mlops-onnx] {MODEL}: data failed validation (nothing registered)"
    assert TRAIN in body(mail) and "label" in body(mail)
    assert len(posts) == 2 and posts[1]["title"] == mail["Subject"]

    for path in data.iterdir():  # night 3: the source folder is empty, ingest fails
        path.unlink()
    assert run_dag(DAG_ID, env).returncode != 0
    assert len(mails.mails) == 3
    mail = mails.mails[2][1]
    assert mail["Subject"] == f"[mlops-onnx] {MODEL}: night failed (nothing registered)"
    assert "failed: ingest, gate_and_register" in body(mail), body(mail)  # the first to fail first
    assert len(posts) == 3 and "failed: ingest, gate_and_register" in posts[2]["message"]


def test_nothing_is_sent_without_recipients(settings_env):
    from mlops_onnx import notify

    settings = settings_env(AIRFLOW_CONN_SMTP_DEFAULT="smtp://127.0.0.1:9?disable_ssl=true&disable_tls=true")
    message = notify.Message(notify.NIGHT_FAILED, MODEL, "nothing registered", "x", "http://a", "http://m")
    assert settings.notify_email == () and notify.send(message, settings) is False


def test_an_apprise_url_that_fails_is_reported_not_counted_as_sent(settings_env, webhook, capfd, caplog):
    """The apprise provider drops Apprise's verdict; `notify.send` reads it from Apprise's log instead."""
    from mlops_onnx import notify

    posts, hook_port = webhook
    message = notify.Message(notify.CHAMPION_MOVED, MODEL, "promoted: v2", "x", "http://a", "http://m")
    for name, port in (("up", hook_port), ("down", free_port())):  # nothing listens on the second port
        config = {"conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{port}/"}}}
        settings = settings_env(
            MLOPS_NOTIFY_APPRISE=f"apprise_{name}", **{f"AIRFLOW_CONN_APPRISE_{name.upper()}": json.dumps(config)}
        )
        assert notify.send(message, settings) is (name == "up"), name
    assert len(posts) == 1
    # the reason is logged: to pytest's log capture, or to the console where Airflow's logging took it over
    logged = caplog.text + "".join(capfd.readouterr())
    assert "Apprise did not deliver" in logged and "Connection error" in logged
