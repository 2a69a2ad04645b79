"""The run harness of both scripts: checked flags, atomic writes, and `Run`,
which owns a run's files and checkpoint and ends it in one line."""

import argparse
import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.abspath(__file__))
PLACE = ("data_dir", "out_dir", "device", "resume", "overwrite")  # flags that move no result


class RunError(Exception):
    """The run cannot go on; the message is all the user needs to see."""


def number(kind, low, high=10**6):
    """argparse type: a `kind` in [low, high]; a million bounds every count and size."""

    def parse(text):
        if not low <= (value := kind(text)) <= high:  # NaN fails too
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parser(doc, data_help, *flags):
    """The script's flags, each (name, type, (low[, high]), default, help), then the run's."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    for name, kind, bounds, default, help in flags:
        p.add_argument(name, type=number(kind, *bounds), default=default, help=help)
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0, help="random seed")
    p.add_argument("--max_images", type=number(int, 0), default=0, help="use N images (0: all)")
    p.add_argument("--data_dir", default="./data", help=data_help)
    p.add_argument("--out_dir", default="images", help="figures, metrics and checkpoint")
    devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)  # one line for no CUDA
    p.add_argument("--device", default=devices[-1], choices=devices, help="where to train")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue the run in --out_dir")
    start.add_argument("--overwrite", action="store_true", help="replace the run in --out_dir")
    return p


def check_finite(values, where, bound):
    """RunError when a tensor holds NaN, inf or values beyond +-bound."""
    if not bool((values.abs() <= bound).all()):  # NaN compares False
        raise RunError(f"training diverged {where} (losses non-finite or beyond {bound:g})")


def write_atomic(path, data):
    """Bytes to a file beside `path`, then renamed onto it: no half-written `path`."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
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
        write_atomic(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())
    except ValueError:
        raise RunError(f"refusing to write {path}: a value is NaN or infinite") from None


def git(*command):
    done = subprocess.run(["git", "-C", ROOT, *command], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


class Run:
    """A run's files, `{name}_*` in --out_dir, and its end in one line: status 1 on a
    RunError, OSError or lack of memory, 128 + the signal on Ctrl-C, SIGTERM or a closed
    terminal; once an epoch is checkpointed, the line gives the command that resumes."""

    def __init__(self, args, name, argv):
        self.args, self.name, self.imported = args, name, argv is not None
        self.argv = argv if self.imported else sys.argv[1:]
        self.script = sys._getframe(1).f_code.co_filename  # the script whose main() runs this
        self.config = {k: v for k, v in vars(args).items() if k not in PLACE}
        self.checkpoint, self.device = self.path("checkpoint.pt"), torch.device(args.device)
        self.epochs_done = self.status = 0
        changed = bool(git("status", "-s", "--", "*.py"))  # now: a later commit must not relabel it
        self.code = {"commit": git("rev-parse", "HEAD"), "changed": changed}

    def path(self, suffix):
        return os.path.join(self.args.out_dir, f"{self.name}_{suffix}")

    def __enter__(self):
        def interrupt(signum, frame):
            raise KeyboardInterrupt(128 + signum)

        self.handlers = {s: signal.signal(s, interrupt) for s in (2, 1, 15)}  # INT, HUP, TERM
        with contextlib.suppress(AttributeError):  # a notebook's stdout has no buffer to set
            sys.stdout.reconfigure(line_buffering=True)  # every line reaches a log at once
        return self

    def __exit__(self, kind, err, tb):
        for sig in self.handlers:
            signal.signal(sig, signal.SIG_IGN)  # a second signal ends the same way
        if isinstance(err, KeyboardInterrupt):
            self.status, line = (err.args or [130])[0], "interrupted"
        elif isinstance(err, (RunError, OSError)):
            self.status, line = 1, f"error: {err}"
        elif isinstance(err, (MemoryError, torch.OutOfMemoryError)):
            self.status, line = 1, "error: out of memory; try a smaller batch or model"
        if self.status and self.epochs_done:
            argv = [a for a in self.argv if a not in ("--overwrite", "--resume")] + ["--resume"]
            command = shlex.join([sys.executable, self.script, *argv])
            line += f"; {self.checkpoint} holds {self.epochs_done} epochs, resume with: {command}"
        elif kind is KeyboardInterrupt:
            line += " before the first epoch ended; nothing to resume"
        if self.status:
            with contextlib.suppress(OSError):  # the terminal is gone: the status says it
                print(line, file=sys.stderr, flush=True)
        for sig, handler in self.handlers.items() if self.imported else []:
            signal.signal(sig, handler)  # a command line exits next, ignoring any late signal
        return kind is None or self.status != 0

    def start(self, outputs):
        """Refuse an earlier run's checkpoint or metrics unless --resume or --overwrite, which
        deletes those and `outputs`, nothing else; called once the data and model are ready."""
        os.makedirs(self.args.out_dir, exist_ok=True)
        ours = [self.path(name) for name in ("checkpoint.pt", "metrics.json", *outputs)]
        if not (self.args.resume or self.args.overwrite) and any(map(os.path.lexists, ours[:2])):
            raise RunError(
                f"{self.args.out_dir} holds an earlier run's {self.name}_* files: add --resume "
                "to continue it, --overwrite to replace it, or use another --out_dir"
            )
        for path in filter(os.path.lexists, ours if self.args.overwrite else []):
            os.remove(path)

    def save(self, state, epochs_done):
        """Checkpoint `state` (modules, optimisers, values), flags and random state."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        saved = {k: v.state_dict() if hasattr(v, "state_dict") else v for k, v in state.items()}
        ckpt = {"config": self.config, "epochs_done": epochs_done, "rng": rng, "state": saved}
        save_torch(ckpt, self.checkpoint)
        self.epochs_done = epochs_done

    def load(self, state):
        """Restore `state`, return its epochs; refused for other flags or unfitting shapes."""
        try:
            ckpt = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            other = [k for k, v in self.config.items() if ckpt["config"].get(k) != v]
            if other:
                raise ValueError(f"it was written with other {', '.join(other)}")
            for key, value in state.items():
                if hasattr(value, "load_state_dict"):
                    value.load_state_dict(ckpt["state"][key])
                    for p, moments in getattr(value, "state", {}).items():
                        if any(m.dim() and m.shape != p.shape for m in moments.values()):
                            raise ValueError(f"moments of {key} do not fit their parameters")
                else:
                    state[key] = ckpt["state"][key]
            torch.set_rng_state(ckpt["rng"]["cpu"])
            if "cuda" in ckpt["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
            self.epochs_done = ckpt["epochs_done"]
        except Exception as err:  # noqa: BLE001 - torch raises many kinds
            reason = getattr(err, "strerror", None) or (str(err).splitlines() or [""])[0]
            reason = f"{type(err).__name__}: {reason[:200]}"  # a KeyError's text is the bare key
            raise RunError(f"--resume: cannot resume from {self.checkpoint} ({reason})") from None
        return self.epochs_done

    def save_metrics(self, metrics):
        save_json({**metrics, "code": self.code}, self.path("metrics.json"))
