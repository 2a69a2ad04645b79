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
import pickle
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
from matplotlib.ticker import MaxNLocator

ROOT = os.path.dirname(os.path.abspath(__file__))


class RunError(Exception):
    """The run cannot go on; the message is all the user needs to see."""


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler or `timeout` stopping the run)."""


def _terminate(signum, frame):
    raise Terminated


# ---------------------------------------------------------------- flag types
def number(kind, low, high=None, low_open=False, high_open=False):
    """An argparse type: a `kind` number in the interval [low, high]
    (ends excluded with *_open), refused with the interval otherwise. Whole
    numbers without a `high` stop at 2**63 - 1, what torch's integers hold."""
    bounded = high is not None
    high = high if bounded else 2 ** 63 - 1 if kind is int else math.inf
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    allowed = (f"in {left}{low}, {high}{right}" if bounded
               else f"{'>' if low_open else '>='} {low}")

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}")
        too_low = value < low or (low_open and value == low)
        too_high = value > high or (high_open and value == high)
        if kind is float and not math.isfinite(value) or too_low:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        if too_high:
            raise argparse.ArgumentTypeError(
                f"must be {allowed}, got {text}" if bounded else f"must be at most {high}")
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


def check_out_dir(parser, path, longest_name, flag="--out_dir"):
    """Create --out_dir and prove, before training, that the longest file
    name the run writes (as its temporary name) can be created there."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=f".{longest_name}.",
                                         suffix=".tmp"):
            pass
    except OSError as err:
        parser.error(f"{flag} {path}: cannot write there ({err.strerror})")


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
        raise RunError(f"{', '.join(bad)} became {what} {where}; training stopped, and "
                       "the checkpoint of the last finished epoch, if any, is kept (a "
                       "smaller --lr may help)")


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
    fig = Figure(figsize=(4.8, 0.6 + 2.3 * len(panels)))  # printed about this size
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
    axes[-1].xaxis.set_major_locator(MaxNLocator(5))  # six-digit iterations stay apart
    axes[0].set_title(title, fontsize="medium")
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
    The block ends in one of four ways, and `run.status` is the exit code:
    0 on success; 1 on a RunError or OSError (one line `error: ...`, with the
    resume command after a failure of the machine such as a full disk);
    130 on Ctrl-C and 143 on SIGTERM, at any moment, with the resume command
    when the checkpoint holds progress. Only the complete checkpoint of the
    last finished epoch is ever resumed, so stopping mid-epoch is safe.
    """

    def __init__(self, args, name, config, script, argv):
        self.out_dir, self.name, self.config = args.out_dir, name, config
        self.resume, self.overwrite = args.resume, args.overwrite
        self.script, self.argv = script, list(argv)
        self.checkpoint = self.path("checkpoint.pt")
        self.status = 0
        self._lock = None
        self.code = code_version()  # now: a commit during the run must not relabel it

    def path(self, suffix):
        return os.path.join(self.out_dir, f"{self.name}_{suffix}")

    # ------------------------------------------------------------ the block
    def __enter__(self):
        self._handlers = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, _terminate))}
        return self

    def __exit__(self, kind, err, tb):
        stopped = {KeyboardInterrupt: 130, Terminated: 143}
        if kind in stopped:
            for sig in self._handlers:
                signal.signal(sig, signal.SIG_IGN)  # a second signal: the same end
            self.status = stopped[kind]
            self._say(f"interrupted: {self._progress()}")
        elif kind is not None and issubclass(kind, (RunError, OSError)):
            self.status = 1
            if isinstance(err, OSError):  # the machine failed, not the run: resumable
                where = f"{err.filename}: " if err.filename else ""
                self._say(f"error: {where}{err.strerror or err}; {self._progress()}")
            else:
                self._say(f"error: {err}")
        if self._lock is not None:
            self._lock.close()
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        return kind is None or self.status != 0

    @staticmethod
    def _say(line):
        try:
            print(line, file=sys.stderr, flush=True)
        except OSError:  # stderr closed too: the status says it
            pass

    def _progress(self):
        done = self.epochs_done()
        if not done:
            return "no epoch was finished; nothing to resume"
        # --overwrite, or any abbreviation of it, would clash with --resume
        argv = [a for a in self.argv if not (len(a) > 3 and "--overwrite".startswith(a))]
        resumes = any(len(a) > 3 and "--resume".startswith(a) for a in argv)
        command = shlex.join([sys.executable, os.path.relpath(self.script), *argv]
                             + ([] if resumes else ["--resume"]))
        return f"{self.checkpoint} holds {done} finished epochs; resume with: {command}"

    # -------------------------------------------------------------- starting
    def start(self):
        """Lock the run's files, clear temporary files of a killed run, and
        refuse to start over a checkpoint that holds finished epochs."""
        lock = self.path("run.lock")
        try:  # never through a link: the lock file is truncated
            self._lock = os.fdopen(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW), "w")
        except OSError as err:
            raise RunError(f"cannot use the lock file {lock} ({err.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"another run is writing {self.name}_* in {self.out_dir}; "
                           "wait for it or use another --out_dir") from None
        folder = glob.escape(self.out_dir)
        for tmp in glob.glob(os.path.join(folder, f".{self.name}_*.tmp")):
            os.remove(tmp)
        if self.overwrite:  # no old grid, metrics or checkpoint is mistaken for the new run's
            for pattern in ("samples_*.png", "metrics.json", "checkpoint.pt"):
                for old in glob.glob(os.path.join(folder, f"{self.name}_{pattern}")):
                    os.remove(old)
        elif not self.resume and os.path.exists(self.checkpoint):
            done = self.epochs_done()
            if done is None:
                raise RunError(f"{self.checkpoint} is unreadable; add --overwrite to start "
                               "over, or use another --out_dir")
            if done:
                raise RunError(f"{self.checkpoint} holds {done} finished epochs; add "
                               "--resume to continue or --overwrite to start over")

    def epochs_done(self):
        """Finished epochs in the checkpoint: 0 without one, None when unreadable
        (a folder, a pipe or a device is not opened: reading it could block)."""
        if not os.path.lexists(self.checkpoint):
            return 0
        if not os.path.isfile(self.checkpoint):
            return None
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

    def load(self, state, consistent=None):
        """Restore `state` (as given to save) from the checkpoint in place and
        return the finished epochs. Anything that is not exactly what save
        writes for a run with the same config is refused: other keys, shapes,
        dtypes or hyper-parameters, non-finite values, curves whose length is
        not the number of finished epochs, or plain values that fail the
        script's own `consistent(state, epochs_done)`."""
        if not os.path.lexists(self.checkpoint):
            raise RunError(f"--resume: no checkpoint at {self.checkpoint}")
        try:
            if not os.path.isfile(self.checkpoint):
                raise ValueError("not a regular file")
            ckpt = self._read()
            saved, done = ckpt["state"], ckpt["epochs_done"]
            diff = [f"{k}: checkpoint {ckpt['config'].get(k)!r} vs now {v!r}"
                    for k, v in self.config.items() if ckpt["config"].get(k) != v]
            if diff:
                raise RunError(f"--resume: {self.checkpoint} was written with other "
                               f"settings ({', '.join(diff)}); use the same flags or "
                               "another --out_dir")
            if set(saved) != set(state) or type(done) is not int or done < 0:
                raise ValueError("other contents")
            restored = dict(state)
            for key, target in state.items():
                if hasattr(target, "load_state_dict"):
                    _check_state_dict(target, saved[key])
                    target.load_state_dict(saved[key])
                elif _same_layout(target, saved[key]):
                    restored[key] = saved[key]
                else:
                    raise ValueError(f"{key} differs")
            curves = restored.get("history", {}).values()
            if any(len(curve) != done or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in curve)
                   for curve in curves):
                raise ValueError("curves that do not match the finished epochs")
            if consistent is not None and not consistent(restored, done):
                raise ValueError("parts that do not fit the finished epochs or the model")
            state.update(restored)
            set_rng_state(ckpt["rng"])
            return done
        except RunError:
            raise
        except pickle.UnpicklingError:
            raise RunError(f"--resume: {self.checkpoint} holds pickled objects, not only "
                           "tensors and plain values; it was not written by this script "
                           "and is not loaded") from None
        except Exception as err:  # noqa: BLE001 - anything else is not our checkpoint
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise RunError(f"--resume: {self.checkpoint} is not a checkpoint this "
                           f"script wrote for these flags ({reason})") from None

    def save_metrics(self, metrics):
        save_json({**metrics, "code": self.code}, self.path("metrics.json"))


def shapes(state_dict):
    """name -> shape of a state_dict's tensors: two state_dicts fit the same
    model when these are equal."""
    return {name: tuple(tensor.shape) for name, tensor in state_dict.items()}


def _same_layout(template, value):
    """Same type as the template, every number and tensor finite; dicts with
    the same keys, lists of finite numbers (or of such dicts and lists),
    tensors of the same dtype and trailing shape; None stands for "absent
    or a dict of tensors" (a saved state_dict)."""
    if template is None:
        return value is None or (isinstance(value, dict) and all(
            torch.is_tensor(v) and _finite(v) for v in value.values()))
    if isinstance(template, dict):
        return (isinstance(value, dict) and set(template) == set(value)
                and all(_same_layout(template[k], value[k]) for k in template))
    if isinstance(template, list):
        return isinstance(value, list) and all(_finite(v) for v in value)
    if torch.is_tensor(template):
        return (torch.is_tensor(value) and value.dtype == template.dtype
                and value.shape[1:] == template.shape[1:] and _finite(value))
    return isinstance(value, type(template))


def _finite(value):
    """A finite number, tensor, or dict or list of them."""
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if torch.is_tensor(value):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(isinstance(k, str) and _finite(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return False


def _check_state_dict(target, saved):
    """Refuse, before loading, a state_dict that torch would load without
    complaint but that is not the target's: an optimizer state of another
    shape (which corrupts memory when stepped), other scheduler settings,
    non-finite weights."""
    if isinstance(target, torch.optim.Optimizer):
        fresh = target.state_dict()["param_groups"]
        params = [p for group in target.param_groups for p in group["params"]]
        # every setting as the run makes it; the learning rate as a schedule may
        if len(saved["param_groups"]) != len(fresh) or any(
                set(g) != set(f) or any(g[k] != f[k] for k in f if k not in ("lr", "initial_lr"))
                or not all(type(g[k]) is float and math.isfinite(g[k])
                           for k in ("lr", "initial_lr") if k in f)
                for g, f in zip(saved["param_groups"], fresh)):
            raise ValueError("other optimizer settings")
        moments = {"step", "exp_avg", "exp_avg_sq"}
        for index, state in saved["state"].items():
            param = params[index]
            if set(state) != moments:
                raise ValueError("other optimizer state")
            for name, value in state.items():
                shape = () if name == "step" else param.shape
                if (not torch.is_tensor(value) or value.shape != shape
                        or value.dtype != param.dtype or not _finite(value)):
                    raise ValueError(f"optimizer state {name} of another shape or type")
    elif isinstance(target, torch.optim.lr_scheduler.LRScheduler):
        fresh = target.state_dict()
        if set(saved) != set(fresh) or any(
                type(saved[k]) is not type(fresh[k]) or not _finite(saved[k]) for k in fresh
                ) or any(saved[k] != fresh[k] for k in ("T_max", "eta_min", "base_lrs")):
            raise ValueError("other learning-rate schedule")
    else:
        fresh = target.state_dict()
        if any(saved[k].dtype != v.dtype for k, v in fresh.items() if k in saved) or not all(
                _finite(v) for v in saved.values()):
            raise ValueError("weights of another type, or non-finite")
