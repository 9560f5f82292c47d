"""The MiniLM candidate's embeddings: computed once per text across nights (`embedding_cache`), and encoded in
length-sorted batches cut to their longest row with the same result as the padded batches.

A tiny randomly initialised BERT stands in for MiniLM: the cache and the padding do not depend on its size."""

import hashlib
import io

import numpy as np
import pytest
import torch
import transformers

from mlops_onnx.models.embedding_cache import EmbeddingCache, encoder_version, text_keys
from mlops_onnx.models.fake_news_minilm import embed, onnx_embedder
from mlops_onnx.models.minilm_net import POOLING, MeanPooledClassifier

PAD, VOCAB, WIDTH = 0, 120, 40
TOKENIZER_JSON = '{"model": "a stand-in: only its bytes enter the encoder version"}'


def tiny_model(seed: int = 0) -> MeanPooledClassifier:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=PAD,
    )
    encoder = transformers.AutoModel.from_config(config, attn_implementation="eager")
    return MeanPooledClassifier(encoder, head_hidden=8, dropout=0.0, pad_id=PAD).eval()


def token_ids(rows: int, seed: int = 0) -> np.ndarray:
    """Right-padded ids of texts of mixed lengths (2 to WIDTH tokens), in no particular order of length."""
    rng = np.random.default_rng(seed)
    ids = np.full((rows, WIDTH), PAD, dtype=np.int64)
    for row, length in enumerate(rng.integers(2, WIDTH + 1, rows)):
        ids[row, :length] = rng.integers(1, VOCAB, length)
    return ids


class CountingEncoder:
    """The model's `embed`, counting the rows it is asked to encode."""

    def __init__(self, model: MeanPooledClassifier) -> None:
        self.model, self.rows = model, 0

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        self.rows += len(ids)
        return embed(self.model, ids, batch_size=8)


def version(model: MeanPooledClassifier, max_length: int = WIDTH) -> str:
    return encoder_version(model.encoder.state_dict(), TOKENIZER_JSON, max_length, PAD, POOLING)


def open_cache(root, model: MeanPooledClassifier, max_length: int = WIDTH) -> EmbeddingCache:
    """What each night's training does: the folder of this encoder version, under the pipeline's cache."""
    return EmbeddingCache(root / version(model, max_length), model.encoder.config.hidden_size)


def shards(root) -> list:
    return sorted(p for p in root.rglob("*.npz") if not p.name.startswith("."))


def test_length_sorted_batches_cut_to_their_longest_row_equal_the_padded_encoding():
    model, ids = tiny_model(), token_ids(60)
    lengths = (ids != PAD).sum(1)
    assert len(set(lengths)) > 10 and not np.all(np.diff(lengths) >= 0)  # mixed, unsorted lengths
    with torch.inference_mode():
        padded = model.embed(torch.from_numpy(ids)).numpy()  # one batch, every row padded to WIDTH
    dynamic = embed(model, ids, batch_size=8)
    assert dynamic.shape == padded.shape == (60, 32)
    np.testing.assert_allclose(dynamic, padded, atol=1e-5, rtol=0)
    # what training runs: the same batches through the encoder's ONNX export in ONNX Runtime
    np.testing.assert_allclose(embed(model, ids, batch_size=8, run=onnx_embedder(model)), padded, atol=1e-5, rtol=0)


def test_a_second_night_on_the_same_texts_encodes_nothing(tmp_path):
    model, ids = tiny_model(), token_ids(30)
    first = CountingEncoder(model)
    cache = open_cache(tmp_path, model)
    fresh = cache.embed(ids, PAD, first)
    assert first.rows == 30 and (cache.hits, cache.misses) == (0, 30)

    second = CountingEncoder(model)
    tomorrow = open_cache(tmp_path, model)
    # The same texts, padded to a longer batch (the longest text of the night changed): the same keys.
    again = tomorrow.embed(np.pad(ids, ((0, 0), (0, 8))), PAD, second)
    assert second.rows == 0 and (tomorrow.hits, tomorrow.misses) == (30, 0)
    assert np.array_equal(again, fresh)


def test_only_changed_texts_are_encoded_and_each_distinct_text_once(tmp_path):
    model, ids = tiny_model(), token_ids(30)
    open_cache(tmp_path, model).embed(ids, PAD, CountingEncoder(model))
    changed = ids.copy()
    changed[[3, 17], 1] = (changed[[3, 17], 1] % (VOCAB - 1)) + 1  # one token of two texts, still not a pad
    changed = np.concatenate([changed, changed[[3]]])  # and one of them twice
    counter = CountingEncoder(model)
    cache = open_cache(tmp_path, model)
    result = cache.embed(changed, PAD, counter)
    assert counter.rows == 2 and (cache.hits, cache.misses) == (29, 2)
    np.testing.assert_allclose(result, embed(model, changed, batch_size=8), atol=1e-6, rtol=0)


def test_other_encoder_weights_or_another_max_length_miss_the_cache(tmp_path):
    model, ids = tiny_model(seed=0), token_ids(20)
    open_cache(tmp_path, model).embed(ids, PAD, CountingEncoder(model))
    assert version(tiny_model(seed=0)) == version(model)  # the same weights: the same version

    retrained = tiny_model(seed=1)
    counter = CountingEncoder(retrained)
    open_cache(tmp_path, retrained).embed(ids, PAD, counter)
    assert counter.rows == 20

    counter = CountingEncoder(model)
    open_cache(tmp_path, model, max_length=WIDTH - 8).embed(ids, PAD, counter)
    assert counter.rows == 20
    assert len({version(model), version(retrained), version(model, WIDTH - 8)}) == 3


def test_a_corrupted_shard_is_deleted_and_its_texts_encoded_again(tmp_path):
    model, ids = tiny_model(), token_ids(20)
    fresh = open_cache(tmp_path, model).embed(ids, PAD, CountingEncoder(model))
    (shard,) = shards(tmp_path)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one embedding
    shard.write_bytes(bytes(data))

    counter = CountingEncoder(model)
    result = open_cache(tmp_path, model).embed(ids, PAD, counter)
    assert counter.rows == 20
    np.testing.assert_allclose(result, fresh, atol=1e-6, rtol=0)
    (replacement,) = shards(tmp_path)  # the bad bytes are gone: the one shard left is a fresh, valid one
    assert hashlib.sha256(replacement.read_bytes()).hexdigest() == replacement.stem


@pytest.mark.parametrize(
    "embeddings",
    [np.full((3, 32), np.nan, np.float32), np.zeros((3, 31), np.float32), np.zeros((2, 32), np.float32)],
    ids=["non-finite", "wrong width", "fewer rows than keys"],
)
def test_a_shard_whose_arrays_are_wrong_is_discarded_even_when_its_name_matches_its_bytes(tmp_path, embeddings):
    model, ids = tiny_model(), token_ids(3)
    cache = open_cache(tmp_path, model)
    buffer = io.BytesIO()
    keys = np.stack([np.frombuffer(key, np.uint8) for key in text_keys(ids, PAD)])  # the very texts asked for
    np.savez(buffer, keys=keys, embeddings=embeddings)
    bad = cache.folder / f"{hashlib.sha256(buffer.getvalue()).hexdigest()}.npz"
    bad.write_bytes(buffer.getvalue())

    reopened = open_cache(tmp_path, model)
    assert not bad.exists()
    counter = CountingEncoder(model)
    reopened.embed(ids, PAD, counter)
    assert counter.rows == 3


@pytest.mark.parametrize("junk", [b"not a zip file", b"\x93NUMPY an npy header, not an npz", b"PK\x03\x04 cut"])
def test_bytes_that_are_no_npz_are_discarded_even_when_named_by_their_hash(tmp_path, junk):
    model = tiny_model()
    folder = open_cache(tmp_path, model).folder
    bad = folder / f"{hashlib.sha256(junk).hexdigest()}.npz"
    bad.write_bytes(junk)
    open_cache(tmp_path, model)
    assert not bad.exists()
