"""A mean ensemble as one ONNX graph: every member reads the same input, a `Mean` node averages their outputs.

Members are fp32 graphs with the same inputs (names, element types, shapes up to the names of symbolic
dims) and the same number of outputs. Each member's nodes, edges, initializers and value infos get its
own prefix (`onnx.compose.add_prefix`, `m0_`, `m1_`, ...) while the graph inputs keep their names, so
the members share them; output k of the ensemble is `Mean` over output k of every member and keeps the
first member's output name and shape (a dynamic batch stays dynamic). One graph means one session, one
file to register and serve, and ONNX Runtime runs the members' independent subgraphs in one call.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import compose, helper


def _signature(value_infos) -> list[tuple[str, int, list]]:
    """Name, element type and shape of each value info, symbolic dims as None (their names differ by member)."""
    return [
        (
            v.name,
            v.type.tensor_type.elem_type,
            [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim],
        )
        for v in value_infos
    ]


def _opset_imports(members: list[onnx.ModelProto]) -> list[onnx.OperatorSetIdProto]:
    """The highest version of each operator domain any member imports."""
    versions: dict[str, int] = {}
    for member in members:
        for opset in member.opset_import:
            versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    return [helper.make_opsetid(domain, version) for domain, version in sorted(versions.items())]


def mean_ensemble_model(members: list[onnx.ModelProto], name: str = "mean_ensemble") -> onnx.ModelProto:
    """One model whose outputs are the element-wise means of the members' outputs on the shared inputs."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    inputs, outputs = _signature(members[0].graph.input), _signature(members[0].graph.output)
    for index, member in enumerate(members[1:], start=1):
        if _signature(member.graph.input) != inputs:
            raise ValueError(f"member {index} inputs {_signature(member.graph.input)} differ from member 0's {inputs}")
        if [o[1:] for o in _signature(member.graph.output)] != [o[1:] for o in outputs]:
            raise ValueError(
                f"member {index} outputs {_signature(member.graph.output)} differ from member 0's {outputs}"
            )
    prefixed = [compose.add_prefix(m, f"m{index}_", rename_inputs=False) for index, m in enumerate(members)]
    means = [
        helper.make_node("Mean", [m.graph.output[k].name for m in prefixed], [output.name], name=f"mean_{output.name}")
        for k, output in enumerate(members[0].graph.output)
    ]
    graph = helper.make_graph(
        [node for m in prefixed for node in m.graph.node] + means,
        name,
        list(members[0].graph.input),
        list(members[0].graph.output),
        initializer=[init for m in prefixed for init in m.graph.initializer],
        value_info=[v for m in prefixed for v in (*m.graph.value_info, *m.graph.output)],
    )
    graph.sparse_initializer.extend(s for m in prefixed for s in m.graph.sparse_initializer)
    model = helper.make_model(graph, opset_imports=_opset_imports(members), producer_name="mlops_onnx.onnx_ensemble")
    model.ir_version = max(m.ir_version for m in members)
    model.functions.extend(f for m in prefixed for f in m.functions)
    onnx.checker.check_model(model)
    return model


def mean_ensemble(member_paths: list[Path], out_path: Path) -> Path:
    """Write the mean ensemble of the ONNX files `member_paths` to `out_path` (weights inside the file)."""
    model = mean_ensemble_model([onnx.load(str(path)) for path in member_paths])
    onnx.save(model, str(out_path))
    return out_path
