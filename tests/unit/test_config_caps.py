"""A capped-rows run (MLOPS_MAX_TRAIN_ROWS) is a different configuration: its cap is in the resolved config
every candidate's run records and hashes into its fingerprint, so a capped night never passes for a full one."""

import pytest

from mlops_onnx import fingerprint
from mlops_onnx.catalog import PIPELINES
from mlops_onnx.models import load_spec

CANDIDATES = [(model, c.architecture) for model, pipeline in PIPELINES.items() for c in pipeline.candidates]


@pytest.mark.parametrize("profile", ["quick", "full"])
@pytest.mark.parametrize(("model", "architecture"), CANDIDATES)
def test_the_train_row_cap_is_in_the_resolved_config_and_changes_its_hash(settings_env, model, architecture, profile):
    spec = load_spec(model, architecture)
    configs = {
        cap: spec.resolved_config(settings_env(MLOPS_PROFILE=profile, MLOPS_MAX_TRAIN_ROWS=str(cap)))
        for cap in (1234, 4321)
    }
    for cap, config in configs.items():
        capped_fields = [name for name, value in config["train"].items() if value == cap]
        assert capped_fields, f"{model}/{architecture}: no training field holds MLOPS_MAX_TRAIN_ROWS={cap}"
    assert fingerprint.config_hash(configs[1234]) != fingerprint.config_hash(configs[4321])
