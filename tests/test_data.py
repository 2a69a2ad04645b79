"""The data: binarized MNIST's fixed splits from checked .amat files, grey-scale
MNIST with its labels, and a DataError naming the file for every damaged one."""

import gzip

import pytest
import torch

from datasets import DataError, bmnist, load_bmnist_split, load_mnist
from datasets.bmnist import parse_amat


def amat(rows, cols=784):
    """Well-formed .amat text: rows of cols space-separated 0/1 values."""
    line = " ".join("1" if c % 3 == 0 else "0" for c in range(cols))
    return (line + "\n").encode() * rows


def test_binarized_mnist_has_its_fixed_splits_of_binary_images(data_dir):
    for split, rows in (("train", 50_000), ("valid", 10_000), ("test", 10_000)):
        data = load_bmnist_split(data_dir, split, download=False)
        assert data.shape == (rows, 784) and data.dtype == torch.uint8
        assert data.unique().tolist() == [0, 1]


def test_the_loaders_batch_images_and_shuffle_only_the_training_set(data_dir):
    train, valid, test = bmnist(data_dir, batch_size=100, download=False)
    assert (len(train), len(valid), len(test)) == (500, 100, 100)
    batch = next(iter(train))
    assert batch.shape == (100, 1, 28, 28) and batch.dtype == torch.float32
    torch.manual_seed(0)
    first = next(iter(train))
    torch.manual_seed(0)
    assert torch.equal(next(iter(train)), first)  # seeded
    assert not torch.equal(next(iter(train)), first)  # another order every epoch
    expected = load_bmnist_split(data_dir, "valid", download=False)[:100].float()
    assert torch.equal(next(iter(valid)).view(100, 784), expected)  # in file order


def test_grey_scale_mnist_has_its_images_and_labels(data_dir):
    for split, rows in (("train", 60_000), ("test", 10_000)):
        images, labels = load_mnist(data_dir, split, download=False)
        assert images.shape == (rows, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (rows,) and labels.unique().tolist() == list(range(10))


def test_a_damaged_grey_scale_file_is_a_data_error_naming_it(data_dir, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        data = open(f"{data_dir}/MNIST/raw/{name}", "rb").read()
        (raw / f"{name}.gz").write_bytes(gzip.compress(data))
    broken = bytearray((raw / "t10k-labels-idx1-ubyte.gz").read_bytes())
    broken[40:42] = b"\xff\xff"  # damaged deflate data, not a truncation
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(broken))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot be read"):
        load_mnist(str(tmp_path), "test", download=False)


def test_amat_text_is_one_image_of_784_binary_values_a_line():
    data = parse_amat(amat(2) + b"\n", 2, "some.amat")  # a blank last line carries no image
    assert data.shape == (2, 784) and data.dtype == torch.uint8
    assert data[0, :4].tolist() == [1, 0, 0, 1] and torch.equal(data[0], data[1])


@pytest.mark.parametrize(
    "raw, message",
    [
        (amat(3), r"3 images, expected 2 \(truncated or wrong file\?\)"),
        (amat(2, cols=783), "image 1 has 783 values, expected 784"),
        (amat(2).replace(b"1", b"2", 1), "values other than 0 and 1"),
        (amat(2).replace(b"1 0", b"1,0", 1), "values other than 0 and 1"),
        (b"\n", "0 images, expected 2"),
    ],
)
def test_malformed_amat_text_is_a_data_error_naming_the_file(raw, message):
    with pytest.raises(DataError, match=f"^some.amat: {message}"):
        parse_amat(raw, 2, "some.amat")


@pytest.mark.parametrize(
    "name, raw, message",
    [
        ("binarized_mnist_valid.amat", amat(3), "3 images, expected 10000"),
        ("binarized_mnist_valid.amat.gz", gzip.compress(amat(9))[:-10], "cannot be read"),
        ("binarized_mnist_valid.amat.gz", gzip.compress(b"0 " * 2**23), "longer than 10000"),
    ],
    ids=["truncated", "truncated-gzip", "oversized"],
)
def test_a_damaged_split_file_is_a_data_error_naming_it(tmp_path, name, raw, message):
    (tmp_path / "binarized_mnist").mkdir()
    path = tmp_path / "binarized_mnist" / name
    path.write_bytes(raw)
    with pytest.raises(DataError, match=message) as error:
        load_bmnist_split(str(tmp_path), "valid", download=False)
    assert str(error.value).startswith(str(path))
