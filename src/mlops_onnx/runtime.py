"""ONNX Runtime sessions: created one way everywhere, with the provider that actually ran checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class ProviderUnavailable(RuntimeError):
    """The requested execution provider did not load; ONNX Runtime fell back silently."""


def make_session(model_path: Path | str, provider: str = "cpu", threads: int = 1):
    """A session on `provider` with `threads` intra-op threads (0 = ONNX Runtime's default, all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
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
