"""Latency benchmarks: one harness for the nightly tasks and `make bench`.

- `timing`: latency percentiles of a predictor, the fastest native path, the machine;
- `bundle`: what is measured (one folder per model architecture) and how (`BenchConfig`, from settings);
- `cells`: one cell (a variant on a provider, fed one way) timed at each batch size, with its peak memory;
- `nightly`: the DAG's `benchmark_cpu`/`benchmark_gpu`: ONNX variants and the fastest native path;
- `registered` and `suite`: `make bench` on the registered versions and the other candidates of their nights,
  every path, a fresh interpreter per cell;
- `report` and `publish`: targets, Markdown, the docs' performance table, charts, MLflow;
- `cli`: `python -m mlops_onnx.benchmarks {all,prepare,run,report,worker,nightly}`.
"""
