"""The fixed binarization of MNIST (Larochelle & Murray, 2011), 50k/10k/10k.

The `.amat` text files are parsed once, validated and cached next to them as
a bit-packed tensor file (98 bytes an image); training then iterates over tensors held in memory, which
is far faster than per-item PIL conversion through a torch DataLoader.
"""
import gzip
import os
import urllib.request
import zlib

import numpy as np
import torch

URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
SPLITS = {"train": 50_000, "valid": 10_000, "test": 10_000}
PIXELS = 784


class DataError(Exception):
    """A data set is missing, cannot be downloaded or is malformed."""


class TensorLoader:
    """Mini-batches of a tensor held in memory (optionally on the GPU).

    Shuffling draws the permutation from torch's global CPU generator, so a
    seeded run is reproducible and a checkpoint of the RNG state resumes the
    exact same batch order.
    """

    def __init__(self, data, batch_size, shuffle=False, drop_last=False):
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self):
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.data)
        order = torch.randperm(n).to(self.data.device) if self.shuffle else None
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            if order is None:
                yield self.data[start:start + self.batch_size]
            else:
                yield self.data[order[start:start + self.batch_size]]

    def to(self, device):
        return TensorLoader(self.data.to(device), self.batch_size,
                            self.shuffle, self.drop_last)


def parse_amat(raw, expected_rows, name):
    """Parse `.amat` bytes (one image per line, 784 space-separated 0/1)."""
    chars = np.frombuffer(raw, dtype=np.uint8)
    is_digit = (chars == ord("0")) | (chars == ord("1"))
    is_space = (chars == ord(" ")) | (chars == ord("\n")) | (chars == ord("\r"))
    if not np.all(is_digit | is_space):
        raise DataError(f"{name}: unexpected characters; expected only 0/1 "
                        "values separated by spaces")
    if np.any(is_digit[1:] & is_digit[:-1]):
        raise DataError(f"{name}: values must be single 0/1 digits")
    if not is_digit.any():
        raise DataError(f"{name}: no image data")
    # A line ends at a line break or at the end of the file.
    ends = np.append(np.flatnonzero(chars == ord("\n")), len(chars) - 1)
    per_line = np.diff(np.concatenate([[0], np.cumsum(is_digit)[ends]]))
    per_line = per_line[per_line > 0]  # blank lines carry no image
    if len(per_line) != expected_rows:
        raise DataError(f"{name}: {len(per_line)} images, expected "
                        f"{expected_rows} (truncated or wrong file?)")
    bad = np.flatnonzero(per_line != PIXELS)
    if bad.size:
        raise DataError(f"{name}: image {bad[0] + 1} has {per_line[bad[0]]} "
                        f"values, expected {PIXELS}")
    pixels = chars[is_digit] - ord("0")
    return torch.from_numpy(pixels.reshape(expected_rows, PIXELS).copy())


def _read_source(folder, split, download):
    base = os.path.join(folder, f"binarized_mnist_{split}.amat")
    for path, opener in ((base, open), (base + ".gz", gzip.open)):
        if os.path.exists(path):
            try:
                with opener(path, "rb") as f:
                    return path, f.read()
            except (OSError, EOFError, zlib.error) as err:
                raise DataError(f"{path}: cannot be read ({err}); the file is "
                                "corrupt or truncated, delete it and download "
                                "it again") from None
    if not download:
        raise DataError(f"binarized_mnist_{split}.amat(.gz) not found in "
                        f"{folder}")
    return base, _download(base, URL + os.path.basename(base))


def _download(path, url):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    print(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            raw = response.read()
    except OSError as err:
        raise DataError(
            f"binarized MNIST is not in {os.path.dirname(path)} and the download "
            f"from {URL} failed ({err}). Put binarized_mnist_train.amat, "
            "binarized_mnist_valid.amat and binarized_mnist_test.amat (or their "
            ".gz) in that folder, or point --data_dir at a folder that has "
            "binarized_mnist/ inside.") from None
    atomic_write_bytes(path, raw)
    return raw


def atomic_write_bytes(path, raw):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(raw)
    os.replace(tmp, path)


def _load_cache(path, rows):
    """The cached split, or None when the cache is unreadable or malformed
    (it is then rebuilt from the source file)."""
    try:
        packed = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable cache is rebuilt
        return None
    if (not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8
            or tuple(packed.shape) != (rows, PIXELS // 8)):
        return None
    return torch.from_numpy(np.unpackbits(packed.numpy(), axis=1))


def _save_cache(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(torch.from_numpy(np.packbits(data.numpy(), axis=1)), tmp)
        os.replace(tmp, path)
    except OSError:  # a read-only data folder only costs the parse next time
        if os.path.exists(tmp):
            os.remove(tmp)


def load_bmnist_split(root, split, download=True):
    """Return one split as a uint8 tensor of shape (rows, 784), values 0/1."""
    rows = SPLITS[split]
    folder = os.path.join(root, "binarized_mnist")
    cache = os.path.join(folder, f"binarized_mnist_{split}.pt")
    if os.path.exists(cache):
        data = _load_cache(cache, rows)
        if data is not None:
            return data
    path, raw = _read_source(folder, split, download)
    data = parse_amat(raw, rows, path)
    _save_cache(cache, data)
    return data


def bmnist(root="./data/", batch_size=128, download=True, device="cpu"):
    """Train/validation/test loaders of binarized MNIST.

    Each batch is a float tensor of shape (B, 1, 28, 28) with values in {0, 1}.
    Only the training loader shuffles.
    """
    loaders = []
    for split in ("train", "valid", "test"):
        data = load_bmnist_split(root, split, download)
        images = data.to(device=device, dtype=torch.float32).view(-1, 1, 28, 28)
        loaders.append(TensorLoader(images, batch_size, shuffle=split == "train"))
    return tuple(loaders)
