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

    def sample(self) -> None:
        """Read the RSS now (this process plus its children) into the running maximum."""
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
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

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
                # The run of the state handed on (a candidate's, from `train` on), else of the one received.
                state = result if isinstance(result, dict) else (args[0] if args else {})
                _log(state.get("mlflow_run_id"), stage.__name__, time.perf_counter() - started, memory)
        return result

    return wrapper


def over_budget(name: str, peak_mb: float, budget_mb: float | None) -> str | None:
    """Why a task's peak memory is over MLOPS_MEMORY_BUDGET_MB, or None when it is within (or no budget)."""
    if budget_mb is None or peak_mb <= budget_mb:
        return None
    return f"{name} peaked at {peak_mb:.0f} MB RSS, over the memory budget of {budget_mb:.0f} MB"


def _log(run_id: str | None, name: str, seconds: float, memory: PeakMemory) -> None:
    from mlops_onnx.settings import get_settings

    budget = get_settings().memory_budget_mb
    print(f"[resources] {name}: {seconds:.1f}s, peak RSS {memory.peak_mb:.0f} MB", flush=True)
    # A warning, not a failure: the task has done its work by now, and a retry would need the same memory.
    exceeded = over_budget(name, memory.peak_mb, budget)
    if exceeded:
        log.warning("MEMORY BUDGET EXCEEDED: %s (MLOPS_MEMORY_BUDGET_MB)", exceeded)
    if not run_id:
        return
    from mlflow import MlflowClient

    try:
        client = MlflowClient()
        client.log_metric(run_id, f"task_seconds_{name}", round(seconds, 3))
        client.log_metric(run_id, f"peak_rss_mb_{name}", round(memory.peak_mb, 1))
        if budget is not None:
            client.log_metric(run_id, "memory_budget_mb", budget)
        if exceeded:
            client.set_tag(run_id, f"memory_budget_exceeded_{name}", exceeded)
    except Exception as exc:  # never hide the stage's own outcome behind a logging failure
        log.warning("could not log resource metrics of %s: %s", name, exc)
