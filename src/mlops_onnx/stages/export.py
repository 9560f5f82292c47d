"""`export`: the native model to ONNX fp32, checked, with provenance in its metadata.

For a task the dashboard shows, the fp32 file also goes into the candidate's MLflow run
(`artifacts.RUN_FP32_ONNX`): the dashboard draws every candidate of the champion's night, and only the
winner is registered. Other tasks do not keep it there (MiniLM's fp32 file alone is about 90 MB a night).
"""

from __future__ import annotations

import time
from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.stages import mlflow_run, stage
from mlops_onnx.tracking import RunContext


@stage(reads=("checkpoint",))
def export(spec, ctx: RunContext, state: dict) -> dict:
    """Export to ONNX fp32, run the full checker and stamp provenance into the metadata."""
    import mlflow
    import onnx

    from mlops_onnx.catalog import PIPELINES
    from mlops_onnx.runtime import optimize_offline
    from mlops_onnx.serving.artifacts import RUN_FP32_ONNX
    from mlops_onnx.variants import graph_op_types

    out = Path(state["workdir"]) / Path(RUN_FP32_ONNX).name
    started = time.perf_counter()
    spec.export_onnx(Path(state["checkpoint"]), out)
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(
        proto,
        {
            "producer": "mlops_onnx",
            "model": spec.name,
            "architecture": spec.architecture,
            "git_commit": tracking.code_version(),
            "data_hash": state["snapshot"],
            "airflow_dag_id": ctx.dag_id,
            "airflow_run_id": ctx.run_id,
        },
    )
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out), full_check=True)
    optimize_offline(out, out.with_suffix(".opt.onnx"))  # ONNX Runtime's graph, optimised once, not per load
    ops = sorted(graph_op_types(out))
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    with mlflow_run(state):
        mlflow.log_params(
            {"onnx_opset": opset, "onnx_input": proto.graph.input[0].name, "onnx_output": proto.graph.output[0].name}
        )
        mlflow.log_metrics(
            {"size_onnx_fp32_bytes": out.stat().st_size, "export_seconds": time.perf_counter() - started}
        )
        mlflow.log_dict({"op_types": ops, "opset": opset}, "reports/onnx_graph.json")
        if PIPELINES[spec.name].served_by == "dashboard":
            mlflow.log_artifact(str(out), Path(RUN_FP32_ONNX).parent.as_posix())
    return {**state, "onnx_fp32": str(out), "onnx_ops": ops}
