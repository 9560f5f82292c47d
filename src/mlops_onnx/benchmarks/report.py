"""The benchmark report: the targets each model's spec sets, the Markdown report and the table of docs/performance.md.

Everything here is arithmetic on one run's rows (`benchmark.json`), so `report --from` can redo it
on another machine.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
README_START, README_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
NATIVE_VARIANTS = ("native_eager", "native_compiled", "native_predict")


def binding_of(row: dict) -> str:
    """How a row's (or a note's) session was fed: one of BINDINGS."""
    if row.get("cuda_graph"):
        return "cuda_graph"
    return "io_binding" if row.get("io_binding") else row.get("binding", "host")


def cell_label(row: dict) -> str:
    """A row's or note's provider and how it was fed: "cuda (I/O binding, CUDA graph)"."""
    return (
        row["provider"]
        + {"host": "", "io_binding": " (I/O binding)", "cuda_graph": " (I/O binding, CUDA graph)"}[binding_of(row)]
    )


def short_label(row: dict, sep: str = " ") -> str:
    """ "cuda", "cuda iob", "cuda graph": for chart labels and MLflow metric names."""
    return row["provider"] + {"host": "", "io_binding": f"{sep}iob", "cuda_graph": f"{sep}graph"}[binding_of(row)]


def subject_key(entry: dict) -> str:
    """What a row, a note, a target or a bundle's meta measured: `<model>/<architecture>` (two candidates of one
    model never share rows); just the model for a report from before candidates, whose rows have no architecture."""
    return entry["model"] + (f"/{entry['architecture']}" if entry.get("architecture") else "")


def registration(info: dict) -> str:
    """ "v3 @champion", "v4", or "not registered (not chosen)": what became of the measured run."""
    if info.get("registered_version"):
        return f"v{info['registered_version']}" + (f" @{info['alias']}" if info.get("alias") else "")
    status = info.get("candidate_status")
    return "not registered" + (f" ({status})" if status else "")


def find_row(
    rows: list[dict], subject: str, variant: str, provider: str = "cpu", batch: int = 1, binding: str = "host"
) -> dict | None:
    """The row of `subject` (its `subject_key`) for that variant, provider, batch size and binding."""
    for row in rows:
        if (subject_key(row), row["variant"], row["provider"], row["batch"]) == (
            subject,
            variant,
            provider,
            batch,
        ) and binding_of(row) == binding:
            return row
    return None


def targets(report: dict) -> list[dict]:
    """Each measured architecture's targets, from its spec (kept in the report): ONNX fp32 at least
    `speedup_target` times faster than `speedup_baseline` (else the fastest native path) at batch 1 on the CPU,
    and, for a registered version, the serving variant not slower than fp32; each with the measured ratio, met
    or by how much it is missed."""
    rows, results = report["rows"], []
    about = {
        key: {"model": info.get("model", key), "architecture": info.get("architecture")}
        for key, info in report["models"].items()
    }
    for key, info in report["models"].items():
        needed, baseline = info.get("speedup_target"), info.get("speedup_baseline")
        if needed is None:
            continue
        onnx = find_row(rows, key, "onnx_fp32")
        natives = [r for v in NATIVE_VARIANTS if (r := find_row(rows, key, v)) and v == (baseline or v)]
        if onnx is None or not natives:
            why = f" ({info['skipped']})" if info.get("skipped") else " (see notes)"
            target = f"ONNX fp32 ≥ {needed:g}× {baseline or 'native'} at batch 1"
            results.append(about[key] | {"target": target, "met": None, "detail": "not measured" + why})
            continue
        reference = min(natives, key=lambda r: r["p50_ms"])
        ratio = reference["p50_ms"] / onnx["p50_ms"]
        results.append(
            about[key]
            | {
                "target": f"ONNX fp32 ≥ {needed:g}× {reference['variant']} at batch 1 (CPU p50)",
                "ratio": round(ratio, 2),
                "met": ratio >= needed,
                "detail": f"{reference['variant']} {reference['p50_ms']:.3f} ms / onnx_fp32 {onnx['p50_ms']:.3f} ms"
                + ("" if ratio >= needed else f"; missed by {needed / ratio:.2f}×"),
            }
        )
    for key, info in report["models"].items():
        if info.get("skipped") or not info.get("registered_version"):  # only a registered version serves
            continue
        serving = info.get("serving_variant")
        fp32, chosen = find_row(rows, key, "onnx_fp32"), find_row(rows, key, f"onnx_{serving}") if serving else None
        if fp32 is None or chosen is None:
            target = "serving variant not slower than fp32"
            results.append(
                about[key] | {"target": target, "met": None, "detail": f"serving variant {serving!r} not measured"}
            )
            continue
        slower = chosen["p50_ms"] / fp32["p50_ms"]
        results.append(
            about[key]
            | {
                "target": f"serving variant ({serving}) not slower than fp32 at batch 1 (CPU p50)",
                "ratio": round(fp32["p50_ms"] / chosen["p50_ms"], 2),
                "met": chosen["p50_ms"] <= fp32["p50_ms"] * 1.02,
                "detail": f"{serving} {chosen['p50_ms']:.3f} ms vs fp32 {fp32['p50_ms']:.3f} ms"
                + ("" if slower <= 1.02 else f"; {slower:.2f}× slower"),
            }
        )
    return results


def fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def gpu_description(machine: dict) -> str | None:
    """The GPU and the stack the GPU cells ran on, from nvidia-smi and the libraries the workers loaded."""
    if not machine.get("gpu"):
        return None
    name, memory, driver, *capability = [part.strip() for part in machine["gpu"].splitlines()[0].split(",")]
    text = f"{name} ({memory}, compute capability {capability[0] if capability else '?'}), driver {driver}"
    stacks = machine.get("gpu_stack") or {}
    stack = stacks.get("cuda") or next(iter(stacks.values()), {})
    parts = [
        f"{label} {stack[key]}"
        for key, label in (
            ("cudart", "CUDA runtime"),
            ("cuda", "CUDA driver API"),
            ("cudnn", "cuDNN"),
            ("cublasLt", "cuBLASLt"),
        )
        if stack.get(key)
    ]
    if stack.get("onnxruntime"):
        parts.append(f"ONNX Runtime {stack['onnxruntime']} (built for CUDA {stack.get('onnxruntime_built_for_cuda')})")
    if stack.get("torch_cuda"):
        parts.append(
            f"PyTorch built for CUDA {stack['torch_cuda']}"
            + (f" with cuDNN {stack['torch_cudnn']}" if stack.get("torch_cudnn") else "")
        )
    trt = next((st["nvinfer"] for st in stacks.values() if st.get("nvinfer")), None)
    parts.append(f"TensorRT {trt}" if trt else "TensorRT not loaded")
    return text + "; " + ", ".join(parts)


def markdown(report: dict) -> str:
    m = report["machine"]
    s = report["settings"]
    gpu = gpu_description(m)
    lines = [
        f"# Benchmark ({report['generated_at']})",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_cores']} cores, {s['threads']} thread(s) per framework"
        + (f"; GPU {gpu}" if gpu else "; no GPU")
        + f"; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        f"Each cell: up to {s['warmup']} warm-up calls, then up to {s['runs']} timed calls within "
        f"{s['max_seconds_per_cell']} s per batch size (at least 3 timed calls; the `runs` column says how many), "
        "in a fresh interpreter per cell (model, variant, provider, binding). "
        "Peak RSS: the cell's process (interpreter and libraries included) and its children, sampled by "
        "`monitoring.PeakMemory` as every pipeline task is, the highest so far after that batch.",
        "",
        "Providers: `cpu` and `cuda` take numpy arrays and return them (the copies to and from the GPU are timed; "
        "PyTorch on CUDA likewise, timed until its output is back on the host, so every GPU timing waits for the "
        "GPU); `(I/O binding)`: the input is already on the GPU and the output stays there; `(I/O binding, CUDA "
        "graph)`: the same, the run replayed as one CUDA graph. A GPU cell is left empty, with the reason, when "
        "the session's first provider is not the one asked for or any node other than shape arithmetic ran on "
        "the CPU.",
        "",
        "## Targets",
        "",
        "| model | target | ratio | met | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {subject_key(t)} | {t['target']} | {t.get('ratio', '–')} | {met} | {t['detail']} |")
    for subject, info in report["models"].items():
        lines += ["", f"## {subject}", ""]
        if info.get("skipped"):
            lines.append(f"Not measured: {info['skipped']}.")
            continue
        if info.get("registered_version"):
            what = f"Registered version {registration(info)}, serving variant `{info['serving_variant']}`"
        else:
            what = registration(info).capitalize()
        lines += [
            f"{what}; MLflow run `{info['mlflow_run_id']}`, data `{str(info['data_hash'])[:12]}`.",
            "",
            "| variant | provider | batch | p50 ms | p95 ms | p99 ms | items/s | size | peak RSS MB | parity |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in (r for r in report["rows"] if subject_key(r) == subject):
            provider = cell_label(r)
            parity = "ok" if r["parity_ok"] else "FAIL: " + "; ".join(r["parity_reasons"])
            diff = r["parity_max_abs_diff"]
            parity += f" ({diff:.1e})" if diff not in (None, float("inf")) and r["variant"] != "native_eager" else ""
            lines.append(
                f"| {r['variant']} | {provider} | {r['batch']} | {fmt_ms(r['p50_ms'])} | "
                f"{fmt_ms(r['p95_ms'])} | {fmt_ms(r['p99_ms'])} | {r['throughput_per_s']:,.0f} | "
                f"{r['size_bytes'] / 1e6:.2f} MB | {r['peak_rss_mb']} | {parity} |"
            )
        for key, profile in report["profiles"].items():
            if key.startswith(subject + ":") and "top_ops" in profile:
                ops = ", ".join(f"{o['op']} {o['share']:.0%}" for o in profile["top_ops"][:5])
                share = profile["outside_kernels_share"]
                seen = "" if profile["provider"] == "cpu" else " (operator times as the host sees them)"
                lines += [
                    "",
                    f"ONNX Runtime profile, fp32 batch 1 on {profile['provider']}{seen}: "
                    f"{profile['model_run_us_per_call']} µs per run, "
                    f"{share:.0%} outside operator kernels; by operator: {ops}.",
                ]
    if report["notes"]:
        lines += ["", "## Empty cells", "", "| model | variant | provider | why |", "| --- | --- | --- | --- |"]
        for n in report["notes"]:
            provider = cell_label(n)
            lines.append(f"| {subject_key(n)} | {n['variant']} | {provider} | {n['reason'].replace('|', '/')[:300]} |")
    return "\n".join(lines) + "\n"


README_COLUMNS = (
    ("cpu", "host", "CPU"),
    ("cuda", "host", "CUDA"),
    ("cuda", "io_binding", "CUDA I/O binding"),
    ("cuda", "cuda_graph", "CUDA graph"),
    ("tensorrt", "io_binding", "TensorRT"),
)


def readme_table(report: dict) -> str:
    """The docs' performance table: p50 at batch 1 and 256 of each measured architecture's variants (its
    registered version and alias, or that it is not registered), on each provider (and way of feeding it)
    that has rows; '–' where a cell is empty (the full report says why)."""
    m, rows = report["machine"], report["rows"]
    batches = [b for b in (1, 256) if any(r["batch"] == b for r in rows)]
    columns = [c for c in README_COLUMNS if any((r["provider"], binding_of(r)) == c[:2] for r in rows)]
    gpu = gpu_description(m)
    lines = [
        f"Generated by `python -m mlops_onnx.benchmarks` (`make bench`) from the run of {report['generated_at'][:10]}: "
        f"CPU {m['cpu_model']}, {m['cpu_cores']} "
        f"cores, {report['settings']['threads']} thread"
        + (f"; GPU {gpu}" if gpu else "")
        + "; full report: `reports/benchmark.md`. p50 latency in ms.",
        "",
        "| model | architecture | registered | variant | "
        + " | ".join(f"{title} b={b}" for b in batches for *_, title in columns)
        + " | parity |",
        "| --- | --- | --- | --- | " + "--- | " * (len(batches) * len(columns)) + "--- |",
    ]
    for subject, info in report["models"].items():
        mine = [r for r in rows if subject_key(r) == subject]
        about = f"| {info.get('model', subject)} | {info.get('architecture') or '–'} | {registration(info)} |"
        for variant in dict.fromkeys(r["variant"] for r in mine):
            cells = [
                find_row(rows, subject, variant, provider, b, binding)
                for b in batches
                for provider, binding, _ in columns
            ]
            failed = dict.fromkeys(cell_label(r) for r in mine if r["variant"] == variant and not r["parity_ok"])
            parity = "ok" if not failed else "FAIL: " + ", ".join(failed)
            lines.append(
                f"{about} {variant} | " + " | ".join(fmt_ms(c and c["p50_ms"]) for c in cells) + f" | {parity} |"
            )
    lines += ["", "| target | ratio | met |", "| --- | --- | --- |"]
    for t in report["targets"]:
        lines.append(
            f"| {subject_key(t)}: {t['target']} | {t.get('ratio', '–')} | "
            f"{ {True: 'yes', False: 'no — ' + t['detail'], None: '–'}[t['met']] } |"
        )
    return "\n".join(lines)


def update_readme(table: str, readme: Path = REPO_ROOT / "docs" / "performance.md") -> bool:
    """Replace the table between the markers of the docs' performance page (the site shows it; nobody types
    it); False where the page has no markers."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    readme.write_text(head + README_START + "\n" + table + "\n" + README_END + rest.split(README_END, 1)[1])
    return True
