"""Sentence embeddings computed once per text: the MiniLM candidate's cache of its frozen encoder's outputs.

Encoding is nearly all of the candidate's training time (25-40 ms an article on two cores, about an hour
for the full Kaggle set), and a frozen encoder gives a text the same embedding every night. So each
embedding is kept, keyed by the sha256 of the text's token ids (exactly what the encoder reads), under a
folder named by the encoder's version (`encoder_version`: its weights, its tokenizer, the max length, the
pad id and the pooling); a night on changed data encodes only the texts it has not seen.

Layout, under `<MLOPS_HOME>/cache/embeddings/<encoder version>/`:

    <sha256>.npz    a shard: `keys` [n, 32] uint8 (the token-id hashes), `embeddings` [n, width] float32

Shards are only ever added, each written to a temporary file and renamed into place, and named by the
sha256 of their bytes. A shard whose bytes do not match its name, or whose arrays have the wrong shape or
a non-finite value, is deleted when the cache is opened: its texts are encoded again, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlops_onnx.snapshots import file_sha256

log = logging.getLogger(__name__)

KEY_BYTES = 32  # a sha256 digest
_SHARD_NAME = re.compile(r"[0-9a-f]{64}\.npz")


def encoder_version(encoder_state: dict, tokenizer_json: str, max_length: int, pad_id: int, pooling: str) -> str:
    """sha256 over everything that decides a text's embedding besides its token ids: the encoder's tensors
    (name, dtype, shape, bytes: about 0.1 s for MiniLM's 90 MB), its tokenizer, the max length, the pad id
    and the pooling."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(encoder_state.items()):
        values = tensor.detach().cpu().contiguous().view(-1)
        digest.update(f"{name}\0{values.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(values.view(torch.uint8).numpy().tobytes())  # raw bytes: any dtype, bfloat16 included
    digest.update(f"{tokenizer_json}\0{max_length}\0{pad_id}\0{pooling}".encode())
    return digest.hexdigest()


def text_keys(ids: np.ndarray, pad_id: int) -> list[bytes]:
    """The sha256 of each row's real token ids (its right padding dropped): the same text gives the same key
    whatever the longest text of its batch."""
    lengths = (ids != pad_id).sum(axis=1)
    return [
        hashlib.sha256(np.ascontiguousarray(row[:length], dtype=np.int64).tobytes()).digest()
        for row, length in zip(ids, lengths, strict=True)
    ]


class EmbeddingCache:
    """The verified shards of one encoder version's folder, in memory, and the shards this process adds."""

    def __init__(self, folder: Path, width: int) -> None:
        self.folder, self.width = Path(folder), width
        self.hits = self.misses = 0  # rows not encoded (their text was known), texts encoded
        self._known: dict[bytes, np.ndarray] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        for shard in sorted(self.folder.iterdir()):
            if not _SHARD_NAME.fullmatch(shard.name):
                continue  # a writer's temporary file, or anything else that is not a shard
            problem = self._load(shard)
            if problem:
                log.warning("embedding cache: discarding %s (%s); its texts will be encoded again", shard, problem)
                shard.unlink(missing_ok=True)

    def _load(self, shard: Path) -> str | None:
        """Add a shard's rows if it passes every check; else say what is wrong with it."""
        if file_sha256(shard) != shard.stem:
            return "its bytes do not match its name"
        try:
            with np.load(shard) as arrays:  # numpy refuses pickled (object) arrays by default
                keys, embeddings = arrays["keys"], arrays["embeddings"]
        except Exception as exc:  # bytes that are not our npz, whatever numpy makes of them, are not a shard
            return f"unreadable: {type(exc).__name__}: {exc}"
        if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != KEY_BYTES:
            return f"keys {keys.dtype} {keys.shape}, expected uint8 [n, {KEY_BYTES}]"
        if embeddings.dtype != np.float32 or embeddings.shape != (len(keys), self.width):
            return f"embeddings {embeddings.dtype} {embeddings.shape}, expected float32 {(len(keys), self.width)}"
        if not np.all(np.isfinite(embeddings)):
            return "non-finite embeddings"
        self._known.update(zip((k.tobytes() for k in keys), embeddings, strict=True))
        return None

    def embed(self, ids: np.ndarray, pad_id: int, encode: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Embeddings [n, width] of the rows of `ids` (token ids, right-padded with `pad_id`): `encode` runs
        once on the rows of the texts the cache lacks (each distinct text once), and they are saved as a shard."""
        keys = text_keys(ids, pad_id)
        new: dict[bytes, int] = {}  # a missing text's key -> its first row
        for row, key in enumerate(keys):
            if key not in self._known:
                new.setdefault(key, row)
        if new:
            encoded = np.asarray(encode(ids[list(new.values())]), dtype=np.float32)
            self._write_shard(np.frombuffer(b"".join(new), np.uint8).reshape(-1, KEY_BYTES), encoded)
            self._known.update(zip(new, encoded, strict=True))
        self.hits += len(keys) - len(new)
        self.misses += len(new)
        if not keys:
            return np.zeros((0, self.width), np.float32)
        return np.stack([self._known[key] for key in keys])

    def _write_shard(self, keys: np.ndarray, embeddings: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, keys=keys, embeddings=embeddings)
        data = buffer.getvalue()
        target = self.folder / f"{hashlib.sha256(data).hexdigest()}.npz"
        tmp = self.folder / f".{target.name}.{uuid.uuid4().hex}.tmp"
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)  # readers see the whole shard or none of it
