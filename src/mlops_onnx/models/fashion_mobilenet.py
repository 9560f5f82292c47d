"""Fashion-MNIST, MobileNetV2 candidate: the CNN's data, training loop, evaluation and export, another network.

The network (`fashion_mobilenet_net.FashionMobileNetV2`) is torchvision's MobileNetV2 at width 1.0 with
the stem and the first stride-2 stage at stride 1, so 28x28 images end at 4x4 rather than 1x1; it takes
raw pixels like the CNN and exports with a dynamic batch. Training starts from ImageNet weights when
MLOPS_FASHION_PRETRAINED_WEIGHTS names a torchvision-layout state dict (file or URL), and from scratch,
with a warning, when it does not; the run's `pretrained` param says which.

Measured on the shared sample, quick profile (1,350 training rows), seed 1, two busy CPU cores: 2,236,106
parameters (the CNN: 431,082); 386 and 369 s an epoch (the CNN: 36-51 s); from scratch, validation accuracy
stayed at 0.10 after 2 epochs (train 0.53) and test accuracy was 0.08 (the CNN after 3 epochs: 0.75-0.78),
so this candidate needs ImageNet weights or many more epochs (a GPU) before it competes; export 70 s, ONNX
fp32 vs PyTorch max abs diff 1.4e-6 on 600 test images.
"""

from __future__ import annotations

import logging
from typing import Any

from mlops_onnx.models.fashion import FashionSpec
from mlops_onnx.settings import Settings

log = logging.getLogger(__name__)


class FashionMobileNetSpec(FashionSpec):
    architecture = "mobilenet_v2"
    # ImageNet weights exist for width 1.0 only: another width trains from scratch or fails to load them.
    width_mult = 1.0

    def network(self):
        from mlops_onnx.models.fashion_mobilenet_net import FashionMobileNetV2

        return FashionMobileNetV2(width_mult=self.width_mult)

    def initial_network(self, settings: Settings) -> tuple[Any, dict[str, Any]]:
        from mlops_onnx.models.fashion_mobilenet_net import TOTAL_STRIDE, load_imagenet_weights, read_state_dict

        model = self.network()
        params: dict[str, Any] = {"width_mult": self.width_mult, "total_stride": TOTAL_STRIDE}
        source = settings.fashion_pretrained_weights
        if source is None:
            log.warning(
                "!!! MobileNetV2 trains FROM SCRATCH: MLOPS_FASHION_PRETRAINED_WEIGHTS is not set, so no ImageNet "
                "weights are loaded (pretrained=false). Set it to a torchvision MobileNetV2 state dict (file or URL)."
            )
            return model, params | {"pretrained": False}
        load_imagenet_weights(model, read_state_dict(source, settings.cache_dir / "torch-hub"), source)
        log.info("MobileNetV2 starts from ImageNet weights %s (first convolution summed over RGB)", source)
        return model, params | {"pretrained": True, "pretrained_weights": source}

    def resolved_config(self, settings: Settings) -> dict[str, Any]:
        """Other weights to start from retrain, as other data or config would."""
        return super().resolved_config(settings) | {
            "architecture": self.architecture,
            "width_mult": self.width_mult,
            "pretrained_weights": settings.fashion_pretrained_weights,
        }


SPEC = FashionMobileNetSpec()
