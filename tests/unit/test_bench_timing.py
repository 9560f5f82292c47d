"""The time budget of one benchmark measurement: warm-up, timed calls, and the floor of timed calls."""

import time

from mlops_onnx.benchmarks.timing import MIN_RUNS, time_calls


def counting(seconds: float):
    calls = []

    def call() -> None:
        calls.append(time.perf_counter())
        time.sleep(seconds)

    return call, calls


def test_a_slow_predictor_costs_about_the_budget_and_still_gets_the_floor_of_timed_calls():
    """0.1 s a call, a 0.4 s budget: warm-up stops after a quarter of it, timing stops once it is spent,
    after MIN_RUNS timed calls (never the 20 warm-up and 200 timed calls asked for)."""
    call, calls = counting(0.1)
    started = time.perf_counter()
    latencies = time_calls(call, warmup=20, runs=200, max_seconds=0.4)
    assert len(latencies) == MIN_RUNS == 3
    assert len(calls) - len(latencies) in (1, 2)  # warm-up: past a quarter of the budget after one or two
    assert all(latency >= 100 for latency in latencies)  # milliseconds, each call timed on its own
    assert time.perf_counter() - started < 1.0


def test_a_fast_predictor_gets_every_warm_up_and_timed_call_asked_for():
    call, calls = counting(0.0)
    latencies = time_calls(call, warmup=5, runs=50, max_seconds=10.0)
    assert len(latencies) == 50 and len(calls) == 55


def test_timing_stops_when_the_budget_is_spent():
    call, _ = counting(0.01)
    latencies = time_calls(call, warmup=0, runs=10_000, max_seconds=0.3)
    assert MIN_RUNS < len(latencies) < 40  # ~0.3 s of 10 ms calls, never all 10,000
