"""ONNX Runtime sessions: created one way everywhere, with the provider that actually ran checked."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class ProviderUnavailable(RuntimeError):
    """The requested execution provider did not load; ONNX Runtime fell back silently."""


def session_options(threads: int = 1, profile_prefix: str | None = None):
    """Tuned once for every session: all graph optimisations, `threads` intra-op threads (0 = all
    cores), one inter-op thread and sequential execution (these graphs have no parallel branches
    worth a second pool), quiet logs; optionally ONNX Runtime's profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def optimize_offline(model_path: Path | str, out_path: Path | str) -> Path:
    """Save ONNX Runtime's optimised graph once (`optimized_model_filepath`), so a load does not
    re-optimise from scratch. Extended level, CPU provider: the saved graph stays portable between
    machines; the hardware-specific layout passes (ORT_ENABLE_ALL) still run, quickly, at load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out_path)
    options.log_severity_level = 3
    ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    return Path(out_path)


def make_session(model_path: Path | str, provider: str = "cpu", threads: int = 1, profile_prefix: str | None = None):
    """A session on `provider` with `threads` intra-op threads (0 = ONNX Runtime's default, all cores)."""
    import onnxruntime as ort

    options = session_options(threads, profile_prefix)
    if provider != "cpu" and hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, if installed
        try:
            ort.preload_dlls()
        except Exception as exc:  # a missing library shows up as the fallback checked below
            log.debug("onnxruntime.preload_dlls: %s", exc)
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=PROVIDERS[provider])
    wanted = PROVIDERS[provider][0]
    if session.get_providers()[0] != wanted:
        raise ProviderUnavailable(
            f"{wanted} requested for {Path(model_path).name} but the session runs on "
            f"{session.get_providers()[0]} (ONNX Runtime fell back)"
        )
    return session


def input_dtype(session) -> type:
    """The numpy dtype of the session's first input (token ids are int32 or int64, the rest float32)."""
    return {"tensor(int64)": np.int64, "tensor(int32)": np.int32}.get(session.get_inputs()[0].type, np.float32)


def run_batched(session, inputs: np.ndarray, batch: int = 512) -> np.ndarray:
    """Run a single-input, single-output session over `inputs` in batches."""
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(parts, axis=0)
