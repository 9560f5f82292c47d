"""The `synthetic` source: data generated with the exact Kaggle schema, deterministic per seed.

The data is learnable (each class has its own shape) but not trivially so: as in the real datasets,
some classes look alike and a few labels are wrong, so the models land where they do on real data
(fashion ~0.9 accuracy, fake news ~0.95) and parity and quantization see uncertain outputs too.
`MLOPS_SYNTHETIC_SIZE` picks the size: `small` (tests), `demo` (a first `make demo` in minutes) or
`kaggle` (the real datasets' sizes and layout, times MLOPS_SYNTHETIC_SCALE: `make scale` measures the
pipelines on it). A generated dataset is kept under MLOPS_HOME (`cache/synthetic/`) and copied from
there on later nights: the kaggle size takes minutes to write, and the same settings give the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlops_onnx.datasets import FASHION_MNIST, DatasetSpec
from mlops_onnx.settings import Settings
from mlops_onnx.sources.errors import SourceError

# (train, test) images per MLOPS_SYNTHETIC_SIZE; `kaggle` is the real dataset's size (times the scale).
FASHION_ROWS = {"small": (2000, 500), "demo": (2000, 1000), "kaggle": (60000, 10000)}
CHUNK = 10_000  # images generated at once: memory stays flat at the kaggle size
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


_NUMBERS = np.array([str(i) for i in range(256)], dtype=object)  # a label or a pixel value, as CSV text


def write_fashion(dest: Path, rng: np.random.Generator, rows: tuple[int, int]) -> dict:
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    dest.mkdir(parents=True, exist_ok=True)
    for name, n in zip(FASHION_MNIST.file_patterns, rows):
        with (dest / name).open("w", encoding="ascii", newline="\n") as handle:
            handle.write(header + "\n")
            for start in range(0, n, CHUNK):
                table = _NUMBERS[_fashion_rows(min(CHUNK, n - start), rng)]
                handle.writelines(",".join(row) + "\n" for row in table.tolist())
    return {"rows": dict(zip(FASHION_MNIST.file_patterns, rows))}


def generate_fashion(dest: Path, rng: np.random.Generator, settings: Settings) -> dict:
    return write_fashion(dest, rng, scaled(FASHION_ROWS, settings))


def scaled(sizes: dict[str, tuple[int, ...]], settings: Settings) -> tuple[int, ...]:
    """The row counts of MLOPS_SYNTHETIC_SIZE; the `kaggle` ones times MLOPS_SYNTHETIC_SCALE (at least 20 each)."""
    counts = sizes[settings.synthetic_size]
    if settings.synthetic_size != "kaggle":
        return counts
    return tuple(max(20, round(n * settings.synthetic_scale)) for n in counts)


Generator = Callable[[Path, np.random.Generator, Settings], dict]

# dataset name -> "module:function" writing that dataset's files (imported only when used)
GENERATORS: dict[str, str] = {
    "fashionmnist": "mlops_onnx.sources.synthetic:generate_fashion",
    "fake_news": "mlops_onnx.sources.synthetic_news:generate_news",
    "liar": "mlops_onnx.sources.synthetic_news:generate_liar",
    "stocks": "mlops_onnx.sources.synthetic_stocks:generate_stocks",
}


def fetch_synthetic(dataset: DatasetSpec, dest: Path, settings: Settings) -> dict:
    """Copy the dataset's files into `dest` from the cache, generating them there first if needed."""
    import importlib

    target = GENERATORS.get(dataset.name)
    if target is None:
        raise SourceError(f"synthetic source: no generator for dataset {dataset.name!r}")
    module, function = target.split(":")
    generator: Generator = getattr(importlib.import_module(module), function)
    folder = _cached(dataset.name, generator, settings)
    details = json.loads((folder / DETAILS).read_text())
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != DETAILS:
            copy = dest / path.relative_to(folder)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)  # a copy, not a link: nothing done to a snapshot reaches the cache
    return {"seed": settings.seed, "size": settings.synthetic_size, **details}


DETAILS = ".details.json"  # written last: a cache folder without it was never finished


def _cached(name: str, generator: Generator, settings: Settings) -> Path:
    """The cache folder of this dataset, size, scale, seed and generator code: generated on first use, into a
    private folder renamed into place, so a crash or a second writer never leaves half a dataset there."""
    code = hashlib.sha256(Path(sys.modules[generator.__module__].__file__).read_bytes()).hexdigest()[:12]
    scale = f"x{settings.synthetic_scale:g}" if settings.synthetic_size == "kaggle" else ""
    folder = settings.cache_dir / "synthetic" / f"{name}-{settings.synthetic_size}{scale}-seed{settings.seed}-{code}"
    if (folder / DETAILS).is_file():
        return folder
    private = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
    private.mkdir(parents=True)
    try:
        details = generator(private, np.random.default_rng(settings.seed), settings)
        (private / DETAILS).write_text(json.dumps(details, default=str))
        os.replace(private, folder)
    except OSError:
        if not (folder / DETAILS).is_file():  # not another writer's finished folder: a real failure
            raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return folder
