"""The fixed binarization of MNIST (Larochelle & Murray, 2011), 50k/10k/10k,
read from its `.amat` text files (or their .gz) into tensors held in memory:
iterating over those is far faster than a torch DataLoader's per-item work."""

import gzip
import os
import urllib.request
import zlib

import numpy as np
import torch

import utils

URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
SPLITS = {"train": 50_000, "valid": 10_000, "test": 10_000}
PIXELS = 784


class DataError(utils.RunError):
    """A data set is missing, cannot be downloaded or is malformed."""


class TensorLoader:
    """Mini-batches of a tensor in memory. The shuffle draws from torch's global
    generator: a seeded run, and one resumed from a checkpoint of its random
    state, sees the same batches."""

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
        order = (torch.randperm(n) if self.shuffle else torch.arange(n)).to(self.data.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self.data[order[start : start + self.batch_size]]


def parse_amat(raw, rows, name):
    """`.amat` bytes, one image a line of 784 space-separated 0/1 values (blank
    lines carry none), as a uint8 tensor (rows, 784)."""
    lines = raw.replace(b" ", b"").replace(b"\r", b"").split()
    if len(lines) != rows:
        raise DataError(f"{name}: {len(lines)} images, expected {rows} (truncated or wrong file?)")
    pixels = np.frombuffer(b"".join(lines), np.uint8) - ord("0")
    if pixels.max(initial=0) > 1:  # any other character wraps around above 1
        raise DataError(f"{name}: values other than 0 and 1")
    for i, line in enumerate(lines):
        if len(line) != PIXELS:
            raise DataError(f"{name}: image {i + 1} has {len(line)} values, expected {PIXELS}")
    return torch.from_numpy(pixels.reshape(rows, PIXELS))


def load_bmnist_split(root, split, download=True):
    """One split as a uint8 tensor (rows, 784) of 0/1 values."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise DataError(f"--data_dir {root} is a file, not a folder")
    rows, folder = SPLITS[split], os.path.join(root, "binarized_mnist")
    path = os.path.join(folder, f"binarized_mnist_{split}.amat")
    path = next((p for p in (path, path + ".gz") if os.path.isfile(p)), path)
    if not os.path.isfile(path):
        if not download:
            raise DataError(f"binarized_mnist_{split}.amat(.gz) not found in {folder}")
        print(f"downloading {URL + os.path.basename(path)}", flush=True)
        try:
            os.makedirs(folder, exist_ok=True)
            with urllib.request.urlopen(URL + os.path.basename(path), timeout=60) as response:
                utils.write_atomic(path, response.read())
        except OSError as err:
            raise DataError(
                f"binarized MNIST is not in {folder} and the download from {URL} failed ({err}). "
                "Put binarized_mnist_{train,valid,test}.amat (or their .gz) in that folder, or "
                "point --data_dir at a folder that has binarized_mnist/ inside."
            ) from None
    limit = rows * (2 * PIXELS + 1)  # the longest text `rows` images can take
    path, raw = read_bytes(path, limit)
    if len(raw) > limit:
        raise DataError(f"{path}: longer than {rows} images can be; a wrong file?")
    return parse_amat(raw, rows, path)


def read_bytes(path, limit):
    """`path`, or its .gz where only that exists, and at most limit + 1 of its bytes:
    a file too long shows as such without being read whole."""
    path = next((p for p in (path, path + ".gz") if os.path.isfile(p)), path)
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            return path, f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as err:  # absent, unreadable, a broken .gz
        reason = getattr(err, "strerror", None) or err
        raise DataError(
            f"{path}: cannot be read ({reason}); delete it and download it again"
        ) from None


def bmnist(root="./data/", batch_size=128, download=True, device="cpu"):
    """Train/validation/test loaders of float images (B, 1, 28, 28) in {0, 1};
    only the training loader shuffles."""
    splits = [load_bmnist_split(root, split, download) for split in SPLITS]
    images = [data.to(device=device, dtype=torch.float32).view(-1, 1, 28, 28) for data in splits]
    return tuple(TensorLoader(x, batch_size, shuffle=i == 0) for i, x in enumerate(images))
