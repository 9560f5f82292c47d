"""`make scale`'s arithmetic: rows from a night's summary, the fitted exponents, the projection, the merge."""

import json
import math

import pytest

from mlops_onnx.benchmarks import scale, scale_report


def summary(fashion_rows: int, train_seconds: float, validate_seconds: float) -> dict:
    """A `make demo` summary of one night with one task and one candidate (the fields `rows_of` reads)."""
    return {
        "models": {
            "fashion_mnist_classifier": {
                "dag_seconds": train_seconds + validate_seconds + 10,
                "data_rows": {"fashion_mnist_train": fashion_rows * 6 // 7, "fashion_mnist_test": fashion_rows // 7},
                "task_seconds": {"ingest": 1.0, "validate": validate_seconds, "candidates": train_seconds + 2},
                "peak_rss_mb": {"ingest": 300.0, "validate": 900.0},
                "candidates": {
                    "cnn": {
                        "task_seconds": {"train": train_seconds, "export": 2.0},
                        "peak_rss_mb": {"train": 1200.0, "export": 800.0},
                        "test_metrics": {"test_accuracy": 0.91, "test_macro_f1": 0.9},
                    }
                },
            }
        }
    }


def test_a_nights_summary_becomes_one_row_per_candidate_and_stage():
    rows, night, quality = scale_report.rows_of(0.25, summary(17_500, 40.0, 8.0))
    stages = {(r["candidate"], r["stage"]): r for r in rows}
    # the summary's `candidates` entry is the candidates' stages added up: not a stage of its own
    assert set(stages) == {("-", "ingest"), ("-", "validate"), ("cnn", "train"), ("cnn", "export")}
    assert stages[("cnn", "train")] == {
        "size": 0.25,
        "task": "fashion",
        "candidate": "cnn",
        "stage": "train",
        "rows": 17_500,
        "seconds": 40.0,
        "peak_rss_mb": 1200.0,
    }
    assert night == {"size": 0.25, "seconds": 58.0, "tasks": {"fashion": 58.0}}
    assert quality == {"fashion/cnn": {"test_accuracy": 0.91}}


def test_the_exponent_is_the_log_log_slope_and_flags_what_grows_faster_than_the_data():
    rows = []
    for size in (1 / 16, 1 / 8, 1 / 4):
        n = int(70_000 * size)
        rows += scale_report.rows_of(size, summary(n, 0.002 * n, 1e-7 * n**2))[0]  # train linear, validate quadratic
    fitted = scale_report.exponents(rows)["fashion"]
    assert fitted["cnn/train"] == pytest.approx(1.0, abs=0.01)
    assert fitted["validate"] == pytest.approx(2.0, abs=0.01)
    assert fitted["ingest"] == pytest.approx(0.0, abs=0.01)
    assert scale_report.superlinear({"fashion": fitted}) == ["fashion validate: k = 2.00"]
    assert scale_report.fit_exponent([(100, 1.0)]) is None  # one size says nothing about growth


def test_the_full_night_is_projected_along_each_stages_exponent_or_taken_as_measured():
    rows = []
    for size in (1 / 16, 1 / 8):
        n = int(70_000 * size)
        rows += scale_report.rows_of(size, summary(n, 0.002 * n, 1e-7 * n**2))[0]
    projected = scale_report.project(rows, {"fashion": 70_000})["fashion"]
    expected = 0.002 * 70_000 + 1e-7 * 70_000**2 + 1.0 + 2.0  # train, validate, ingest and export at size 1
    assert projected["seconds"] == pytest.approx(expected, rel=0.02) and not projected["measured"]
    rows += scale_report.rows_of(1.0, summary(70_000, 999.0, 1.0))[0]
    projected = scale_report.project(rows, {"fashion": 70_000})["fashion"]
    assert projected["measured"] and projected["seconds"] == pytest.approx(999.0 + 1.0 + 1.0 + 2.0)


def test_a_new_run_replaces_its_sizes_and_keeps_the_others():
    first = [scale_report.rows_of(s, summary(int(70_000 * s), 10.0, 1.0)) for s in (0.0625, 0.125)]
    changed = [
        {"size": size, "new_share": 0.01, "new_articles": 40, "seconds": 5.0, "full_night_seconds": 50.0}
        | {"share_of_full_night": 0.1}
        | {"decision": "kept_champion"}
        for size in (0.0625, 0.125)
    ]
    previous = scale_report.merge(
        None, [0.0625, 0.125], [r for f in first for r in f[0]], [f[1] for f in first], {}, changed
    )
    again = scale_report.rows_of(0.125, summary(8750, 20.0, 1.0))
    full = scale_report.rows_of(1.0, summary(70_000, 100.0, 5.0))
    merged = scale_report.merge(previous, [0.125, 1.0], again[0] + full[0], [again[1], full[1]], {0.125: again[2]}, [])
    assert [n["size"] for n in merged["nights"]] == [0.0625, 0.125, 1.0]
    train = {r["size"]: r["seconds"] for r in merged["rows"] if r["stage"] == "train"}
    assert train == {0.0625: 10.0, 0.125: 20.0, 1.0: 100.0}
    assert set(merged["quality"]) == {"0.125"}
    assert [c["size"] for c in merged["changed_nights"]] == [0.0625]  # 0.125's is gone with its night
    report = scale_report.finish(merged, {"cpu_model": "test cpu", "cpu_cores": 2})
    assert report["projection"]["tasks"]["fashion"]["measured"]
    assert math.isclose(report["largest_size_peak_rss_mb"]["fashion"], 1200.0)
    text = scale_report.markdown(report)
    assert "| 1 | fashion | cnn | train | 70000 | 100.0 | 1200 |" in text and "test cpu, 2 cores" in text
    assert "size 0.0625: 40 new articles (1% asked), news night 5 s = 10% of the full news night (50 s)" in text


def test_every_size_runs_every_default_candidate_on_kaggle_sized_synthetic_data(tmp_path, monkeypatch):
    monkeypatch.delenv("MLOPS_CANDIDATES_STOCKS", raising=False)
    monkeypatch.setenv("MLOPS_CANDIDATES_FASHION", "cnn,mobilenet_v2")  # a user's choice is kept
    env = scale.size_env(0.125, tmp_path)
    assert env["MLOPS_SYNTHETIC_SIZE"] == "kaggle" and env["MLOPS_SYNTHETIC_SCALE"] == "0.125"
    assert env["MLOPS_CANDIDATES_STOCKS"] == "lstm,transformer,ensemble,naive,drift,ets"  # the baselines too
    assert env["MLOPS_CANDIDATES_FAKE_NEWS"] == "lstm,tfidf,minilm"
    assert env["MLOPS_CANDIDATES_FASHION"] == "cnn,mobilenet_v2"


def test_a_learning_curve_is_flat_from_the_smallest_size_near_its_best_score():
    quality = {
        "0.0625": {"fashion/cnn": {"test_accuracy": 0.880}, "stocks/lstm": {"test_mase": 0.9990}},
        "0.125": {"fashion/cnn": {"test_accuracy": 0.905}, "stocks/lstm": {"test_mase": 0.9960}},
        "0.25": {"fashion/cnn": {"test_accuracy": 0.906}, "stocks/lstm": {"test_mase": 0.9950}},
    }
    curves = scale_report.learning_curves(quality, {"fashion": 70_000, "stocks": 14_000_000})
    assert curves["fashion/cnn"]["flat_from_size"] == 0.125 and curves["fashion/cnn"]["flat_from_rows"] == 8750
    assert not curves["fashion/cnn"]["best_is_largest"]
    assert curves["stocks/lstm"]["flat_from_size"] == 0.0625  # lower is better: within 0.5 % of 0.9950
    steep = {"0.0625": {"fashion/cnn": {"test_accuracy": 0.80}}, "0.125": {"fashion/cnn": {"test_accuracy": 0.90}}}
    assert scale_report.learning_curves(steep, {"fashion": 70_000})["fashion/cnn"]["best_is_largest"]


def test_the_changed_night_reads_this_sizes_articles_and_new_ones_through_the_local_source(settings_env, tmp_path):
    import pandas as pd

    from mlops_onnx import sources
    from mlops_onnx.datasets import FAKE_NEWS, LIAR

    settings = settings_env(MLOPS_DATA_SOURCE="synthetic", MLOPS_SYNTHETIC_SIZE="kaggle", MLOPS_SYNTHETIC_SCALE="0.02")
    for dataset in (FAKE_NEWS, LIAR):  # night 1 leaves the generated files in the home's cache
        (tmp_path / dataset.name).mkdir()
        sources.fetch("synthetic", dataset, tmp_path / dataset.name, settings)
    folder, added = scale.changed_news(settings.home, 0.02, 0.05)

    local = settings_env(MLOPS_DATA_SOURCE="local", MLOPS_DATA_DIR=str(folder))
    for dataset in (FAKE_NEWS, LIAR):
        (tmp_path / "changed" / dataset.name).mkdir(parents=True)
        sources.fetch("local", dataset, tmp_path / "changed" / dataset.name, local)
    before = {n: pd.read_csv(tmp_path / "fake_news" / n) for n in FAKE_NEWS.file_patterns}
    after = {n: pd.read_csv(tmp_path / "changed" / "fake_news" / n) for n in FAKE_NEWS.file_patterns}
    assert added == 23 + 21 == sum(len(after[n]) - len(before[n]) for n in before)  # 0.1 % of the real counts
    for name in before:  # the night's articles first, unchanged
        pd.testing.assert_frame_equal(after[name].head(len(before[name])), before[name])
    liar = sorted(p.name for p in (tmp_path / "changed" / "liar").iterdir())
    assert liar == ["train.tsv", "valid.tsv"]


def test_one_size_projects_nothing():
    rows = scale_report.rows_of(0.0625, summary(4375, 10.0, 1.0))[0]
    assert scale_report.project(rows, {"fashion": 70_000})["fashion"]["seconds"] is None
    report = scale_report.finish(
        scale_report.merge(None, [0.0625], rows, [], {}, []), {"cpu_model": "cpu", "cpu_cores": 2}
    )
    assert report["projection"]["night_seconds"] is None and "not projected" in scale_report.markdown(report)


def test_the_plot_draws_measured_and_projected_nights(tmp_path):
    rows, nights = [], []
    for size in (1 / 16, 1 / 8):
        size_rows, night, _ = scale_report.rows_of(size, summary(int(70_000 * size), 0.002 * 70_000 * size, 1.0))
        rows, nights = rows + size_rows, nights + [night]
    report = scale_report.finish(
        scale_report.merge(None, [1 / 16, 1 / 8], rows, nights, {}, []), {"cpu_model": "c", "cpu_cores": 2}
    )
    path = scale_report.plot(report, tmp_path / "scale.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_each_size_is_merged_into_the_report_as_soon_as_it_is_measured(tmp_path):
    machine = {"cpu_model": "c", "cpu_cores": 2}
    for size, train in ((1 / 16, 10.0), (1 / 8, 20.0), (1 / 16, 12.0)):  # 1/16 measured again: replaced
        rows, night, quality = scale_report.rows_of(size, summary(int(70_000 * size), train, 1.0))
        report = scale.write_report(tmp_path, size, rows, night, quality, [], machine, "abc")
    on_disk = json.loads((tmp_path / "scale.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert [n["size"] for n in on_disk["nights"]] == [0.0625, 0.125]
    assert {r["size"]: r["seconds"] for r in on_disk["rows"] if r["stage"] == "train"} == {0.0625: 12.0, 0.125: 20.0}
    assert on_disk["projection"]["tasks"]["fashion"]["seconds"] is not None
    assert (tmp_path / "scale.md").is_file() and (tmp_path / "scale.png").is_file()
