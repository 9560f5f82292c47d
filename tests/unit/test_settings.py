import json

import pytest

from mlops_onnx.settings import SettingsError, get_settings


def test_defaults_to_synthetic_without_credentials_or_data_dir(settings_env, monkeypatch):
    monkeypatch.delenv("MLOPS_DATA_DIR", raising=False)
    settings = settings_env()
    assert settings.data_source == "synthetic"
    assert settings.tracking_uri.startswith("sqlite:///") and settings.tracking_uri.endswith("mlflow.db")


def test_local_when_data_dir_exists(settings_env, tmp_path):
    settings = settings_env(MLOPS_DATA_DIR=str(tmp_path))
    assert settings.data_source == "local"
    assert "MLOPS_DATA_DIR" in settings.data_source_reason


def test_kaggle_when_credentials_present(settings_env, tmp_path, monkeypatch):
    config = tmp_path / "kaggle"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    assert settings_env(MLOPS_DATA_DIR=str(tmp_path)).data_source == "kaggle"


def test_explicit_source_wins_and_bad_values_are_named(settings_env):
    assert settings_env(MLOPS_DATA_SOURCE="synthetic").data_source == "synthetic"
    with pytest.raises(SettingsError, match="MLOPS_DATA_SOURCE='ftp'"):
        settings_env(MLOPS_DATA_SOURCE="ftp")
    with pytest.raises(SettingsError, match="MLOPS_EPOCHS='many'"):
        settings_env(MLOPS_DATA_SOURCE="synthetic", MLOPS_EPOCHS="many")


def test_decision_and_retention_settings_have_defaults_and_name_bad_values(settings_env):
    settings = settings_env()
    assert (settings.force_retrain, settings.promotion_alpha) == (False, 0.05)
    assert (settings.keep_versions, settings.keep_runs_days) == (10, 30.0)
    assert settings_env(MLOPS_FORCE_RETRAIN="1").force_retrain is True
    assert settings_env(MLOPS_FORCE_RETRAIN="false").force_retrain is False
    with pytest.raises(SettingsError, match="MLOPS_FORCE_RETRAIN='maybe'"):
        settings_env(MLOPS_FORCE_RETRAIN="maybe")
    with pytest.raises(SettingsError, match="MLOPS_PROMOTION_ALPHA=1.5"):
        settings_env(MLOPS_FORCE_RETRAIN="0", MLOPS_PROMOTION_ALPHA="1.5")


def test_benchmark_settings_have_one_default_each_and_name_bad_values(settings_env):
    full = settings_env(MLOPS_PROFILE="full")
    assert full.bench_max_seconds == 10.0 and full.bench_runs == 200 and full.bench_warmup == 20
    assert full.bench_nightly_batches == (1, 64) and full.bench_batches == (1, 8, 64, 256)
    assert full.bench_providers == ("cpu", "cuda", "tensorrt") and full.bench_dir == full.home / "bench"
    custom = settings_env(MLOPS_BENCH_BATCHES="1, 32", MLOPS_BENCH_PROVIDERS="CPU,cuda", MLOPS_BENCH_PROBE_CALLS="0")
    assert (
        custom.bench_batches == (1, 32) and custom.bench_providers == ("cpu", "cuda") and custom.bench_probe_calls == 1
    )
    for name, value, expected in (
        ("MLOPS_BENCH_NIGHTLY_BATCHES", "1,x", "expected comma-separated batch sizes"),
        ("MLOPS_BENCH_BATCHES", "0,8", "expected batch sizes of at least 1"),
        ("MLOPS_BENCH_PROVIDERS", "cpu,gpu", "expected some of cpu, cuda, tensorrt"),
    ):
        with pytest.raises(SettingsError, match=f"{name}=.*{expected}"):
            settings_env(**{name: value})
        settings_env(**{name: ""})


def test_the_code_version_is_the_commit_plus_a_source_hash_when_the_tree_is_not_clean(
    settings_env, monkeypatch, tmp_path
):
    from mlops_onnx import tracking

    monkeypatch.delenv("MLOPS_CODE_VERSION", raising=False)
    settings_env()
    tracking.code_version.cache_clear()
    monkeypatch.setattr(tracking, "REPO_ROOT", tmp_path)  # not a git checkout (an image without .git)
    try:
        assert tracking.code_version() == f"src.{tracking.source_hash()[:12]}"
        settings_env(MLOPS_CODE_VERSION="image-2026.11.30")
        tracking.code_version.cache_clear()
        assert tracking.code_version() == "image-2026.11.30"
    finally:
        tracking.code_version.cache_clear()
    assert len(tracking.source_hash()) == 64 and tracking.source_hash() == tracking.source_hash()


def test_the_fingerprint_changes_with_data_code_or_config(settings_env, monkeypatch):
    from mlops_onnx import fingerprint, tracking
    from mlops_onnx.models.fashion import SPEC

    settings_env(MLOPS_CODE_VERSION="v1")
    tracking.code_version.cache_clear()
    try:
        base = fingerprint.fingerprint(SPEC, "a" * 64, settings_env())
        assert base == fingerprint.fingerprint(SPEC, "a" * 64, settings_env())  # stable
        assert fingerprint.fingerprint(SPEC, "b" * 64, settings_env())["fingerprint"] != base["fingerprint"]
        changed = fingerprint.fingerprint(SPEC, "a" * 64, settings_env(MLOPS_EPOCHS="7"))
        assert changed["config_hash"] != base["config_hash"] and changed["fingerprint"] != base["fingerprint"]
        monkeypatch.setenv("MLOPS_CODE_VERSION", "v2")
        tracking.code_version.cache_clear()
        code = fingerprint.fingerprint(SPEC, "a" * 64, settings_env())
        assert code["code_version"] == "v2" and code["fingerprint"] != base["fingerprint"]
    finally:
        tracking.code_version.cache_clear()


def test_serving_settings_have_defaults_and_name_bad_values(settings_env):
    settings = settings_env()
    assert (settings.serve_model, settings.serve_alias, settings.serve_poll_seconds) == (None, "champion", 30.0)
    assert (settings.serve_max_items, settings.serve_max_bytes, settings.serve_max_text_chars) == (64, 1 << 20, 100_000)
    assert (settings.serve_batching, settings.serve_batch_wait_ms, settings.serve_batch_max_items) == (False, 0.0, 32)
    assert settings_env(MLOPS_SERVE_BATCHING="1", MLOPS_SERVE_MAX_BYTES="4096").serve_max_bytes == 4096
    assert get_settings().serve_batching is True
    with pytest.raises(SettingsError, match="MLOPS_SERVE_MAX_BYTES='1MB'"):
        settings_env(MLOPS_SERVE_MAX_BYTES="1MB")
    with pytest.raises(SettingsError, match="MLOPS_SERVE_BATCHING='sometimes'"):
        settings_env(MLOPS_SERVE_MAX_BYTES="", MLOPS_SERVE_BATCHING="sometimes")


def test_validation_thresholds_and_synthetic_size_do_not_follow_the_training_profile(settings_env):
    thresholds = ("fashion_min_train_rows", "fashion_min_test_rows", "news_min_rows", "stock_min_rows")
    quick, full = settings_env(MLOPS_PROFILE="quick"), settings_env(MLOPS_PROFILE="full")
    assert [getattr(quick, name) for name in thresholds] == [getattr(full, name) for name in thresholds]
    assert (quick.stock_min_tickers, full.stock_min_tickers) == (3, 3)
    assert settings_env(MLOPS_STOCK_MIN_ROWS="400", MLOPS_NEWS_MIN_ROWS="50").stock_min_rows == 400
    assert (quick.synthetic_size, full.synthetic_size) == ("small", "demo")
    assert settings_env(MLOPS_PROFILE="full", MLOPS_SYNTHETIC_SIZE="kaggle").synthetic_size == "kaggle"
    assert settings_env(MLOPS_SYNTHETIC_SCALE="0.25").synthetic_scale == 0.25
    with pytest.raises(SettingsError, match="MLOPS_SYNTHETIC_SCALE=2.0"):
        settings_env(MLOPS_SYNTHETIC_SCALE="2")
    with pytest.raises(SettingsError, match="MLOPS_SYNTHETIC_SIZE='huge'"):
        settings_env(MLOPS_SYNTHETIC_SIZE="huge")


def test_stock_test_days_have_their_own_setting(settings_env):
    from mlops_onnx.models.fashion import SPEC as FASHION
    from mlops_onnx.models.stocks import SPEC as STOCKS

    settings = settings_env(MLOPS_SYNTHETIC_SIZE="", MLOPS_MAX_TEST_ROWS="300", MLOPS_MAX_TEST_DAYS="20")
    assert (settings.max_test_rows, settings.max_test_days) == (300, 20)
    assert STOCKS.train_config(settings).max_test_days == 20
    assert FASHION.train_config(settings).max_test_rows == 300
    assert STOCKS.train_config(settings_env(MLOPS_MAX_TEST_DAYS="")).max_test_days is None


def test_importing_the_specs_loads_neither_tensorflow_nor_torch():
    import subprocess
    import sys

    code = (
        "import sys, mlops_onnx.models.stocks, mlops_onnx.models.fake_news, mlops_onnx.models.fashion\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'torch', 'tf2onnx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_parity_compares_2000_rows_by_default_and_every_row_when_the_cap_is_0_or_empty(settings_env, monkeypatch):
    monkeypatch.delenv("MLOPS_PARITY_MAX_ROWS", raising=False)
    assert settings_env().parity_max_rows == 2000
    assert settings_env(MLOPS_PARITY_MAX_ROWS="300").parity_max_rows == 300
    assert settings_env(MLOPS_PARITY_MAX_ROWS="0").parity_max_rows is None
    assert settings_env(MLOPS_PARITY_MAX_ROWS="").parity_max_rows is None
    with pytest.raises(SettingsError, match="MLOPS_PARITY_MAX_ROWS=-5"):
        settings_env(MLOPS_PARITY_MAX_ROWS="-5")
