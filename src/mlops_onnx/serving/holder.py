"""The live model of one API worker: loaded from the registry, swapped whole, reloaded everywhere on request.

A version is downloaded into a temporary folder that is removed as soon as its ONNX Runtime session and
tokenizer are in memory, so reloads leave nothing behind. The tokenizer is whichever the version's
`preprocessing/` files describe (`text.load_encoder`): an LSTM's word vocabulary, or a transformer's
subword `tokenizer.json` run by the `tokenizers` library (never transformers at serving time). A
version that cannot be loaded leaves the old one serving and the worker *degraded* until a load
succeeds. Every worker (`uvicorn --workers N`) reads the alias every `serve_poll_seconds`, and at once
when the reload signal file (in MLOPS_HOME, touched by `POST /reload` in whichever worker got it) changes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlops_onnx.settings import Settings

log = logging.getLogger(__name__)
SIGNAL_CHECK_SECONDS = 0.5  # how often a worker looks at the reload signal file (one stat call)


@dataclass
class LoadedModel:
    """Everything a request needs, built completely before it is published."""

    name: str
    version: str
    alias: str
    variant: str
    session: object
    tokenizer: object
    tags: dict[str, str]
    metrics: dict[str, float]
    loaded_at: float = field(default_factory=time.time)

    def predict(self, articles: list) -> np.ndarray:
        """Probabilities of `articles` (objects with `title` and `text`), one ONNX Runtime call."""
        from mlops_onnx.runtime import input_dtype
        from mlops_onnx.text import clean_text

        ids = self.tokenizer.encode([clean_text(a.title, a.text) for a in articles])
        feed = {self.session.get_inputs()[0].name: ids.astype(input_dtype(self.session))}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float64).reshape(len(articles), -1)[:, 0]


def load_version(name: str, version, alias: str, threads: int = 1) -> LoadedModel:
    """The version's serving variant and tokenizer, from its model directory alone, in memory."""
    from mlops_onnx.runtime import make_session
    from mlops_onnx.serving.artifacts import download_version
    from mlops_onnx.text import load_encoder

    with tempfile.TemporaryDirectory(prefix=f"{name}-v{version.version}-") as tmp:
        files = download_version(name, str(version.version), Path(tmp))
        session = make_session(files.onnx, "cpu", threads=threads)  # reads the whole file: the folder can go
        tokenizer = load_encoder(files.preprocessing)
    return LoadedModel(
        name=name,
        version=str(version.version),
        alias=alias,
        variant=files.variant,
        session=session,
        tokenizer=tokenizer,
        tags=dict(version.tags),
        metrics=files.metrics,
    )


def signal_file(settings: Settings, name: str, alias: str) -> Path:
    """The file `POST /reload` touches so that every worker on this MLOPS_HOME reads the alias again."""
    return settings.home / "serving" / f"reload-{name}-{alias}"


def touch_signal(signal: Path) -> None:
    """Change the reload signal file: every worker watching it reads its alias again within a second."""
    signal.parent.mkdir(parents=True, exist_ok=True)
    signal.write_text(f"{time.time_ns()} {os.getpid()}\n")


class ModelHolder:
    """The live model, replaced only by a complete new one."""

    def __init__(self, name: str | None = None, settings: Settings | None = None) -> None:
        from mlops_onnx.catalog import served_model
        from mlops_onnx.settings import get_settings

        self.settings = settings or get_settings()
        self.name = name or self.settings.serve_model or served_model("api")
        self.alias = self.settings.serve_alias
        self.signal = signal_file(self.settings, self.name, self.alias)
        self.current: LoadedModel | None = None
        self.failure: str | None = None  # the newest version at the alias could not be loaded: degraded
        self.detail: str | None = None  # why nothing is at the alias (no champion yet)
        self.reason: str | None = None  # the one-word code of `failure` or `detail`, what /health shows
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._signal_seen = self._signal_stamp()

    @property
    def last_error(self) -> str | None:
        return self.failure or self.detail

    def refresh(self) -> bool:
        """Load the alias's version if it moved; True when a new version went live."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from mlops_onnx.serving.artifacts import ServingFilesError

        with self._lock:
            pinned = self.settings.serve_version  # the server trial: one version, whatever the alias says
            try:
                client = MlflowClient()
                version = (
                    client.get_model_version(self.name, pinned)
                    if pinned
                    else client.get_model_version_by_alias(self.name, self.alias)
                )
            except MlflowException as exc:
                self.detail = f"no {self.name}@{self.alias} in the registry yet ({exc.error_code})"
                self.reason = "no_model_at_alias" if exc.error_code == "RESOURCE_DOES_NOT_EXIST" else "registry_error"
                return False
            number = str(version.version)
            if self.current is not None and self.current.version == number:
                self.failure = self.reason = None  # the alias is back on the live version
                return False
            try:
                loaded = load_version(self.name, version, self.alias, self.settings.serve_threads)
            except Exception as exc:  # keep serving the old version rather than nothing
                still = f"; still serving v{self.current.version}" if self.current else ""
                message = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
                self.failure = f"Could not load {self.name} v{number} (now @{self.alias}): {message}{still}."
                self.reason = exc.code if isinstance(exc, ServingFilesError) else "load_failed"
                log.exception("loading %s v%s failed%s", self.name, number, still)
                return False
            self.current, self.failure, self.detail, self.reason = (
                loaded,
                None,
                None,
                None,
            )  # one swap: never half-loaded
            log.warning("serving %s v%s (%s) in pid %d", self.name, loaded.version, loaded.variant, os.getpid())
            return True

    def signal_reload(self) -> None:
        """Ask every worker on this MLOPS_HOME to read the alias again now."""
        touch_signal(self.signal)
        self._signal_seen = self._signal_stamp()  # this worker has just reloaded

    def _signal_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.signal.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def watch(self, poll_seconds: float) -> None:
        """Read the alias every `poll_seconds` (never when 0), and whenever the reload signal changes."""
        next_poll = time.monotonic() + poll_seconds
        pause = min(poll_seconds, SIGNAL_CHECK_SECONDS) if poll_seconds > 0 else SIGNAL_CHECK_SECONDS
        while not self._stop.wait(pause):
            stamp = self._signal_stamp()
            signalled = stamp != self._signal_seen
            due = poll_seconds > 0 and time.monotonic() >= next_poll
            if not (signalled or due):
                continue
            self._signal_seen = stamp
            next_poll = time.monotonic() + poll_seconds
            try:
                self.refresh()
            except Exception:  # the registry may be briefly unreachable; try again next time
                log.exception("alias check failed")

    def start(self) -> threading.Thread:
        watcher = threading.Thread(
            target=self.watch, args=(self.settings.serve_poll_seconds,), name="alias-watch", daemon=True
        )
        watcher.start()
        return watcher

    def stop(self) -> None:
        self._stop.set()
