"""Fake-news detection in real time: `fake_news_rnn@champion` from the MLflow registry in ONNX Runtime.

The app loads the champion's serving variant (chosen by the gate from measurements) and the
tokenizer registered beside it, the same `mlops_onnx.text` code used in training. A background
thread polls the alias (and `POST /reload`, with the bearer token MLOPS_SERVE_RELOAD_TOKEN, asks at
once; without a token configured it is off); a new version is loaded completely before one
reference swap makes it live, so a request never sees a half-loaded model. Against an MLflow
server with authentication the app logs in as the read-only `reader` account.

Run: `make serve` (uvicorn on 127.0.0.1:8000), docs at /docs.
"""

from __future__ import annotations

import hmac
import logging
import os
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator, model_validator

log = logging.getLogger(__name__)

MODEL_NAME = os.environ.get("MLOPS_SERVE_MODEL", "fake_news_rnn")
ALIAS = os.environ.get("MLOPS_SERVE_ALIAS", "champion")
MAX_ITEMS = int(os.environ.get("MLOPS_SERVE_MAX_ITEMS", "64"))
MAX_BYTES = int(os.environ.get("MLOPS_SERVE_MAX_BYTES", str(1 << 20)))
MAX_TEXT_CHARS = int(os.environ.get("MLOPS_SERVE_MAX_TEXT_CHARS", "100000"))
POLL_SECONDS = float(os.environ.get("MLOPS_SERVE_POLL_SECONDS", "30"))
THRESHOLD = 0.5


class Article(BaseModel):
    title: str = Field("", max_length=2000, description="Headline (may be empty if text is given)")
    text: str = Field(..., max_length=MAX_TEXT_CHARS, description="Article body")

    model_config = {"extra": "forbid", "str_strip_whitespace": False}

    @field_validator("text")
    @classmethod
    def text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty or whitespace only")
        return value


class PredictRequest(BaseModel):
    """One article (`title`, `text`) or a batch (`articles`)."""

    title: str | None = Field(None, max_length=2000)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    articles: list[Article] | None = Field(None, max_length=MAX_ITEMS)

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def one_or_batch(self) -> PredictRequest:
        if self.articles is not None:
            if self.text is not None or self.title is not None:
                raise ValueError("send either one article (title, text) or `articles`, not both")
            if not self.articles:
                raise ValueError("`articles` is empty")
        elif self.text is None:
            raise ValueError("`text` is required (or send `articles`)")
        elif not self.text.strip():
            raise ValueError("text is empty or whitespace only")
        return self

    def items(self) -> list[Article]:
        return self.articles if self.articles is not None else [Article(title=self.title or "", text=self.text)]


class Prediction(BaseModel):
    label: str
    probability_fake: float
    model: str
    version: str


class PredictResponse(BaseModel):
    predictions: list[Prediction]


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

    def predict(self, articles: list[Article]) -> np.ndarray:
        from mlops_onnx.runtime import input_dtype
        from mlops_onnx.text import clean_text

        ids = self.tokenizer.encode([clean_text(a.title, a.text) for a in articles])
        feed = {self.session.get_inputs()[0].name: ids.astype(input_dtype(self.session))}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float64).reshape(len(articles), -1)[:, 0]


def load_version(client, name: str, version) -> LoadedModel:
    """Download the version's serving variant and tokenizer and open an ONNX Runtime session."""
    from mlops_onnx.runtime import make_session
    from mlops_onnx.serving.artifacts import run_file, serving_onnx
    from mlops_onnx.text import Tokenizer

    folder = Path(tempfile.mkdtemp(prefix=f"{name}-v{version.version}-"))
    onnx_path, variant = serving_onnx(name, version, folder)
    tokenizer_path = run_file(version, "model/preprocessing/tokenizer.json", folder)
    run = client.get_run(version.run_id)
    return LoadedModel(
        name=name,
        version=str(version.version),
        alias=ALIAS,
        variant=variant,
        session=make_session(onnx_path, "cpu", threads=int(os.environ.get("MLOPS_SERVE_THREADS", "1"))),
        tokenizer=Tokenizer.load(tokenizer_path),
        tags=dict(version.tags),
        metrics=dict(run.data.metrics),
    )


class ModelHolder:
    """The live model, replaced only by a complete new one."""

    def __init__(self, name: str = MODEL_NAME) -> None:
        self.name = name
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def refresh(self) -> bool:
        """Load the alias's version if it moved; True when a new version went live."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        with self._lock:
            client = MlflowClient()
            try:
                version = client.get_model_version_by_alias(self.name, ALIAS)
            except MlflowException as exc:
                self.last_error = f"no {self.name}@{ALIAS} in the registry yet ({exc.error_code})"
                return False
            if self.current is not None and self.current.version == str(version.version):
                return False
            try:
                loaded = load_version(client, self.name, version)
            except Exception as exc:  # keep serving the old version rather than nothing
                self.last_error = f"could not load {self.name} v{version.version}: {type(exc).__name__}: {exc}"
                log.exception("reload failed; still serving %s", self.current and self.current.version)
                return False
            self.current, self.last_error = loaded, None  # one reference swap: never half-loaded
            log.warning("serving %s v%s (%s)", self.name, loaded.version, loaded.variant)
            return True

    def poll_forever(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception:  # the registry may be briefly unreachable; try again next time
                log.exception("alias poll failed")

    def stop(self) -> None:
        self._stop.set()


def check_reload_token(authorization: str | None) -> None:
    """`POST /reload` is off without MLOPS_SERVE_RELOAD_TOKEN (404: the poll picks up a new champion);
    with one it needs `Authorization: Bearer <token>`: 401 without it, 403 with another."""
    from mlops_onnx.settings import get_settings

    token = get_settings().serve_reload_token
    if token is None:
        raise HTTPException(
            status_code=404,
            detail="POST /reload is off (no MLOPS_SERVE_RELOAD_TOKEN); the app "
            "polls the champion alias (MLOPS_SERVE_POLL_SECONDS)",
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(
            status_code=401,
            detail="POST /reload needs 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(status_code=403, detail="wrong reload token")


def create_app(holder: ModelHolder | None = None, poll_seconds: float = POLL_SECONDS) -> FastAPI:
    holder = holder or ModelHolder()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from mlops_onnx import mlflow_auth, tracking
        from mlops_onnx.settings import get_settings

        tracking.configure(get_settings(), account=mlflow_auth.READER)
        holder.refresh()
        poller = threading.Thread(target=holder.poll_forever, args=(poll_seconds,), daemon=True)
        if poll_seconds > 0:
            poller.start()
        yield
        holder.stop()

    app = FastAPI(
        title="Fake-news detector",
        version="1.0",
        description=f"`{MODEL_NAME}@{ALIAS}` from the MLflow registry, in ONNX Runtime.",
        lifespan=lifespan,
    )
    app.state.holder = holder

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BYTES:
            return JSONResponse(status_code=422, content={"detail": f"body of {declared} bytes exceeds {MAX_BYTES}"})
        body = await request.body()
        if len(body) > MAX_BYTES:
            return JSONResponse(status_code=422, content={"detail": f"body of {len(body)} bytes exceeds {MAX_BYTES}"})
        return await call_next(request)

    def live() -> LoadedModel:
        model = holder.current
        if model is None:
            raise HTTPException(status_code=503, detail=holder.last_error or f"no {MODEL_NAME}@{ALIAS} loaded yet")
        return model

    @app.get("/health")
    def health() -> dict:
        model = holder.current
        return {
            "status": "ok",
            "model_loaded": model is not None,
            "version": model.version if model else None,
            "detail": holder.last_error,
        }

    @app.get("/model")
    def model_info() -> dict:
        model = live()
        figures = {
            k: v
            for k, v in model.metrics.items()
            if k.startswith(("test_", "parity_", "bench_cpu_", "size_", "liar_", "leakage_"))
        }
        return {
            "name": model.name,
            "version": model.version,
            "alias": model.alias,
            "serving_variant": model.variant,
            "data_hash": model.tags.get("data_hash"),
            "git_commit": model.tags.get("git_commit"),
            "airflow_run_id": model.tags.get("airflow_run_id"),
            "parity_status": model.tags.get("parity_status"),
            "metrics": figures,
        }

    @app.post("/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> PredictResponse:
        model = live()  # one reference for the whole request
        probabilities = model.predict(request.items())
        return PredictResponse(
            predictions=[
                Prediction(
                    label="fake" if p >= THRESHOLD else "real",
                    probability_fake=round(float(p), 6),
                    model=model.name,
                    version=model.version,
                )
                for p in probabilities
            ]
        )

    @app.post("/reload")
    def reload(request: Request) -> dict:
        check_reload_token(request.headers.get("authorization"))
        changed = holder.refresh()
        return {
            "reloaded": changed,
            "version": holder.current.version if holder.current else None,
            "detail": holder.last_error,
        }

    return app


app = create_app()
