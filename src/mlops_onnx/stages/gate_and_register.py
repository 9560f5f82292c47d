"""`gate_and_register`: the absolute gate, the head-to-head with the champion, the registry (`registry.py`)."""

from __future__ import annotations

from mlops_onnx.settings import get_settings
from mlops_onnx.stages import EVERY_FILE, stage
from mlops_onnx.tracking import RunContext


@stage(reads=EVERY_FILE)
def gate_and_register(spec, ctx: RunContext, state: dict) -> dict:
    """The absolute gate, then the champion's head-to-head on tonight's test rows, then the registry."""
    from mlops_onnx.registry import gate_and_register as register

    return register(spec, ctx, state, get_settings())
