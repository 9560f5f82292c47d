import json

import pytest

from mlops_onnx.settings import SettingsError


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
