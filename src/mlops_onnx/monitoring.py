"""Per-task resource figures: wall time and peak resident memory, logged to the DAG run's MLflow run."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeakMemory:
    """Samples this process's RSS (plus its children's) in a background thread; `peak_mb` is the maximum."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_bytes = 0

    def _sample(self) -> None:
        import psutil

        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # the child exited between listing and reading
                continue
        self.peak_bytes = max(self.peak_bytes, total)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


def measured(stage: Callable[..., dict]) -> Callable[..., dict]:
    """Log `task_seconds_<stage>` and `peak_rss_mb_<stage>` to the MLflow run of the DAG run, pass or fail."""

    @functools.wraps(stage)
    def wrapper(model: str, ctx, *args: dict) -> dict:
        started = time.perf_counter()
        result: dict | None = None
        with PeakMemory() as memory:
            try:
                result = stage(model, ctx, *args)
            finally:
                state = result if result is not None else (args[0] if args else {})
                _log(state.get("mlflow_run_id"), stage.__name__, time.perf_counter() - started, memory)
        return result

    return wrapper


def _log(run_id: str | None, name: str, seconds: float, memory: PeakMemory) -> None:
    print(f"[resources] {name}: {seconds:.1f}s, peak RSS {memory.peak_mb:.0f} MB", flush=True)
    if not run_id:
        return
    from mlflow import MlflowClient

    try:
        client = MlflowClient()
        client.log_metric(run_id, f"task_seconds_{name}", round(seconds, 3))
        client.log_metric(run_id, f"peak_rss_mb_{name}", round(memory.peak_mb, 1))
    except Exception as exc:  # never hide the stage's own outcome behind a logging failure
        log.warning("could not log resource metrics of %s: %s", name, exc)
