"""The MobileNetV2 candidate for Fashion-MNIST: torchvision's layout, ImageNet weights that really land,
real training on the sample, and a real torch.onnx export run in ONNX Runtime."""

import logging

import numpy as np
import pytest
import torch
from conftest import HAS_SHARED_DATA, SHARED_DATA

from mlops_onnx.models.fashion import SPEC as CNN
from mlops_onnx.models.fashion_mobilenet import SPEC
from mlops_onnx.models.fashion_mobilenet_net import FashionMobileNetV2
from mlops_onnx.runtime import make_session, run_batched
from mlops_onnx.snapshots import Snapshot

TORCHVISION_MOBILENET_V2_PARAMETERS = 3_504_872  # torchvision.models.mobilenet_v2(): 1000 classes, width 1.0


def imagenet_file(path, width_mult: float = 1.0, seed: int = 0):
    """An ImageNet-shaped state dict (3 channels, 1000 classes, torchvision's keys), with BatchNorm running
    statistics that differ from a fresh network's, written to `path`."""
    torch.manual_seed(seed)
    model = FashionMobileNetV2(classes=1000, width_mult=width_mult, channels=3)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            value.copy_(torch.rand_like(value) + 0.5)
    torch.save(state, path)
    return state


def test_the_network_is_torchvisions_mobilenet_v2_with_one_channel_in_and_ten_classes_out():
    imagenet = FashionMobileNetV2(classes=1000, channels=3)
    assert sum(p.numel() for p in imagenet.parameters()) == TORCHVISION_MOBILENET_V2_PARAMETERS
    keys = list(imagenet.state_dict())
    assert keys[:2] == ["features.0.0.weight", "features.0.1.weight"]
    assert {"features.1.conv.0.0.weight", "features.2.conv.3.running_var", "features.18.0.weight"} <= set(keys)
    assert keys[-2:] == ["classifier.1.weight", "classifier.1.bias"]

    model = SPEC.network().eval()
    assert model.features[0][0].weight.shape == (32, 1, 3, 3)
    pixels = torch.randint(0, 256, (3, 1, 28, 28)).float()
    with torch.inference_mode():
        assert model(pixels).shape == (3, 10)
        assert model.features(pixels).shape == (3, 1280, 4, 4)  # total stride 8, not ImageNet's 32


def test_imagenet_weights_from_a_file_land_in_the_network(settings_env, tmp_path):
    state = imagenet_file(tmp_path / "mobilenet_v2_imagenet.pth")
    settings = settings_env(MLOPS_FASHION_PRETRAINED_WEIGHTS=str(tmp_path / "mobilenet_v2_imagenet.pth"))
    model, params = SPEC.initial_network(settings)
    loaded = model.state_dict()
    assert params["pretrained"] is True and params["width_mult"] == 1.0
    assert torch.equal(loaded["features.0.0.weight"], state["features.0.0.weight"].sum(1, keepdim=True))
    for key in ("features.7.conv.1.0.weight", "features.7.conv.1.1.running_var", "features.18.0.weight"):
        assert torch.equal(loaded[key], state[key]), key
    assert loaded["classifier.1.weight"].shape == (10, 1280)  # the ImageNet head is replaced
    assert not torch.equal(
        loaded["features.3.conv.0.0.weight"], SPEC.network().state_dict()["features.3.conv.0.0.weight"]
    )


def test_imagenet_weights_from_a_url_go_through_torch_hubs_cache(settings_env, tmp_path):
    state = imagenet_file(tmp_path / "mobilenet_v2-imagenet.pth", seed=1)
    settings = settings_env(MLOPS_FASHION_PRETRAINED_WEIGHTS=(tmp_path / "mobilenet_v2-imagenet.pth").as_uri())
    model, params = SPEC.initial_network(settings)
    assert params["pretrained"] is True
    assert torch.equal(model.state_dict()["features.16.conv.2.weight"], state["features.16.conv.2.weight"])
    assert (settings.cache_dir / "torch-hub" / "mobilenet_v2-imagenet.pth").is_file()


def test_weights_of_another_width_are_refused_naming_the_file(settings_env, tmp_path):
    imagenet_file(tmp_path / "half_width.pth", width_mult=0.5)
    settings = settings_env(MLOPS_FASHION_PRETRAINED_WEIGHTS=str(tmp_path / "half_width.pth"))
    with pytest.raises(ValueError, match=r"half_width\.pth do not fit a width-1\.0.*features\.0\.0\.weight"):
        SPEC.initial_network(settings)


def test_a_missing_weights_file_is_an_error_not_a_silent_scratch_run(settings_env, tmp_path):
    settings = settings_env(MLOPS_FASHION_PRETRAINED_WEIGHTS=str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        SPEC.initial_network(settings)


def test_without_weights_it_trains_from_scratch_and_says_so_loudly(settings_env, caplog):
    settings = settings_env()
    with caplog.at_level(logging.WARNING, logger="mlops_onnx.models.fashion_mobilenet"):
        _, params = SPEC.initial_network(settings)
    assert params["pretrained"] is False
    assert any("FROM SCRATCH" in r.message and r.levelno == logging.WARNING for r in caplog.records)


def test_the_candidates_share_one_spec_but_for_the_network():
    assert SPEC.name == CNN.name and SPEC.dataset == CNN.dataset
    assert (SPEC.architecture, CNN.architecture) == ("mobilenet_v2", "cnn")
    assert type(SPEC).train is type(CNN).train and type(SPEC).export_onnx is type(CNN).export_onnx


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory):
    """The shared Fashion-MNIST sample when present, else synthetic images in its layout."""
    if HAS_SHARED_DATA:
        return SHARED_DATA / "fashionmnist"
    from mlops_onnx.sources.synthetic import write_fashion

    folder = tmp_path_factory.mktemp("fashion")
    write_fashion(folder, np.random.default_rng(0), (300, 100))
    return folder


@pytest.mark.slow  # one MobileNetV2 step and a dynamo export: about 2 minutes on two busy cores
def test_mobilenet_trains_and_its_onnx_export_matches_torch_at_any_batch(settings_env, fashion_folder, tmp_path):
    settings = settings_env(
        MLOPS_EPOCHS="1", MLOPS_MAX_TRAIN_ROWS="100", MLOPS_MAX_TEST_ROWS="16", MLOPS_MAX_TRAIN_BATCHES="1"
    )
    snapshot = Snapshot("fashion_mnist", "0" * 64, fashion_folder, {})
    epochs = []
    result = SPEC.train(snapshot, tmp_path, settings, lambda epoch, metrics: epochs.append(metrics))
    assert result.params["architecture"] == "mobilenet_v2" and result.params["pretrained"] is False
    # ImageNet's count, less its 1000-class head and two of the stem's three input channels, plus a 10-class head
    assert result.params["parameters"] == TORCHVISION_MOBILENET_V2_PARAMETERS - 1281 * 1000 - 32 * 2 * 9 + 1281 * 10
    assert len(epochs) == 1 and np.isfinite(epochs[0]["train_loss"])
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0 and result.metrics["test_rows"] == 16

    onnx_path = tmp_path / "model_fp32.onnx"
    SPEC.export_onnx(result.checkpoint, onnx_path)
    rows = SPEC.evaluation_data(snapshot, settings, tmp_path)
    native = SPEC.native_predictors(result.checkpoint, settings)["native_eager"](rows.inputs)
    session = make_session(onnx_path)
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a named dynamic axis, not a fixed size
    assert np.abs(run_batched(session, rows.inputs) - native).max() <= 1e-4
    for batch in (1, 7):
        out = session.run(None, {"image": rows.inputs[:batch]})[0]
        np.testing.assert_allclose(out, native[:batch], atol=1e-4)
