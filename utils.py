"""Run-time helpers shared by the VAE and GAN scripts: flag checks, devices,
seeding and RNG state, and atomic writes (a crash never leaves a half-written
figure, JSON file or checkpoint behind)."""
import argparse
import json
import math
import os
import random
import signal
import tempfile

import numpy as np
import torch


class TrainingError(Exception):
    """Training cannot go on (for example, the loss became non-finite)."""


class Interrupted(Exception):
    """The user pressed Ctrl-C; the loop stopped at a batch boundary."""


# ---------------------------------------------------------------- flag checks
def _number(kind, low, inclusive, text):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}")
    if not math.isfinite(value) or value < low or (value == low and not inclusive):
        bound = f">= {low}" if inclusive else f"> {low}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


def positive_int(text):
    return _number(int, 1, True, text)


def nonneg_int(text):
    return _number(int, 0, True, text)


def positive_float(text):
    return _number(float, 0.0, False, text)


def resolve_device(parser, name):
    """'auto' picks CUDA when available; asking for a missing CUDA is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return torch.device(name)


def check_writable_dir(parser, path, flag="--out_dir"):
    """Create `path` if needed and prove it writable before any training."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as err:
        parser.error(f"{flag} {path}: cannot write there ({err.strerror})")


# ------------------------------------------------------------- randomness
def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state():
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------- atomic writes
def _atomic(path, write):
    """Call write(tmp_path), then rename the result onto `path`."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private (0600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_torch(obj, path):
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj, path):
    """Write JSON; NaN or infinity is refused rather than written."""
    text = json.dumps(obj, indent=2, allow_nan=False)

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text + "\n")
    _atomic(path, write)


def save_png(image, path, **grid_kwargs):
    """torchvision's save_image, atomically; refuses non-finite pixels."""
    from torchvision.utils import save_image

    if not torch.isfinite(image).all():
        raise TrainingError(f"refusing to write {path}: the image holds NaN/inf")
    _atomic(path, lambda tmp: save_image(image, tmp, format="png", **grid_kwargs))


def save_figure(fig, path):
    _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120,
                                          bbox_inches="tight"))


# ------------------------------------------------------------- checkpoints
def load_checkpoint(path, config):
    """Load a checkpoint written by a run with the same `config`, or raise
    TrainingError saying why it cannot be used."""
    if not os.path.exists(path):
        raise TrainingError(f"--resume: no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is refused
        raise TrainingError(f"--resume: {path} is not a readable checkpoint "
                            f"({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt:
        raise TrainingError(f"--resume: {path} is not a checkpoint of this script")
    diff = {k: (ckpt["config"].get(k), v) for k, v in config.items()
            if ckpt["config"].get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}"
                          for k, (a, b) in sorted(diff.items()))
        raise TrainingError(f"--resume: {path} was written with other settings "
                            f"({shown}); use the same flags or another --out_dir")
    return ckpt


class StopOnSigint:
    """Turn the first Ctrl-C into a flag the training loop polls between
    batches, so that it can stop at a clean point; a second Ctrl-C aborts."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def check(self):
        if self.requested:
            raise Interrupted

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)
        return False
