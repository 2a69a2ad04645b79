"""The run harness of both scripts: flag types, atomic writes, and `Run`, a
run's files and its one way of ending (docs/harness.md: what each guarantees)."""
import argparse
import contextlib
import fcntl
import io
import json
import math
import os
import pickle
import shlex
import signal
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.abspath(__file__))


class RunError(Exception):
    """The run cannot go on; the message is all the user needs to see."""


def number(kind, low, high=math.inf, low_open=False, high_open=False):
    """argparse type: a finite `kind` in [low, high], an end excluded by *_open."""
    interval = (f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
                if high < math.inf else f"{'>' if low_open else '>='} {low}")

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}")
        if not ((kind is int or math.isfinite(value)) and (value > low if low_open else
                value >= low) and (value < high if high_open else value <= high)):
            raise argparse.ArgumentTypeError(f"must be {interval}, got {text}")
        if kind is int and value >= 2 ** 63:  # torch's sizes are int64
            raise argparse.ArgumentTypeError(f"must be below 2**63, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


positive_int, nonneg_int = number(int, 1), number(int, 0)
positive_float = number(float, 0.0, low_open=True)
seed = number(int, 0, 2 ** 32 - 1)  # what every RNG accepts


def parser(description):
    """--help shows defaults; no abbreviations (the resume line drops --overwrite)."""
    return argparse.ArgumentParser(description=description, allow_abbrev=False,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_run_flags(parser, data_help):
    """The flags every training script has, after its own."""
    parser.add_argument("--seed", default=0, type=seed, help="random seed")
    parser.add_argument("--max_images", default=0, type=nonneg_int,
                        help="train on the first N training images (0: all)")
    parser.add_argument("--data_dir", default="./data", help=data_help)
    parser.add_argument("--out_dir", default="images",
                        help="figures, metrics, weights and the checkpoint")
    parser.add_argument("--device", default="auto", type=device, help="auto, cpu or cuda")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the run whose checkpoint is in --out_dir")
    start.add_argument("--overwrite", action="store_true",
                       help="delete the files of an earlier run of these flags, then start")


def device(name):
    """argparse type of --device: auto is CUDA when there is one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{name!r} is not one of auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("no CUDA device is available")
    return torch.device(name)


def rng_state():
    """torch's generators (the only ones training draws from), as tensors."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def check_finite(values, where, bound=math.inf):
    """RunError naming the tensors with NaN, inf or values beyond +-bound; one sync."""
    sane = torch.stack([(torch.isfinite(v) & (v.abs() <= bound)).all()
                        for v in values.values()]).tolist()
    bad = [name for name, ok in zip(values, sane) if not ok]
    if bad:
        what = "non-finite" if bound == math.inf else f"non-finite or beyond {bound:g}"
        raise RunError(f"{', '.join(bad)} became {what} {where}; training stopped "
                       "(a smaller --lr may help)")


def write_atomic(path, data):
    """Bytes to a temporary name beside `path`, then renamed onto it: an
    interrupted write never leaves half a file under `path`."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666),
                  "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise RunError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


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


def code_version():
    """The commit and the project files this process imported (`make results`
    tells stale results by them)."""
    files = sorted({os.path.relpath(m.__file__, ROOT) for m in list(sys.modules.values())
                    if (getattr(m, "__file__", None) or "").startswith(ROOT + os.sep)
                    and "site-packages" not in m.__file__})
    try:
        commit, changed = (subprocess.run(["git", "-C", ROOT, *command], check=True,
                                          capture_output=True, text=True).stdout.strip()
                           for command in (["rev-parse", "HEAD"],
                                           ["status", "--porcelain", "--", *files]))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "files": files, "uncommitted_changes": None}
    return {"commit": commit, "files": files, "uncommitted_changes": bool(changed)}


class Run:
    """A training run's files in --out_dir and its one way of ending. `with
    Run(...) as run:` ends an expected failure (RunError, OSError, memory) in
    one line and run.status 1, Ctrl-C in 130, SIGTERM in 143, with the resume
    command once an epoch is checkpointed; anything else is a bug (traceback)."""

    def __init__(self, args, name, config, epochs, script, argv, memory_flags):
        self.args, self.name, self.config, self.epochs = args, name, config, epochs
        self.script, self.argv, self.memory_flags = script, list(argv), memory_flags
        self.checkpoint = self.path("checkpoint.pt")
        self.epochs_done = self.status = 0
        self._lock = None
        self.code = code_version()  # now: a commit during the run must not relabel it

    def path(self, suffix):
        return os.path.join(self.args.out_dir, f"{self.name}_{suffix}")

    def __enter__(self):
        def terminate(signum, frame):
            raise KeyboardInterrupt(143)
        self._handlers = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                          signal.SIGTERM: signal.signal(signal.SIGTERM, terminate)}
        return self

    def __exit__(self, kind, err, tb):
        for sig in self._handlers:
            signal.signal(sig, signal.SIG_IGN)  # a second signal: the same end
        if self._lock is not None:
            os.close(self._lock)  # and with it the lock
        if isinstance(err, KeyboardInterrupt):
            self.status, line = (err.args or [130])[0], "interrupted: "
        elif isinstance(err, (RunError, OSError)):
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            self.status, line = 1, f"error: {where}{getattr(err, 'strerror', None) or err}; "
        elif isinstance(err, (MemoryError, torch.OutOfMemoryError)) or (
                isinstance(err, RuntimeError) and "can't allocate memory" in str(err)):
            self.status, line = 1, f"error: out of memory; lower {self.memory_flags}; "
        if self.status and self.epochs_done:
            argv = [a for a in self.argv if a != "--overwrite"]
            line += (f"{self.checkpoint} holds {self.epochs_done} finished epochs; resume "
                     "with: " + shlex.join([sys.executable, os.path.relpath(self.script), *argv]
                                           + ([] if "--resume" in argv else ["--resume"])))
        elif self.status and self.status != 1:
            line += "no epoch was finished; nothing to resume"
        if self.status:
            with contextlib.suppress(OSError):  # stderr closed too: the status says it
                print(line.rstrip("; "), file=sys.stderr, flush=True)
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        return kind is None or self.status != 0  # else a bug: its traceback

    def start(self, outputs):
        """Lock the run's files, clear a killed run's temporary files, refuse an
        earlier run's checkpoint or metrics without --resume or --overwrite;
        --overwrite deletes `outputs`, the checkpoint and metrics, nothing else."""
        out_dir, lock = self.args.out_dir, self.path("run.lock")
        os.makedirs(out_dir, exist_ok=True)
        try:  # never through a link; a pipe fails at once instead of blocking
            self._lock = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                                 0o666)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"another run is writing {self.name}_* in {out_dir}; wait for "
                           "it or use another --out_dir") from None
        owned = list(map(self.path, {"checkpoint.pt", "metrics.json", *outputs}))
        leftovers = {f".{os.path.basename(path)}" for path in owned}  # as .NAME.PID.tmp
        for name in os.listdir(out_dir):
            if name.endswith(".tmp") and name[:-4].rsplit(".", 1)[0] in leftovers:
                os.remove(os.path.join(out_dir, name))
        earlier = [p for p in (self.checkpoint, self.path("metrics.json")) if os.path.lexists(p)]
        if earlier and not (self.args.resume or self.args.overwrite):
            raise RunError(f"{earlier[0]} holds an earlier run: add --resume to continue it, "
                           "--overwrite to replace its files, or use another --out_dir")
        for path in owned:
            if self.args.overwrite and os.path.lexists(path):
                os.remove(path)

    def end_epoch(self, state):
        """Checkpoint `state` (after as many epochs as its history's curves are
        long), then print the epoch line."""
        history, seconds = state["history"], state["history"]["seconds_per_epoch"]
        done = len(seconds)
        save_torch({"config": self.config, "epochs_done": done, "rng": rng_state(),
                    "state": snapshot(state)}, self.checkpoint)
        self.epochs_done = done
        curves = [f" {k} {c[-1]:.3f}" for k, c in history.items() if c is not seconds]
        print(f"epoch {done}/{self.epochs}", *curves, f" {seconds[-1]:.1f} s", flush=True)

    def load(self, state):
        """Restore `state` in place from a checkpoint of the same flags whose whole
        tree fits `state`'s; return its finished epochs."""
        if not os.path.isfile(self.checkpoint):
            raise RunError(f"--resume: no checkpoint file at {self.checkpoint}")
        try:
            ckpt = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            saved, done, rng = ckpt["state"], ckpt["epochs_done"], ckpt["rng"]
            config = dict(ckpt["config"])
        except pickle.UnpicklingError:
            raise RunError(f"--resume: {self.checkpoint} holds pickled objects, not only "
                           "tensors and plain values; it is not loaded") from None
        except Exception as err:  # noqa: BLE001 - torch raises many kinds
            reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise RunError(f"--resume: {self.checkpoint} is not a checkpoint ({reason})") from None
        diff = [f"{k}: checkpoint {config.get(k)!r} vs now {v!r}"
                for k, v in self.config.items() if config.get(k) != v]
        if diff:
            raise RunError(f"--resume: {self.checkpoint} was written with other flags "
                           f"({', '.join(diff)}); use the same flags or another --out_dir")
        where = mismatch({"state": expected(state, done), "rng": rng_state()},
                         {"state": saved, "rng": rng}, "checkpoint")
        if not where and not (type(done) is int and 1 <= done <= self.epochs
                              and all(len(c) == done for c in saved["history"].values())):
            where = "epochs_done"
        if where:
            raise RunError(f"--resume: {self.checkpoint} does not fit this script and "
                           f"these flags (at {where}); it is not loaded")
        for key, target in state.items():
            if hasattr(target, "load_state_dict"):
                target.load_state_dict(saved[key])
            else:
                state[key] = saved[key]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.epochs_done = done
        return done

    def save_metrics(self, metrics):
        save_json({**metrics, "code": self.code}, self.path("metrics.json"))


def snapshot(state):
    return {k: v.state_dict() if hasattr(v, "state_dict") else v for k, v in state.items()}


def expected(state, done):
    """`state`'s checkpoint tree after `done` epochs: Adam has moments for every
    parameter, a schedule has stepped once per epoch."""
    tree = snapshot(state)
    for key, value in state.items():
        if isinstance(value, torch.optim.lr_scheduler.LRScheduler):
            tree[key].update(last_epoch=done, _step_count=done + 1)
        if isinstance(value, torch.optim.Adam):
            params = [p for group in value.param_groups for p in group["params"]]
            tree[key]["state"] = {i: {"step": torch.zeros(()), "exp_avg": p, "exp_avg_sq": p}
                                  for i, p in enumerate(params)}
    return tree


def mismatch(want, got, where):
    """Where the tree `got` first departs from `want`, or None. Dicts: the same keys;
    tensors: dtype, layout and shape (any length where `want` has none), finite;
    lists: as long, or any finite values for an empty one; floats: finite; else
    equal (whole numbers too: parameter indices, schedule lengths)."""
    if isinstance(want, (list, tuple)) and want:  # as long as `want`: a dict of its items
        if type(got) is not type(want) or len(got) != len(want):
            return where
        want, got = dict(enumerate(want)), dict(enumerate(got))
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return where
        return next((m for k in want if (m := mismatch(want[k], got[k], f"{where}.{k}"))), None)
    if torch.is_tensor(want):
        fits = (torch.is_tensor(got) and (got.dtype, got.layout) == (want.dtype, want.layout)
                and got.dim() == want.dim()
                and (got.shape == want.shape or want.dim() > 0 and len(want) == 0
                     and got.shape[1:] == want.shape[1:]) and finite(got))
    elif isinstance(want, (float, list, tuple)):
        fits = type(got) is type(want) and finite(got)
    else:
        fits = type(got) is type(want) and got == want
    return None if fits else where


def finite(value):
    """A finite tensor or number, or a list or dict of them."""
    if torch.is_tensor(value):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, (list, tuple, dict)):
        return all(map(finite, value.values() if isinstance(value, dict) else value))
    return isinstance(value, (int, float)) and math.isfinite(value)
