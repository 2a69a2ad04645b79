"""Data loading: binarized MNIST from .amat files through a checked cache,
grey-scale MNIST through torchvision, and a clear DataError for every way a
file can be missing, truncated, corrupt or stale."""
import gzip
import importlib
import os
import shutil

import pytest
import torch

import datasets
from datasets import DataError, bmnist, load_bmnist_split, load_mnist
from datasets.bmnist import parse_amat

bmnist_module = importlib.import_module("datasets.bmnist")  # not the function bmnist


def amat(rows, cols=784):
    return ("\n".join(" ".join("1" if (r + c) % 3 == 0 else "0" for c in range(cols))
                      for r in range(rows)) + "\n").encode()


# ----------------------------------------------------------- binarized MNIST
def test_parse_amat_valid():
    data = parse_amat(amat(3), 3, "x")
    assert data.shape == (3, 784) and data.dtype == torch.uint8
    assert data[0, 0] == 1 and data[0, 1] == 0


@pytest.mark.parametrize("raw, message", [
    (amat(3)[:-500], r"image 3 has \d+ values"),  # truncated last line
    (amat(2), "2 images, expected 3"),           # missing rows
    (amat(3, cols=783), "783 values"),           # short rows
    (amat(3).replace(b"1", b"2", 1), "unexpected characters"),
    (amat(3).replace(b"1 0", b"10", 1), "single 0/1 digits"),
    (b"", "no image data"),
])
def test_parse_amat_rejects_malformed(raw, message):
    with pytest.raises(DataError, match=message):
        parse_amat(raw, 3, "x")


def test_truncated_gzip_is_reported(tmp_path):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    good = gzip.compress(amat(10))
    (folder / "binarized_mnist_valid.amat.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_bmnist_split(str(tmp_path), "valid", download=False)


def test_an_oversized_source_is_refused_after_reading_its_limit(tmp_path):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()  # a gzip bomb: a few KB that inflate far past any 10,000 images
    (folder / "binarized_mnist_valid.amat.gz").write_bytes(gzip.compress(b"0 " * 2 ** 25))
    with pytest.raises(DataError, match="longer than 10000 images can be"):
        load_bmnist_split(str(tmp_path), "valid", download=False)


def test_missing_data_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(bmnist_module, "URL", "http://127.0.0.1:9/")
    with pytest.raises(DataError) as err:
        load_bmnist_split(str(tmp_path), "train", download=True)
    message = str(err.value)
    assert "binarized_mnist_train.amat" in message and "127.0.0.1:9" in message
    assert str(tmp_path) in message
    assert not list((tmp_path / "binarized_mnist").glob("*"))  # nothing half-written


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    for load in (lambda: load_bmnist_split(str(tmp_path / "f"), "test"),
                 lambda: load_mnist(str(tmp_path / "f"), "test")):
        with pytest.raises(DataError, match="is a file, not a folder"):
            load()


@pytest.fixture
def valid_copy(data_dir, tmp_path):
    """A data folder holding a copy of the validation split's source file."""
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    shutil.copy(os.path.join(data_dir, "binarized_mnist", "binarized_mnist_valid.amat.gz"),
                folder)
    return tmp_path, folder / "binarized_mnist_valid.pt"


def test_cache_is_written_and_rebuilt_when_unusable(valid_copy):
    root, cache = valid_copy
    first = load_bmnist_split(str(root), "valid", download=False)
    assert first.shape == (10_000, 784)
    assert first.float().mean().item() == pytest.approx(0.1311, abs=1e-4)
    assert cache.exists()
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated
    assert torch.equal(load_bmnist_split(str(root), "valid", download=False), first)


def test_cache_of_blank_images_is_caught_by_its_checksums(valid_copy):
    root, cache = valid_copy
    first = load_bmnist_split(str(root), "valid", download=False)
    saved = torch.load(cache, weights_only=True)
    torch.save({**saved, "packed": torch.zeros_like(saved["packed"])}, cache)  # zeros
    assert torch.equal(load_bmnist_split(str(root), "valid", download=False), first)
    garbled = torch.load(cache, weights_only=True)
    garbled["packed"][17, 3] ^= 0xFF  # bytes garbled inside a well-formed cache
    torch.save(garbled, cache)
    assert torch.equal(load_bmnist_split(str(root), "valid", download=False), first)


def test_cache_of_another_source_file_is_rebuilt(valid_copy):
    root, cache = valid_copy
    load_bmnist_split(str(root), "valid", download=False)
    source = root / "binarized_mnist" / "binarized_mnist_valid.amat.gz"
    source.write_bytes(gzip.compress(amat(10_000)))  # the source changed
    assert torch.equal(load_bmnist_split(str(root), "valid", download=False),
                       parse_amat(amat(10_000), 10_000, "x"))


def test_bmnist_loaders(data_dir):
    train, val, test = bmnist(data_dir, batch_size=100)
    assert (len(train), len(val), len(test)) == (500, 100, 100)
    batch = next(iter(train))
    assert batch.shape == (100, 1, 28, 28) and batch.dtype == torch.float32
    assert set(batch.unique().tolist()) == {0.0, 1.0}
    torch.manual_seed(0)
    a = next(iter(train))
    torch.manual_seed(0)
    assert torch.equal(a, next(iter(train)))          # seeded shuffling
    assert not torch.equal(a, next(iter(train)))      # a new order each epoch
    assert torch.equal(next(iter(val)), next(iter(val)))  # no shuffling


# ----------------------------------------------------------- grey-scale MNIST
def test_mnist_splits(data_dir):
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = load_mnist(data_dir, split)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,) and set(labels.unique().tolist()) == set(range(10))


@pytest.fixture
def mnist_copy(data_dir, tmp_path):
    """A data folder with copies of the grey-scale test files (and links to
    the training files, which torchvision wants to see as well)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.mnist.FILES["test"]:
        shutil.copy(os.path.join(data_dir, "MNIST", "raw", name), raw)
    for name in datasets.mnist.FILES["train"]:
        os.symlink(os.path.join(data_dir, "MNIST", "raw", name), raw / name)
    return tmp_path, raw


@pytest.mark.parametrize("name, damage, message", [
    ("t10k-images-idx3-ubyte", lambda b: b"\x00\x00\x09\x99" + b[4:], "not a valid MNIST file"),
    ("t10k-images-idx3-ubyte", lambda b: b[:len(b) // 2], "not a valid MNIST file"),
    ("t10k-labels-idx1-ubyte", lambda b: b[:8] + bytes([200]) + b[9:], "labels from 0 to 9"),
    ("t10k-labels-idx1-ubyte", lambda b: b[:100], "not a valid MNIST file"),
])
def test_damaged_mnist_file_is_named(mnist_copy, name, damage, message):
    root, raw = mnist_copy
    (raw / name).write_bytes(damage((raw / name).read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        load_mnist(str(root), "test", download=False)
    assert name in str(err.value)


def test_missing_mnist_without_network_is_one_clear_error(tmp_path, monkeypatch, capsys):
    from torchvision.datasets import MNIST
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as err:
        load_mnist(str(tmp_path), "train")
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and "could not be downloaded" in message
    assert str(tmp_path) in message
    assert "Failed to download" not in capsys.readouterr().out  # torchvision's chatter


def test_an_unreadable_legacy_copy_is_named(mnist_copy):
    root, raw = mnist_copy
    processed = root / "MNIST" / "processed"
    processed.mkdir()
    for name in ("training.pt", "test.pt"):  # torchvision reads these before raw/
        (processed / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match="delete that folder to read MNIST/raw/"):
        load_mnist(str(root), "test", download=False)
