"""The run harness shared by the VAE and GAN scripts: flag types, seeding,
atomic writes, and `Run`, which owns a run's files in --out_dir (lock,
checkpoint, metrics) and its single way of ending (an error, Ctrl-C or
success)."""
import argparse
import fcntl
import glob
import io
import json
import math
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from matplotlib.figure import Figure

ROOT = os.path.dirname(os.path.abspath(__file__))


class RunError(Exception):
    """The run cannot go on; the message is all the user needs to see."""


# ---------------------------------------------------------------- flag types
def number(kind, low, high=math.inf, low_open=False, high_open=False):
    """An argparse type: a `kind` number in the interval [low, high]
    (ends excluded with *_open), refused with the interval otherwise."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}")
        too_low = value < low or (low_open and value == low)
        too_high = value > high or (high_open and value == high)
        if not math.isfinite(value) or too_low or too_high:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            upper = "inf)" if high == math.inf else f"{high}{right}"
            raise argparse.ArgumentTypeError(f"must be in {left}{low}, {upper}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


positive_int = number(int, 1)
nonneg_int = number(int, 0)
positive_float = number(float, 0.0, low_open=True)
seed = number(int, 0, 2 ** 32 - 1)  # what every RNG here (NumPy's too) accepts


def add_run_flags(parser, data_help):
    """The flags every training script has, after its own."""
    parser.add_argument("--seed", default=0, type=seed, help="random seed")
    parser.add_argument("--max_images", default=0, type=nonneg_int,
                        help="train on the first N training images (0: all)")
    parser.add_argument("--data_dir", default="./data", help=data_help)
    parser.add_argument("--out_dir", default="images",
                        help="figures, metrics, weights and the checkpoint")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint in --out_dir")
    start.add_argument("--overwrite", action="store_true",
                       help="start over even if --out_dir holds finished epochs")


def resolve_device(parser, name):
    """'auto' picks CUDA when available; asking for a missing CUDA is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return torch.device(name)


def available_bytes(device):
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(parser, device, needs):
    """Refuse, before any work, sizes whose tensors cannot be allocated.
    `needs` maps what a flag sets to its estimated bytes."""
    free = available_bytes(device)
    for what, nbytes in needs.items():
        if nbytes > free:
            parser.error(f"{what} needs about {nbytes / 2 ** 30:,.1f} GiB, more than "
                         f"the {free / 2 ** 30:.1f} GiB available on {device}")


def check_out_dir(parser, path, longest_name):
    """Create --out_dir and prove, before training, that the longest file
    name the run writes (as its temporary name) can be created there."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=f".{longest_name}.",
                                         suffix=".tmp"):
            pass
    except OSError as err:
        parser.error(f"--out_dir {path}: cannot write there ({err.strerror})")


# ---------------------------------------------------------------- randomness
def seed_everything(value):
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)  # also seeds every CUDA device


def rng_state():
    """Every RNG's state as tensors and plain lists, which a checkpoint
    loads with weights_only=True (no pickled objects)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"python": [version, list(internal), gauss_next],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_finite(values, where, bound=math.inf):
    """Raise RunError when any of the named tensors holds NaN, infinity or a
    value beyond +-bound (divergence); one host sync for all of them."""
    sane = torch.stack([(torch.isfinite(v) & (v.abs() <= bound)).all()
                        for v in values.values()]).tolist()
    bad = [name for name, ok in zip(values, sane) if not ok]
    if bad:
        what = "non-finite" if bound == math.inf else f"non-finite or beyond {bound:g}"
        raise RunError(f"{', '.join(bad)} became {what} {where}; the last good "
                       "checkpoint is kept (a smaller --lr may help)")


def print_epoch(epoch, epochs, history):
    """The epoch line of both scripts: each curve's latest value. Printed
    after the epoch's checkpoint is written."""
    values = "  ".join(f"{key} {curve[-1]:.3f}" for key, curve in history.items()
                       if key != "seconds_per_epoch")
    print(f"epoch {epoch}/{epochs}  {values}  {history['seconds_per_epoch'][-1]:.1f} s",
          flush=True)


def progress_printer(total):
    """progress(n): n more of `total` units are done. Prints a line at every
    tenth of the work and at least once a minute, so that a long loop shows
    it is alive and how far it has come."""
    started = last = time.perf_counter()
    done = tenths = 0

    def progress(n):
        nonlocal done, tenths, last
        done += n
        now = time.perf_counter()
        if done * 10 // total > tenths or now - last >= 60:
            tenths, last = done * 10 // total, now
            print(f"  {100 * done / total:.0f}% after {now - started:.0f} s", flush=True)
    return progress


# ------------------------------------------------------------- atomic writes
def write_atomic(path, data):
    """Write `data` (bytes) to a temporary name, then rename it onto `path`:
    an interrupted write never leaves a half-written file under `path`."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
    except OSError as err:
        raise RunError(f"cannot write {path}: {err.strerror or err}") from None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_torch(obj, path):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def save_json(obj, path):
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except ValueError:
        raise RunError(f"refusing to write {path}: a value is NaN or infinite") from None
    write_atomic(path, (text + "\n").encode())


def save_png(images, path, upscale=1, **grid_kwargs):
    """A grid of images (make_grid's arguments), each pixel repeated
    upscale x upscale times (nearest neighbour: sharp in print, same pixels)."""
    from torchvision.utils import make_grid, save_image

    if not torch.isfinite(images).all():
        raise RunError(f"refusing to write {path}: the image holds NaN or infinity")
    grid = make_grid(images.detach().cpu(), **grid_kwargs)
    grid = grid.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
    buffer = io.BytesIO()
    save_image(grid, buffer, format="png")
    write_atomic(path, buffer.getvalue())


def save_curves(path, panels, xlabel, title=None, width=1):
    """Line plots against x = 1, 2, ...: one panel per (ylabel, {label:
    values}) pair, each curve smoothed by a moving average over `width`."""
    fig = Figure(figsize=(8, 1 + 2.5 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, curves) in zip(axes, panels):
        for label, values in curves.items():
            smooth = np.convolve(np.asarray(values, dtype=float), np.ones(width) / width,
                                 mode="valid")
            ax.plot(np.arange(len(smooth)) + width, smooth, label=label)
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    axes[0].set_title(title)
    save_figure(fig, path)


def save_figure(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())


def code_version():
    """The git commit of the code and the project files this process
    imported, so that a stale result can be told from a current one."""
    files = sorted({os.path.relpath(m.__file__, ROOT) for m in list(sys.modules.values())
                    if getattr(m, "__file__", None) and m.__file__.startswith(ROOT + os.sep)
                    and "site-packages" not in m.__file__})
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", *files],
                                 check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "files": files, "uncommitted_changes": None}
    return {"commit": commit, "files": files, "uncommitted_changes": bool(changed.strip())}


# --------------------------------------------------------------------- runs
class Run:
    """One training run's files in --out_dir and its way of ending.

    Used as `with Run(...) as run:` around everything a script's main does.
    The block ends in one of three ways, and `run.status` is the exit code:
    0 on success; 1 on a RunError or OSError (one line `error: ...`);
    130 on Ctrl-C, at any moment, with the resume command when the
    checkpoint holds progress. Only the complete checkpoint of the last
    finished epoch is ever resumed, so stopping mid-epoch is safe.
    """

    def __init__(self, args, name, config, script, argv):
        self.out_dir, self.name, self.config = args.out_dir, name, config
        self.resume, self.overwrite = args.resume, args.overwrite
        self.script, self.argv = script, list(argv)
        self.checkpoint = self.path("checkpoint.pt")
        self.status = 0
        self._lock = None

    def path(self, suffix):
        return os.path.join(self.out_dir, f"{self.name}_{suffix}")

    # ------------------------------------------------------------ the block
    def __enter__(self):
        self._sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, kind, err, tb):
        if kind is KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: same end
            print(f"interrupted: {self._progress()}", file=sys.stderr, flush=True)
            self.status = 130
        elif kind is not None and issubclass(kind, (RunError, OSError)):
            if isinstance(err, OSError) and err.filename:
                err = f"{err.filename}: {err.strerror}"
            print(f"error: {err}", file=sys.stderr, flush=True)
            self.status = 1
        if self._lock is not None:
            self._lock.close()
        signal.signal(signal.SIGINT, self._sigint)
        return kind is None or self.status != 0

    def _progress(self):
        done = self.epochs_done()
        if not done:
            return "no epoch was finished; nothing to resume"
        argv = [a for a in self.argv if a != "--overwrite"]
        command = shlex.join([sys.executable, os.path.relpath(self.script), *argv]
                             + ([] if "--resume" in argv else ["--resume"]))
        return f"{self.checkpoint} holds {done} finished epochs; resume with: {command}"

    # -------------------------------------------------------------- starting
    def start(self):
        """Lock the run's files, clear temporary files of a killed run, and
        refuse to start over a checkpoint that holds finished epochs."""
        self._lock = open(self.path("run.lock"), "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"another run is writing {self.name}_* in {self.out_dir}; "
                           "wait for it or use another --out_dir") from None
        for tmp in glob.glob(os.path.join(glob.escape(self.out_dir), f".{self.name}_*.tmp")):
            os.remove(tmp)
        if not self.resume and not self.overwrite and os.path.exists(self.checkpoint):
            done = self.epochs_done()
            if done != 0:
                held = "an unreadable checkpoint" if done is None else f"{done} finished epochs"
                raise RunError(f"{self.checkpoint} holds {held}; add --resume to continue "
                               "or --overwrite to start over")

    def epochs_done(self):
        """Finished epochs in the checkpoint: 0 without one, None when unreadable."""
        if not os.path.exists(self.checkpoint):
            return 0
        try:
            return int(self._read()["epochs_done"])
        except Exception:  # noqa: BLE001 - any unreadable file counts as unreadable
            return None

    def _read(self):
        return torch.load(self.checkpoint, map_location="cpu", weights_only=True)

    # ----------------------------------------------------------- checkpoints
    def save(self, epochs_done, state):
        """Checkpoint `state`: objects with a state_dict (models, optimizers,
        schedulers) are saved through it, plain values as they are."""
        saved = {k: v.state_dict() if hasattr(v, "state_dict") else v
                 for k, v in state.items()}
        save_torch({"config": self.config, "epochs_done": epochs_done,
                    "rng": rng_state(), "state": saved}, self.checkpoint)

    def load(self, state):
        """Restore `state` (as given to save) from the checkpoint in place and
        return the finished epochs. Anything that is not exactly what save
        writes, for a run with the same config, is refused."""
        if not os.path.exists(self.checkpoint):
            raise RunError(f"--resume: no checkpoint at {self.checkpoint}")
        try:
            ckpt = self._read()
            saved = ckpt["state"]
            diff = [f"{k}: checkpoint {ckpt['config'].get(k)!r} vs now {v!r}"
                    for k, v in self.config.items() if ckpt["config"].get(k) != v]
            if diff:
                raise RunError(f"--resume: {self.checkpoint} was written with other "
                               f"settings ({', '.join(diff)}); use the same flags or "
                               "another --out_dir")
            if set(saved) != set(state):
                raise ValueError("other contents")
            for key, target in state.items():
                if hasattr(target, "load_state_dict"):
                    target.load_state_dict(saved[key])
                elif not _same_layout(target, saved[key]):
                    raise ValueError(f"{key} differs")
                else:
                    state[key] = saved[key]
            set_rng_state(ckpt["rng"])
            return int(ckpt["epochs_done"])
        except RunError:
            raise
        except Exception as err:  # noqa: BLE001 - anything else is not our checkpoint
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise RunError(f"--resume: {self.checkpoint} is not a checkpoint this "
                           f"script wrote for these flags ({reason})") from None

    def save_metrics(self, metrics):
        save_json({**metrics, "code": code_version()}, self.path("metrics.json"))


def _same_layout(template, value):
    """Same type, and for dicts the same keys with values of the same layout."""
    if isinstance(template, dict):
        return (isinstance(value, dict) and set(template) == set(value)
                and all(_same_layout(template[k], value[k]) for k in template))
    if template is None:
        return True
    return isinstance(value, type(template))
