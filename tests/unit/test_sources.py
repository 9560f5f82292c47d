import sys
import types
import zipfile

import pandas as pd
import pytest

from mlops_onnx import sources
from mlops_onnx.datasets import FASHION_MNIST
from mlops_onnx.sources import SourceError
from mlops_onnx.sources.kaggle import NO_CREDENTIALS
from mlops_onnx.validation.fashion import COLUMNS


def test_synthetic_fashion_has_the_exact_kaggle_schema(settings_env, tmp_path):
    settings = settings_env(MLOPS_DATA_SOURCE="synthetic")
    details = sources.fetch("synthetic", FASHION_MNIST, tmp_path, settings)
    for name in FASHION_MNIST.file_patterns:
        frame = pd.read_csv(tmp_path / name)
        assert list(frame.columns) == COLUMNS
        assert frame["label"].between(0, 9).all() and set(frame["label"]) == set(range(10))
        assert frame[COLUMNS[1:]].to_numpy().min() >= 0 and frame[COLUMNS[1:]].to_numpy().max() <= 255
    assert details["seed"] == settings.seed


def test_synthetic_is_deterministic(settings_env, tmp_path):
    settings = settings_env(MLOPS_DATA_SOURCE="synthetic")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sources.fetch("synthetic", FASHION_MNIST, tmp_path / "a", settings)
    sources.fetch("synthetic", FASHION_MNIST, tmp_path / "b", settings)
    name = FASHION_MNIST.file_patterns[0]
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_local_source_names_the_missing_folder(settings_env, tmp_path):
    settings = settings_env(MLOPS_DATA_SOURCE="local", MLOPS_DATA_DIR=str(tmp_path))
    with pytest.raises(SourceError, match="fashionmnist does not exist"):
        sources.fetch("local", FASHION_MNIST, tmp_path / "out", settings)


def test_kaggle_without_credentials_fails_with_one_clear_line(settings_env, tmp_path):
    settings = settings_env(MLOPS_DATA_SOURCE="kaggle")
    with pytest.raises(SourceError) as error:
        sources.fetch("kaggle", FASHION_MNIST, tmp_path, settings)
    assert str(error.value) == NO_CREDENTIALS and "\n" not in str(error.value)


class FakeKaggleApi:
    """Stands in for Kaggle's servers: writes the dataset zip, or leaves it when unchanged."""

    calls: list[str] = []
    fail_with: Exception | None = None

    def authenticate(self):
        pass

    def dataset_download_files(self, slug, path, unzip, quiet):
        FakeKaggleApi.calls.append(slug)
        if FakeKaggleApi.fail_with:
            raise FakeKaggleApi.fail_with
        archive = f"{path}/{slug.split('/')[1]}.zip"
        import os

        if os.path.exists(archive):
            return  # the official client skips the download when the local zip is current
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("fashion-mnist_train.csv", "label,pixel1\n1,0\n")
            zf.writestr("fashion-mnist_test.csv", "label,pixel1\n2,0\n")
            zf.writestr("t10k-images-idx3-ubyte", "not part of the snapshot")


@pytest.fixture
def fake_kaggle(monkeypatch):
    module = types.ModuleType("kaggle.api.kaggle_api_extended")
    module.KaggleApi = FakeKaggleApi
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", module)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    FakeKaggleApi.calls = []
    FakeKaggleApi.fail_with = None
    return FakeKaggleApi


def test_kaggle_extracts_the_dataset_files_and_skips_unchanged_downloads(settings_env, tmp_path, fake_kaggle):
    settings = settings_env(MLOPS_DATA_SOURCE="kaggle")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = sources.fetch("kaggle", FASHION_MNIST, tmp_path / "one", settings)
    second = sources.fetch("kaggle", FASHION_MNIST, tmp_path / "two", settings)
    assert first["downloaded"] is True and second["downloaded"] is False
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(FASHION_MNIST.file_patterns)
    assert fake_kaggle.calls == ["zalando-research/fashionmnist"] * 2


def test_kaggle_unreachable_is_reported_as_a_source_error(settings_env, tmp_path, fake_kaggle):
    fake_kaggle.fail_with = ConnectionError("Max retries exceeded with url: /api/v1/datasets/download")
    settings = settings_env(MLOPS_DATA_SOURCE="kaggle")
    with pytest.raises(SourceError, match="could not download zalando-research/fashionmnist: ConnectionError"):
        sources.fetch("kaggle", FASHION_MNIST, tmp_path, settings)


def test_zip_members_cannot_escape_the_snapshot(tmp_path):
    from mlops_onnx.sources.kaggle import extract_dataset_files

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../fashion-mnist_train.csv", "x")
    dataset = FASHION_MNIST.__class__(name="x", slug="a/b", file_patterns=("*fashion-mnist_train.csv",))
    (tmp_path / "out").mkdir()
    with pytest.raises(SourceError, match="outside the snapshot"):
        extract_dataset_files(dataset, archive, tmp_path / "out")


def test_synthetic_fashion_is_learnable_but_not_trivially_separable(settings_env, tmp_path):
    """A linear model fitted on the training file does far better than chance on the test file, yet look-alike
    classes and a few wrong labels keep it well short of perfect (on the earlier, cleanly separated images it
    scored 1.0, and the CNN reached validation accuracy 1.000 in one epoch)."""
    from sklearn.linear_model import LogisticRegression

    settings = settings_env(MLOPS_DATA_SOURCE="synthetic", MLOPS_SYNTHETIC_SIZE="small")
    sources.fetch("synthetic", FASHION_MNIST, tmp_path, settings)
    train, test = (pd.read_csv(tmp_path / name).to_numpy(dtype=float) for name in FASHION_MNIST.file_patterns)
    assert (len(train), len(test)) == (2000, 500)
    linear = LogisticRegression(max_iter=300).fit(train[:, 1:] / 255, train[:, 0])
    accuracy = linear.score(test[:, 1:] / 255, test[:, 0])
    assert 0.6 < accuracy < 0.95, accuracy


def test_kaggle_size_has_the_real_row_counts_and_layout_at_a_reduced_scale(settings_env, tmp_path):
    """`MLOPS_SYNTHETIC_SIZE=kaggle` at 1/50 of the real sizes: the real files' row counts scaled, Kaggle's
    layout, and the stock archive's defects (empty files, one-row files, short histories, Volume=0 days)."""
    from mlops_onnx.datasets import FAKE_NEWS, LIAR, STOCKS
    from mlops_onnx.sources.synthetic_stocks import HEADER, KAGGLE_FILES

    settings = settings_env(MLOPS_DATA_SOURCE="synthetic", MLOPS_SYNTHETIC_SIZE="kaggle", MLOPS_SYNTHETIC_SCALE="0.02")
    folders = {d.name: tmp_path / d.name for d in (FASHION_MNIST, FAKE_NEWS, LIAR, STOCKS)}
    for dataset in (FASHION_MNIST, FAKE_NEWS, LIAR, STOCKS):
        folders[dataset.name].mkdir()
        sources.fetch("synthetic", dataset, folders[dataset.name], settings)

    train, test = (pd.read_csv(folders["fashionmnist"] / n) for n in FASHION_MNIST.file_patterns)
    assert (len(train), len(test)) == (1200, 200) and list(train.columns) == COLUMNS
    fake, true = (pd.read_csv(folders["fake_news"] / n) for n in ("Fake.csv", "True.csv"))
    assert (len(fake), len(true)) == (470, 428) and list(fake.columns) == ["title", "text", "subject", "date"]
    words = true["text"].str.split().str.len()
    assert 250 < words.median() < 450 and words.max() > 2 * words.median()  # realistic length, a long tail
    assert [len((folders["liar"] / n).read_text().splitlines()) for n in ("train.tsv", "valid.tsv")] == [205, 26]

    stocks, etfs = (sorted((folders["stocks"] / kind).glob("*.us.txt")) for kind in ("Stocks", "ETFs"))
    assert (len(stocks), len(etfs)) == tuple(round(n * 0.02) for n in KAGGLE_FILES)
    sizes = [p.stat().st_size for p in stocks + etfs]
    lines = [p.read_bytes().split(b"\r\n") for p in stocks + etfs if p.stat().st_size]
    assert sizes.count(0) >= 1 and all(f[0].decode() == HEADER and f[-1] == b"" for f in lines)
    rows = [len(f) - 2 for f in lines]
    assert rows.count(1) >= 1 and sum(1 < r < 250 for r in rows) >= 3 and max(rows) > 4000
    volumes = [pd.read_csv(p)["Volume"] for p in stocks + etfs if p.stat().st_size]
    assert any((v == 0).mean() > 0.03 for v in volumes)


def test_synthetic_data_is_generated_once_and_copied_from_the_cache(settings_env, tmp_path, monkeypatch):
    from mlops_onnx.sources import synthetic

    settings = settings_env(MLOPS_DATA_SOURCE="synthetic", MLOPS_SYNTHETIC_SIZE="kaggle", MLOPS_SYNTHETIC_SCALE="0.01")
    calls = []
    real = synthetic.generate_fashion
    monkeypatch.setattr(synthetic, "generate_fashion", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setitem(synthetic.GENERATORS, "fashionmnist", "mlops_onnx.sources.synthetic:generate_fashion")
    for night in ("a", "b"):
        (tmp_path / night).mkdir()
        sources.fetch("synthetic", FASHION_MNIST, tmp_path / night, settings)
    assert len(calls) == 1  # the second night copied the cached files
    name = FASHION_MNIST.file_patterns[0]
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    (tmp_path / "b" / name).write_text("changed in a snapshot")  # a copy: the cache is untouched
    cached = next((settings.cache_dir / "synthetic").glob("fashionmnist-kagglex0.01-seed*"))
    assert (cached / name).read_bytes() == (tmp_path / "a" / name).read_bytes()

    other = settings_env(MLOPS_SYNTHETIC_SCALE="0.02")  # another scale is another dataset
    (tmp_path / "c").mkdir()
    sources.fetch("synthetic", FASHION_MNIST, tmp_path / "c", other)
    assert len(calls) == 2 and len(pd.read_csv(tmp_path / "c" / name)) == 1200
