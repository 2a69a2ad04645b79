"""Grey-scale MNIST (60k training and 10k test images with labels) through
torchvision's MNIST class: it reads `<root>/MNIST/raw/` offline and downloads
only when the files are absent. Every file is checked, and a missing,
truncated or corrupt one is named in one DataError."""

import contextlib
import io
import os

from datasets.bmnist import DataError

SIZES = {"train": 60_000, "test": 10_000}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_mnist(root, split, download=True):
    """The images of one split as uint8 (N, 28, 28) and their labels (N,)."""
    from torchvision.datasets import MNIST  # torchvision is slow to import

    if os.path.exists(root) and not os.path.isdir(root):
        raise DataError(f"--data_dir {root} is a file, not a folder")
    folder = os.path.join(root, "MNIST", "raw")
    paths = [os.path.join(folder, name) for name in FILES[split]]
    # torchvision reads a split only when the files of both splits are there
    missing = [
        n for names in FILES.values() for n in names if not os.path.exists(os.path.join(folder, n))
    ]
    if missing and download:
        print(f"downloading grey-scale MNIST into {folder}", flush=True)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision's per-mirror chatter
            dataset = MNIST(root, train=split == "train", download=download and bool(missing))
    except Exception as err:  # noqa: BLE001 - torchvision raises many kinds
        if any(not os.path.exists(os.path.join(folder, n)) for n in missing):
            raise DataError(
                f"{', '.join(missing)} not in {folder}, and could not "
                f"be downloaded ({str(err).splitlines()[0] if str(err) else type(err).__name__}). "
                "Put the four MNIST files (or their .gz) there, or point --data_dir at a "
                "folder that holds MNIST/raw/."
            ) from None
        processed = os.path.join(root, "MNIST", "processed")
        if os.path.isdir(processed):  # torchvision reads this legacy copy before raw/
            raise DataError(
                f"{processed} holds a copy of MNIST in torchvision's old format "
                f"that cannot be read ({type(err).__name__}); delete that "
                "folder to read MNIST/raw/"
            ) from None
        raise _diagnose(paths) from None
    images, labels = dataset.data, dataset.targets
    if tuple(images.shape) != (SIZES[split], 28, 28):
        raise DataError(
            f"{paths[0]}: {tuple(images.shape)} images, expected "
            f"({SIZES[split]}, 28, 28) (truncated or wrong file?)"
        )
    if len(labels) != len(images) or labels.min() < 0 or labels.max() > 9:
        raise DataError(
            f"{paths[1]}: expected {len(images)} labels from 0 to 9 (truncated or wrong file?)"
        )
    return images, labels


def _diagnose(paths):
    """The DataError that names which of the files torchvision cannot read."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for path, read in zip(paths, (read_image_file, read_label_file)):
        try:
            read(path)
        except Exception as err:  # noqa: BLE001 - any failure names the file
            reason = str(err).splitlines()[0] if str(err) else "bad header"
            return DataError(
                f"{path}: not a valid MNIST file ({reason}); it is corrupt "
                "or truncated, delete it and download it again"
            )
    return DataError(f"{os.path.dirname(paths[0])}: the MNIST files cannot be read")
