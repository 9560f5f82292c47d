"""`apply_approval`: the answer to the night's approval request (`approval`), after `approve_promotion`."""

from __future__ import annotations

from mlops_onnx.settings import get_settings
from mlops_onnx.stages import stage
from mlops_onnx.tracking import RunContext


@stage()
def apply_approval(spec, ctx: RunContext, state: dict) -> dict:
    """Approve: `champion` moves (compare-and-set) and the approver is named in the reason; Reject or no
    answer in time: the champion stays. The version, its run and the night's run say which, in one sentence;
    a promotion sends the champion-moved message."""
    from mlops_onnx import approval
    from mlops_onnx.decisions import PROMOTED
    from mlops_onnx.stages.gate_and_register import tell

    settings = get_settings()
    answered = approval.answer(state["approval"], state.get("approval_answer"), settings)
    result = {"version": answered.version, "promotion_decision": answered.decision, "approver": answered.approver}
    print(f"[{spec.name}] approval of v{answered.version}: {answered.reason}", flush=True)
    if answered.decision == PROMOTED:
        tell(spec.name, ctx, result, answered.reason, settings)
    return result
