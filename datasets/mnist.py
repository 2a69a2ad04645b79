"""Grey-scale MNIST: the training set through torchvision, the labelled test
set read straight from the IDX files (torchvision's MNIST class refuses a
folder that lacks the training images, which are not always available)."""
import gzip
import os
import struct

import numpy as np
import torch

from datasets.bmnist import DataError, TensorLoader

TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist(root="./data/", batch_size=64, download=True, device="cpu"):
    """Shuffling loader of the 60k grey-scale training images scaled to [-1, 1],
    as float tensors of shape (B, 1, 28, 28)."""
    from torchvision.datasets import MNIST  # torchvision is slow to import

    try:
        data = MNIST(root, train=True, download=download).data
    except (RuntimeError, OSError) as err:
        raise DataError(
            f"grey-scale MNIST training images are not in {root}/MNIST/raw and "
            f"could not be downloaded ({str(err).splitlines()[0]}). Use a machine "
            "with internet access once, point --data_dir at a folder that holds "
            "MNIST/raw/, or train on binarized MNIST with --dataset bmnist."
        ) from None
    images = data.to(device=device, dtype=torch.float32).div_(127.5).sub_(1)
    return TensorLoader(images.view(-1, 1, 28, 28), batch_size, shuffle=True,
                        drop_last=True)


def read_idx(path):
    """Read an IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(shape)
    except (OSError, EOFError, ValueError, struct.error) as err:
        raise DataError(f"{path}: not a valid IDX file ({err})") from None


def _find(folder, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise DataError(f"{stem}(.gz) not found in {folder}")


def load_mnist_test(root="./data/"):
    """The 10k grey-scale test images as floats in [0, 1], shape (N, 784),
    and their labels as int64."""
    folder = os.path.join(root, "MNIST", "raw")
    images = read_idx(_find(folder, TEST_FILES[0]))
    labels = read_idx(_find(folder, TEST_FILES[1]))
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{folder}: test images and labels do not match")
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255)
    return x, torch.from_numpy(labels.astype(np.int64))
