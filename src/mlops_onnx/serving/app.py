"""Fake-news detection in real time: the registry's champion fake-news classifier in ONNX Runtime.

The app loads the champion's serving variant (chosen by the gate from measurements) and the
tokenizer from the version's own model directory (`serving.artifacts`), the same `mlops_onnx.text`
code used in training. Each worker re-reads the alias every MLOPS_SERVE_POLL_SECONDS; `POST /reload`
(with the bearer token MLOPS_SERVE_RELOAD_TOKEN; without one it is off) reloads at once in the worker
that got it and signals every other worker through a file in MLOPS_HOME (`serving.holder`). A new
version is loaded completely before one reference swap makes it live, so a request never sees a
half-loaded model; one that cannot be loaded leaves the old one serving and `/health` degraded (503).
Concurrent requests may share one ONNX Runtime call (`serving.batching`, MLOPS_SERVE_BATCHING).
Against an MLflow server with authentication the app logs in as the read-only `reader` account.

Run: `make serve` (uvicorn on 127.0.0.1:8000), docs at /docs. Settings: `Settings.serve_*`, read once
when the app is created.
"""

# No `from __future__ import annotations`: FastAPI reads the type of `/predict`'s body, built in create_app.
import hmac
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator, model_validator

from mlops_onnx.serving.holder import LoadedModel, ModelHolder
from mlops_onnx.settings import Settings, get_settings

THRESHOLD = 0.5
MODEL_FIGURES = ("test_", "parity_", "bench_cpu_", "size_", "liar_", "leakage_")  # metrics /model shows


def request_model(max_items: int, max_text_chars: int) -> type[BaseModel]:
    """The body of `POST /predict` under this app's limits (they show in /docs)."""

    class Article(BaseModel):
        title: str = Field("", max_length=2000, description="Headline (may be empty if text is given)")
        text: str = Field(..., max_length=max_text_chars, description="Article body")

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
        text: str | None = Field(None, max_length=max_text_chars)
        articles: list[Article] | None = Field(None, max_length=max_items)

        model_config = {"extra": "forbid"}

        @model_validator(mode="after")
        def one_or_batch(self) -> "PredictRequest":
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

    return PredictRequest


class Prediction(BaseModel):
    label: str
    probability_fake: float
    model: str
    version: str


class PredictResponse(BaseModel):
    predictions: list[Prediction]


def validation_errors(exc: RequestValidationError) -> list[dict]:
    """Where and why a body is invalid, without the input itself: FastAPI's default reply echoes it, and a
    NaN or a lone surrogate in it cannot be encoded (a 500, and a reset connection). Messages are made
    encodable too (they may quote a value)."""

    def safe(value: object) -> str:
        return str(value).encode("utf-8", "backslashreplace").decode("utf-8")

    return [
        {
            "loc": [safe(part) for part in error.get("loc", ())],
            "msg": safe(error.get("msg", "")),
            "type": safe(error.get("type", "")),
        }
        for error in exc.errors()
    ]


def check_operator_token(token: str | None, authorization: str | None, endpoint: str) -> None:
    """`POST /reload` and `GET /status` are off without MLOPS_SERVE_RELOAD_TOKEN (404: the poll picks up a new
    champion, `/health` says whether it serves); with one they need `Authorization: Bearer <token>`: 401
    without it, 403 with another (compared in constant time)."""
    if token is None:
        raise HTTPException(
            status_code=404,
            detail=f"{endpoint} is off (no MLOPS_SERVE_RELOAD_TOKEN); the app "
            "polls the champion alias (MLOPS_SERVE_POLL_SECONDS)",
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(
            status_code=401,
            detail=f"{endpoint} needs 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(status_code=403, detail="wrong operator token")


def create_app(holder: ModelHolder | None = None, settings: Settings | None = None) -> FastAPI:
    """The API on `settings` (default: the environment's, read now); `holder` for a test's own."""
    from mlops_onnx.serving.batching import MicroBatcher
    from mlops_onnx.serving.limits import BodyLimit, RequestLimits

    settings = settings or (holder.settings if holder else get_settings())
    holder = holder or ModelHolder(settings=settings)
    predict_request = request_model(settings.serve_max_items, settings.serve_max_text_chars)

    def live() -> LoadedModel:
        model = holder.current
        if model is None:
            raise HTTPException(
                status_code=503, detail=holder.last_error or f"no {holder.name}@{holder.alias} loaded yet"
            )
        return model

    def infer(articles: list) -> tuple[LoadedModel, object]:
        model = live()  # one reference for the whole call
        return model, model.predict(articles)

    batcher = (
        MicroBatcher(infer, settings.serve_batch_wait_ms / 1000, settings.serve_batch_max_items)
        if settings.serve_batching
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from mlops_onnx import mlflow_auth, tracking

        tracking.configure(settings, account=mlflow_auth.READER)
        await run_in_threadpool(holder.refresh)
        holder.start()
        if batcher is not None:
            batcher.start()
        yield
        holder.stop()
        if batcher is not None:
            await batcher.stop()

    app = FastAPI(
        title="Fake-news detector",
        version="1.0",
        description=f"`{holder.name}@{holder.alias}` from the MLflow registry, in ONNX Runtime.",
        lifespan=lifespan,
    )
    app.state.holder = holder
    app.state.settings = settings
    app.add_middleware(BodyLimit, max_bytes=settings.serve_max_bytes)
    app.add_middleware(  # the outermost: the deadline covers the body's arrival too
        RequestLimits, max_in_flight=settings.serve_max_in_flight, timeout_s=settings.serve_request_timeout_s
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_errors(exc)})

    @app.get("/health")
    def health() -> JSONResponse:
        """Public and terse: 200 `ok` while the alias's version serves; 503 `degraded` while an older one
        serves because the alias's version could not be loaded, 503 `unavailable` with no model at all;
        `reason` is a one-word code, the words behind it are on `GET /status`."""
        model = holder.current
        status = "unavailable" if model is None else "degraded" if holder.failure is not None else "ok"
        body = {"status": status, "version": model.version if model else None, "reason": holder.reason}
        return JSONResponse(status_code=200 if status == "ok" else 503, content=body)

    @app.get("/status")
    def status(request: Request) -> dict:
        """For operators (the bearer token): `/health` with the reason in words, this worker's pid and the
        live version's lineage (commit, Airflow run, data hash)."""
        check_operator_token(settings.serve_reload_token, request.headers.get("authorization"), "GET /status")
        model = holder.current
        lineage = ("git_commit", "airflow_run_id", "airflow_dag_id", "data_hash", "config_hash", "code_version")
        return {
            "status": "unavailable" if model is None else "degraded" if holder.failure is not None else "ok",
            "version": model.version if model else None,
            "reason": holder.reason,
            "detail": holder.last_error,
            "pid": os.getpid(),
            "model": None
            if model is None
            else {
                "name": model.name,
                "alias": model.alias,
                "serving_variant": model.variant,
                "loaded_at": model.loaded_at,
                **{key: model.tags.get(key) for key in lineage},
            },
        }

    @app.get("/model")
    def model_info() -> dict:
        model = live()
        return {
            "name": model.name,
            "version": model.version,
            "alias": model.alias,
            "serving_variant": model.variant,
            "pid": os.getpid(),
            "data_hash": model.tags.get("data_hash"),
            "parity_status": model.tags.get("parity_status"),
            "metrics": {k: v for k, v in model.metrics.items() if k.startswith(MODEL_FIGURES)},
        }

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: predict_request) -> PredictResponse:
        items = request.items()
        if batcher is not None:
            model, probabilities = await batcher.submit(items)
        else:
            model, probabilities = await run_in_threadpool(infer, items)
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
        """Read the alias now in this worker, and signal every other worker on this MLOPS_HOME to."""
        check_operator_token(settings.serve_reload_token, request.headers.get("authorization"), "POST /reload")
        changed = holder.refresh()
        holder.signal_reload()
        return {
            "reloaded": changed,
            "version": holder.current.version if holder.current else None,
            "detail": holder.last_error,
        }

    return app


def __getattr__(name: str):
    """`uvicorn mlops_onnx.serving.app:app` builds the app on first use, from the environment's settings."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
