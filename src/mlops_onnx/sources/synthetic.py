"""The `synthetic` source: data generated with the exact Kaggle schema, deterministic per seed.

The data is learnable (each class has its own shape) but not trivially so: as in the real datasets,
some classes look alike and a few labels are wrong, so the models land where they do on real data
(fashion ~0.9 accuracy, fake news ~0.95) and parity and quantization see uncertain outputs too.
`MLOPS_SYNTHETIC_SIZE` picks the size: `small` (tests), `demo` (a first `make demo` in minutes) or
`full` (Fashion-MNIST's real 60,000 + 10,000 images).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlops_onnx.datasets import FASHION_MNIST, DatasetSpec
from mlops_onnx.settings import Settings
from mlops_onnx.sources.errors import SourceError

# (train, test) images per MLOPS_SYNTHETIC_SIZE; `full` is the real dataset's size.
FASHION_ROWS = {"small": (2000, 500), "demo": (2000, 1000), "full": (60000, 10000)}
# Each class's look-alike (T-shirt/shirt, pullover/coat, dress/coat, sandal/sneaker/ankle boot, bag/coat): an
# image is its class's silhouette blended with up to MAX_BLEND of its look-alike's, so near the top of that
# range the two are hard to tell apart, as in the real Fashion-MNIST.
LOOK_ALIKE = (6, 3, 4, 4, 2, 7, 0, 9, 4, 7)
MAX_BLEND = 0.55
LABEL_NOISE = 0.02  # share of images labelled with a random class


def _fashion_templates() -> np.ndarray:
    """Ten 28x28 silhouettes, one per Fashion-MNIST class (0 T-shirt ... 9 ankle boot)."""
    t = np.zeros((10, 28, 28), dtype=np.float32)
    t[0, 6:10, 4:24] = 1
    t[0, 10:24, 9:19] = 1  # noqa: E702  T-shirt: sleeves + body
    t[1, 4:26, 8:13] = 1
    t[1, 4:26, 15:20] = 1
    t[1, 4:8, 8:20] = 1  # noqa: E702  trouser
    t[2, 5:24, 3:25] = 1
    t[2, 5:9, 12:16] = 0  # noqa: E702  pullover with neckline
    for row in range(4, 26):  # dress: widening triangle
        half = 3 + (row - 4) // 2
        t[3, row, 14 - half : 14 + half] = 1
    t[4, 3:26, 5:23] = 1
    t[4, 3:26, 13:15] = 0  # noqa: E702  coat: open front
    t[5, 18:20, 2:26] = 1
    t[5, 22:24, 2:26] = 1
    t[5, 14:16, 6:22] = 1  # noqa: E702  sandal straps
    t[6, 5:24, 6:22] = 1
    t[6, 5:12, 12:16] = 0.3  # noqa: E702  shirt with collar
    t[7, 17:24, 2:26] = 1
    t[7, 13:17, 14:26] = 1  # noqa: E702  sneaker
    t[8, 9:25, 4:24] = 1
    t[8, 4:9, 9:11] = 1
    t[8, 4:9, 17:19] = 1
    t[8, 4:6, 9:19] = 1  # noqa: E702  bag
    t[9, 3:24, 14:22] = 1
    t[9, 18:25, 3:22] = 1  # noqa: E702  ankle boot
    return t


def _fashion_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    templates = _fashion_templates()
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    blend = rng.uniform(0, MAX_BLEND, size=(n, 1, 1)).astype(np.float32)
    images = templates[labels] * (1 - blend) + templates[np.array(LOOK_ALIKE)[labels]] * blend
    images *= rng.uniform(0.5, 1.0, size=(n, 1, 1)).astype(np.float32)
    for shift_axis in (1, 2):
        shifts = rng.integers(-3, 4, size=n)
        for s in np.unique(shifts):
            idx = shifts == s
            images[idx] = np.roll(images[idx], s, axis=shift_axis)
    images = images * 230 + rng.normal(0, 40, size=images.shape)
    pixels = np.clip(np.rint(images), 0, 255).astype(np.int64).reshape(n, 784)
    noisy = rng.random(n) < LABEL_NOISE
    labels = np.where(noisy, rng.integers(0, 10, size=n), labels)
    return np.column_stack([labels, pixels])


def write_fashion(dest: Path, rng: np.random.Generator, rows: tuple[int, int]) -> dict:
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    for name, n in zip(FASHION_MNIST.file_patterns, rows):
        np.savetxt(dest / name, _fashion_rows(n, rng), fmt="%d", delimiter=",", header=header, comments="")
    return {"rows": dict(zip(FASHION_MNIST.file_patterns, rows))}


def generate_fashion(dest: Path, rng: np.random.Generator, settings: Settings) -> dict:
    return write_fashion(dest, rng, FASHION_ROWS[settings.synthetic_size])


Generator = Callable[[Path, np.random.Generator, Settings], dict]

# dataset name -> "module:function" writing that dataset's files (imported only when used)
GENERATORS: dict[str, str] = {
    "fashionmnist": "mlops_onnx.sources.synthetic:generate_fashion",
    "fake_news": "mlops_onnx.sources.synthetic_news:generate_news",
    "liar": "mlops_onnx.sources.synthetic_news:generate_liar",
    "stocks": "mlops_onnx.sources.synthetic_stocks:generate_stocks",
}


def fetch_synthetic(dataset: DatasetSpec, dest: Path, settings: Settings) -> dict:
    import importlib

    target = GENERATORS.get(dataset.name)
    if target is None:
        raise SourceError(f"synthetic source: no generator for dataset {dataset.name!r}")
    module, function = target.split(":")
    generator: Generator = getattr(importlib.import_module(module), function)
    rng = np.random.default_rng(settings.seed)
    details = generator(dest, rng, settings)
    return {"seed": settings.seed, "size": settings.synthetic_size, **details}
