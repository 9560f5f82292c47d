"""What a spec reads is what its fingerprint hashes: every Settings field a candidate's code reads changes its
config hash, and every framework its code imports has its installed version in the hashed config.

The fields a spec reads are found two ways that cannot fall behind the code: `settings.<field>` in the source
of the spec's modules (its class's module, the modules of the classes it inherits from, and the model modules
those import, read with `ast`), and the fields its `resolved_config` reads by name (`profile_config`'s
overrides), recorded by a proxy."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import typing
from pathlib import Path

import pytest

from mlops_onnx.catalog import PIPELINES
from mlops_onnx.fingerprint import config_hash
from mlops_onnx.models import load_spec
from mlops_onnx.settings import Settings

SPECS = [(p.model, c.architecture) for p in PIPELINES.values() for c in p.candidates]
# Read by a spec, and rightly not hashed: none of them changes what training produces or how it is judged.
NOT_HASHED = {
    "bench_threads": "threads of the native predictors the benchmarks time",
    "drift_max_rows": "the drift report's sample size",
    "cache_dir": "where downloaded weights are cached (which weights is hashed)",
}
# Import names of the libraries that build or export a model, as `ModelSpec.toolchain` names them.
FRAMEWORKS = {"torch", "torchvision", "tensorflow", "keras", "tf2onnx", "transformers", "tokenizers", "sklearn"}
FRAMEWORKS |= {"skl2onnx"}
FRAMEWORKS |= {"onnx", "onnxruntime", "onnxscript"}


def spec_modules(spec) -> list[Path]:
    """The source files of the spec's classes and of the `mlops_onnx.models` modules they import, transitively."""
    seen: dict[str, Path] = {}
    pending = [cls.__module__ for cls in type(spec).__mro__ if cls.__module__.startswith("mlops_onnx.models")]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen[name] = Path(inspect.getfile(importlib.import_module(name)))
        for node in ast.walk(ast.parse(seen[name].read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlops_onnx.models"):
                pending.append(node.module)
    return list(seen.values())


def settings_in_source(spec) -> set[str]:
    return {
        node.attr
        for path in spec_modules(spec)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "settings"
    }


def imported_frameworks(spec) -> set[str]:
    names = set()
    for path in spec_modules(spec):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names & FRAMEWORKS


class RecordingSettings:
    """Settings that note every attribute read through them."""

    def __init__(self, settings: Settings):
        self._settings, self.read = settings, set()

    def __getattr__(self, name: str):
        self.read.add(name)
        return getattr(self._settings, name)


def settings_read(spec, settings: Settings) -> set[str]:
    recorder = RecordingSettings(settings)
    spec.resolved_config(recorder)
    return settings_in_source(spec) | recorder.read


def another_value(settings: Settings, name: str, spec):
    """A valid value of the field other than its current one."""
    value = getattr(settings, name)
    special = {
        "profile": "full" if value == "quick" else "quick",
        "gate_overrides": {spec.name: 0.5},
        "stock_tickers": ("AAPL", "MSFT"),
    }
    if name in special:
        return special[name]
    kind = typing.get_type_hints(Settings)[name]
    base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
    if value is None:
        return {int: 7, float: 0.5, str: "changed"}[base]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 7 if value else 0.123
    if isinstance(value, str):
        return value + "-changed"
    raise AssertionError(f"no other value known for Settings.{name} = {value!r}")


@pytest.mark.parametrize(("model", "architecture"), SPECS)
def test_every_setting_a_spec_reads_changes_its_config_hash(settings_env, model, architecture):
    spec = load_spec(model, architecture)
    settings = settings_env()
    read = settings_read(spec, settings) - set(NOT_HASHED)
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert read <= fields, f"{spec.architecture} reads {read - fields}: name them in NOT_HASHED or hash them"
    assert {"seed", "profile", "promotion_alpha", "gate_overrides"} <= read  # the scan sees them
    # MLOPS_EPOCHS, wherever training has epochs (a scikit-learn floor fits to convergence instead)
    assert "epochs" in read or "epochs" not in spec.resolved_config(settings)["train"]
    base = config_hash(spec.resolved_config(settings))

    def changed(name: str) -> Settings:
        return dataclasses.replace(settings, **{name: another_value(settings, name, spec)})

    unhashed = [name for name in sorted(read) if config_hash(spec.resolved_config(changed(name))) == base]
    assert not unhashed, f"{model}/{architecture} reads {unhashed} but its config hash does not change with them"


def test_the_settings_the_issue_named_are_hashed(settings_env):
    settings = settings_env()
    minilm = load_spec("fake_news_classifier", "minilm")
    assert "text_encoder" in settings_read(minilm, settings)
    other_encoder = dataclasses.replace(settings, text_encoder="sentence-transformers/all-MiniLM-L12-v2")
    assert config_hash(minilm.resolved_config(other_encoder)) != config_hash(minilm.resolved_config(settings))
    stocks = load_spec("stock_forecaster")
    shorter = dataclasses.replace(settings, stock_min_rows=100)
    assert config_hash(stocks.resolved_config(shorter)) != config_hash(stocks.resolved_config(settings))


@pytest.mark.parametrize(("model", "architecture"), SPECS)
def test_the_frameworks_a_spec_imports_are_versioned_in_its_config(settings_env, model, architecture):
    spec = load_spec(model, architecture)
    imported = imported_frameworks(spec)
    assert imported, f"no framework import found for {model}/{architecture}: the scan is broken"
    assert imported <= set(spec.toolchain), f"{model}/{architecture} imports {imported - set(spec.toolchain)}"
    versions = spec.resolved_config(settings_env())["toolchain"]
    assert set(versions) == set(spec.toolchain)
    assert all("==" in version for version in versions.values()), versions  # every one is installed


def test_a_framework_upgrade_changes_the_config_hash(settings_env, monkeypatch):
    from importlib import metadata

    spec = load_spec("fashion_mnist_classifier")
    settings = settings_env()
    base = config_hash(spec.resolved_config(settings))
    installed = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "99.0" if name == "torch" else installed(name))
    assert config_hash(spec.resolved_config(settings)) != base
