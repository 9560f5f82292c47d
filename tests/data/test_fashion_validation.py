"""The Fashion-MNIST suite on the real sample and on each kind of bad input."""

import shutil

import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA

from mlops_onnx.validation.fashion import COLUMNS, validate_file

TRAIN = "fashion-mnist_train.csv"


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory):
    """A real 300-row slice of the shared sample (or a synthetic one), every class present."""
    folder = tmp_path_factory.mktemp("fashion")
    if HAS_SHARED_DATA:
        lines = (SHARED_DATA / "fashionmnist" / TRAIN).read_text().splitlines()[:301]
        (folder / TRAIN).write_text("\n".join(lines) + "\n")
    else:
        import numpy as np

        from mlops_onnx.sources.synthetic import write_fashion

        write_fashion(folder, np.random.default_rng(0), (300, 100))
    return folder / TRAIN


def failures(report):
    return [f"{c.expectation}[{c.column}]: {c.detail}" for c in report.checks if not c.success]


def test_real_sample_passes(sample_csv):
    report = validate_file(sample_csv, min_rows=100)
    assert report.success, failures(report)
    assert report.rows == 300


@pytest.mark.skipif(not HAS_SHARED_DATA, reason="../shared/data is not present")
def test_whole_shared_sample_passes():
    for name in (TRAIN, "fashion-mnist_test.csv"):
        report = validate_file(SHARED_DATA / "fashionmnist" / name, min_rows=1000)
        assert report.success, failures(report)


def edited(sample_csv, tmp_path, edit):
    import pandas as pd

    frame = pd.read_csv(sample_csv)
    frame = edit(frame)
    path = tmp_path / TRAIN
    frame.to_csv(path, index=False)
    return path


def test_missing_column_is_named(sample_csv, tmp_path):
    path = edited(sample_csv, tmp_path, lambda f: f.drop(columns=["pixel784"]))
    found = failures(validate_file(path, 100))
    assert any("expect_table_columns_to_match_ordered_list" in f and "pixel784" in f for f in found), found


def test_label_out_of_range_is_named(sample_csv, tmp_path):
    def twelve(frame):
        frame.loc[3, "label"] = 12
        return frame

    found = failures(validate_file(edited(sample_csv, tmp_path, twelve), 100))
    assert any("in_set[label]" in f and "12" in f for f in found), found


def test_pixel_out_of_range_names_the_column(sample_csv, tmp_path):
    def three_hundred(frame):
        frame.loc[7, "pixel17"] = 300
        return frame

    found = failures(validate_file(edited(sample_csv, tmp_path, three_hundred), 100))
    assert any("pixel_max" in f and "pixel17: 1" in f for f in found), found


def test_missing_class_fails(sample_csv, tmp_path):
    found = failures(validate_file(edited(sample_csv, tmp_path, lambda f: f[f["label"] != 4]), 10))
    assert any("distinct_values_to_contain_set[label]" in f for f in found), found


def test_non_integer_and_null_pixels_fail(sample_csv, tmp_path):
    def corrupt(frame):
        frame["pixel5"] = frame["pixel5"].astype(float)
        frame.loc[1, "pixel5"] = 0.5
        frame.loc[2, "pixel6"] = None
        return frame

    found = failures(validate_file(edited(sample_csv, tmp_path, corrupt), 100))
    assert any("pixel_non_integer" in f and "pixel5" in f for f in found), found
    assert any("pixel_nulls" in f and "pixel6" in f for f in found), found


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty (0 bytes"),
        (b"label,pixel1\n\xff\xfe\x00bad\n", "not valid UTF-8"),
    ],
)
def test_unreadable_files_fail_with_the_file_named(tmp_path, content, expected):
    path = tmp_path / TRAIN
    path.write_bytes(content)
    found = failures(validate_file(path, 1))
    assert len(found) == 1 and expected in found[0] and TRAIN in found[0]


def test_a_directory_in_place_of_the_file(tmp_path):
    (tmp_path / TRAIN).mkdir()
    assert "is a directory" in failures(validate_file(tmp_path / TRAIN, 1))[0]


def test_too_few_rows(sample_csv, tmp_path):
    shutil.copy(sample_csv, tmp_path / TRAIN)
    found = failures(validate_file(tmp_path / TRAIN, min_rows=1000))
    assert any("row_count" in f for f in found), found
    assert COLUMNS[0] == "label"
