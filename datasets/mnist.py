"""Grey-scale MNIST (60k training and 10k test images with labels), read from
the IDX files in `<root>/MNIST/raw/` (or their .gz) without torchvision, which
takes two seconds to import and is used only to download absent files. A
missing, truncated or corrupt file is named in one DataError."""

import contextlib
import io
import math
import os

import numpy as np
import torch

from datasets.bmnist import DataError, read_bytes

SIZES = {"train": 60_000, "test": 10_000}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_mnist(root, split, download=True):
    """The images of one split as uint8 (N, 28, 28) and their labels (N,)."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise DataError(f"--data_dir {root} is a file, not a folder")
    folder = os.path.join(root, "MNIST", "raw")
    paths = [os.path.join(folder, name) for name in FILES[split]]
    missing = [p for p in paths if not (os.path.exists(p) or os.path.exists(p + ".gz"))]
    if missing and download:
        print(f"downloading grey-scale MNIST into {folder}", flush=True)
        from torchvision.datasets import MNIST

        try:
            with contextlib.redirect_stdout(io.StringIO()):  # torchvision's per-mirror chatter
                MNIST(root, download=True)
        except Exception as err:  # noqa: BLE001 - torchvision raises many kinds
            raise DataError(
                f"{', '.join(map(os.path.basename, missing))} not in {folder}, and could not be "
                f"downloaded ({str(err).splitlines()[0] if str(err) else type(err).__name__}). "
                "Put the four MNIST files (or their .gz) there, or point --data_dir at a "
                "folder that holds MNIST/raw/."
            ) from None
    images = read_idx(paths[0], (SIZES[split], 28, 28))
    labels = read_idx(paths[1], (SIZES[split],))
    if labels.max() > 9:
        raise DataError(f"{paths[1]}: labels beyond 9 (a wrong file?)")
    return images, labels.long()


def read_idx(path, shape):
    """An IDX file of unsigned bytes with the given shape (or its .gz), as uint8."""
    header = bytes([0, 0, 8, len(shape)]) + np.array(shape, ">u4").tobytes()
    path, data = read_bytes(path, len(header) + math.prod(shape))
    if not data.startswith(header) or len(data) != len(header) + math.prod(shape):
        raise DataError(
            f"{path}: not an MNIST file of shape {shape}; it is truncated, corrupt or another "
            "file: delete it and download it again"
        )
    return torch.frombuffer(bytearray(data[len(header) :]), dtype=torch.uint8).view(shape)
