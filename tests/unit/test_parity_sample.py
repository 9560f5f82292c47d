"""Which test rows parity compares on a split larger than MLOPS_PARITY_MAX_ROWS (`parity.parity_sample`)."""

import numpy as np

from mlops_onnx.parity import parity_sample

# 9,000 rows of three unevenly sized classes, interleaved (as a test split's rows are).
split_classes = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [6000, 2950, 50]))


def test_the_sample_is_bounded_sorted_and_keeps_each_class_share_within_one_row():
    picked = parity_sample(split_classes, len(split_classes), 200, seed=42)
    assert len(picked) == 200 and len(np.unique(picked)) == 200
    assert np.all(np.diff(picked) > 0)
    for label in (0, 1, 2):
        share_of_split = np.mean(split_classes == label) * 200
        assert abs(np.sum(split_classes[picked] == label) - share_of_split) < 1.0


def test_every_class_present_is_sampled_even_when_its_share_rounds_to_nothing():
    classes = np.array([0] * 995 + [1] * 5)
    picked = parity_sample(classes, len(classes), 20, seed=1)
    assert len(picked) == 20
    assert np.sum(classes[picked] == 1) == 1  # its exact share is 0.1 row


def test_the_same_inputs_give_the_same_rows_and_another_seed_other_rows():
    first = parity_sample(split_classes, len(split_classes), 300, seed=42)
    assert np.array_equal(first, parity_sample(split_classes, len(split_classes), 300, seed=42))
    other = parity_sample(split_classes, len(split_classes), 300, seed=43)
    assert not np.array_equal(first, other)
    assert np.array_equal(np.bincount(split_classes[first]), np.bincount(split_classes[other]))  # the same quotas


def test_a_split_no_larger_than_the_cap_or_no_cap_uses_every_row():
    rows = len(split_classes)
    for cap in (rows, rows + 1, None, 0):
        assert np.array_equal(parity_sample(split_classes, rows, cap, seed=42), np.arange(rows))


def test_without_strata_the_rows_are_evenly_spaced_over_the_whole_split():
    picked = parity_sample(None, 1000, 10, seed=42)
    assert picked.tolist() == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]


def test_tickers_stratify_like_classes():
    tickers = np.array(["aapl"] * 700 + ["spy"] * 290 + ["tiny"] * 10)
    picked = parity_sample(tickers, len(tickers), 100, seed=42)
    counts = dict(zip(*np.unique(tickers[picked], return_counts=True), strict=True))
    assert counts == {"aapl": 70, "spy": 29, "tiny": 1}


def test_more_strata_than_the_cap_still_gives_the_cap_one_row_per_stratum_at_most():
    tickers = np.repeat(np.arange(50), 10)
    picked = parity_sample(tickers, len(tickers), 20, seed=42)
    assert len(picked) == 20 and len(np.unique(tickers[picked])) == 20
