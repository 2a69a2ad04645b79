"""The fixed binarization of MNIST (Larochelle & Murray, 2011), 50k/10k/10k.

The `.amat` text files are parsed once, validated and cached next to them as
a bit-packed tensor (98 bytes an image) with checksums of itself and of its
source file; training then iterates over tensors held in memory, which is far
faster than per-item PIL conversion through a torch DataLoader.
"""

import gzip
import hashlib
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
                yield self.data[start : start + self.batch_size]
            else:
                yield self.data[order[start : start + self.batch_size]]


def parse_amat(raw, expected_rows, name):
    """Parse `.amat` bytes (one image per line, 784 space-separated 0/1)."""
    chars = np.frombuffer(raw, dtype=np.uint8)
    is_digit = (chars == ord("0")) | (chars == ord("1"))
    is_space = (chars == ord(" ")) | (chars == ord("\n")) | (chars == ord("\r"))
    if not np.all(is_digit | is_space):
        raise DataError(
            f"{name}: unexpected characters; expected only 0/1 values separated by spaces"
        )
    if np.any(is_digit[1:] & is_digit[:-1]):
        raise DataError(f"{name}: values must be single 0/1 digits")
    if not is_digit.any():
        raise DataError(f"{name}: no image data")
    # A line ends at a line break or at the end of the file.
    ends = np.append(np.flatnonzero(chars == ord("\n")), len(chars) - 1)
    per_line = np.diff(np.concatenate([[0], np.cumsum(is_digit)[ends]]))
    per_line = per_line[per_line > 0]  # blank lines carry no image
    if len(per_line) != expected_rows:
        raise DataError(
            f"{name}: {len(per_line)} images, expected {expected_rows} (truncated or wrong file?)"
        )
    bad = np.flatnonzero(per_line != PIXELS)
    if bad.size:
        raise DataError(
            f"{name}: image {bad[0] + 1} has {per_line[bad[0]]} values, expected {PIXELS}"
        )
    pixels = chars[is_digit] - ord("0")
    return torch.from_numpy(pixels.reshape(expected_rows, PIXELS).copy())


def _source_path(folder, split):
    base = os.path.join(folder, f"binarized_mnist_{split}.amat")
    return next((p for p in (base, base + ".gz") if os.path.isfile(p)), None)  # no pipes


def _read_source(path, rows):
    """The text of a source file (gzip-compressed when it ends in .gz), read
    up to the longest text that `rows` images can take."""
    opener, limit = gzip.open if path.endswith(".gz") else open, rows * (2 * PIXELS + 1)
    try:
        with opener(path, "rb") as f:
            raw = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: cannot be read ({err}); the file is corrupt or "
            "truncated, delete it and download it again"
        ) from None
    if len(raw) > limit:
        raise DataError(f"{path}: longer than {rows} images can be; a wrong file?")
    return raw


def _download(folder, split):
    """Fetch one split's .amat file into `folder`; return its path."""
    path = os.path.join(folder, f"binarized_mnist_{split}.amat")
    url = URL + os.path.basename(path)
    print(f"downloading {url}")
    try:
        os.makedirs(folder, exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as response:
            raw = response.read()
    except OSError as err:
        raise DataError(
            f"binarized MNIST is not in {folder} and the download "
            f"from {URL} failed ({err}). Put binarized_mnist_train.amat, "
            "binarized_mnist_valid.amat and binarized_mnist_test.amat (or their "
            ".gz) in that folder, or point --data_dir at a folder that has "
            "binarized_mnist/ inside."
        ) from None
    utils.write_atomic(path, raw)
    return path


def _sha256(raw):
    return hashlib.sha256(raw).hexdigest()


def _load_cache(path, rows, source_sha256):
    """The cached split, or None when the cache is unreadable, malformed,
    garbled (its own checksum) or stale (its source's checksum); it is then
    rebuilt from the source file."""
    try:
        cache = torch.load(path, weights_only=True)
        packed = cache["packed"]
        if (
            packed.dtype != torch.uint8
            or tuple(packed.shape) != (rows, PIXELS // 8)
            or cache["source_sha256"] != source_sha256
            or cache["packed_sha256"] != _sha256(packed.numpy().tobytes())
        ):
            return None
    except Exception:  # noqa: BLE001 - any unusable cache is rebuilt
        return None
    return torch.from_numpy(np.unpackbits(packed.numpy(), axis=1))


def _save_cache(path, data, source_sha256):
    packed = torch.from_numpy(np.packbits(data.numpy(), axis=1))
    try:
        utils.save_torch(
            {
                "packed": packed,
                "source_sha256": source_sha256,
                "packed_sha256": _sha256(packed.numpy().tobytes()),
            },
            path,
        )
    except utils.RunError:  # a read-only data folder only costs the parse next time
        pass


def load_bmnist_split(root, split, download=True):
    """Return one split as a uint8 tensor of shape (rows, 784), values 0/1."""
    rows = SPLITS[split]
    if os.path.exists(root) and not os.path.isdir(root):
        raise DataError(f"--data_dir {root} is a file, not a folder")
    folder = os.path.join(root, "binarized_mnist")
    path = _source_path(folder, split)
    if path is None:
        if not download:
            raise DataError(f"binarized_mnist_{split}.amat(.gz) not found in {folder}")
        path = _download(folder, split)
    with open(path, "rb") as f:
        stored = f.read()
    checksum = _sha256(stored)
    cache = os.path.join(folder, f"binarized_mnist_{split}.pt")
    data = _load_cache(cache, rows, checksum) if os.path.isfile(cache) else None
    if data is None:
        data = parse_amat(_read_source(path, rows), rows, path)
        _save_cache(cache, data, checksum)
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
