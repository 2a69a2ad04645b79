"""Does a change of the code leave every result as it was? Short runs of both
scripts (and of question 1.4's experiment) at an earlier commit and at the
working tree, with the same flags and seeds, compared number for number and
byte for byte:

    python -m report.same_outputs --base 1df6d45 --data_dir ../shared/datasets

Compared: every metrics number (all but the timings and the code stamp), the
bytes of every PNG, and the tensors of every saved model. With --record,
a passing comparison is written to images/code_equivalence.json, which
`make results` reads: metrics files made by the base's code count as current
while the code they would import now is that of the recorded commit, if
every file changed since is one the compared runs import. With --only, a
change meant to alter some results (then rerun) is checked to leave the
others as they were.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

from report.results import ROOT, load

RUNS = [  # (out_dir name, command after the interpreter)
    ("vae", ["a3_vae_template.py", "--epochs", "3", "--zdim", "2", "--max_images", "3000",
             "--hidden_dim", "128", "--iw_samples", "20", "--quality_samples", "300",
             "--seed", "5"]),
    ("vae", ["-m", "experiments.vae_mc_vs_is", "--zdims", "2", "--n_images", "10",
             "--max_samples", "100", "--repeats", "2"]),
    ("vae_best", ["a3_vae_template.py", "--epochs", "3", "--max_images", "2000",
                  "--hidden_dim", "64", "--keep_best", "--warmup", "1", "--iw_samples", "5",
                  "--quality_samples", "0"]),
    ("gan", ["a3_gan_template.py", "--n_epochs", "2", "--max_images", "1920",
             "--save_interval", "20", "--quality_samples", "300", "--seed", "7"]),
    ("gan_plain", ["a3_gan_template.py", "--n_epochs", "2", "--max_images", "1280",
                   "--save_interval", "15", "--quality_samples", "200", "--d_dropout", "0",
                   "--real_label", "1", "--ema_decay", "0", "--dataset", "bmnist"]),
]
TIMINGS = ("seconds_per_epoch", "test_seconds", "code")


def run_all(runs, tree, data_dir, out):
    """Every run of `runs` from the code in `tree`, outputs under `out`."""
    for name, command in runs:
        flags = ["--data_dir", data_dir, "--out_dir", os.path.join(out, name)]
        done = subprocess.run([sys.executable, *command, *flags], cwd=tree, text=True,
                              capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode:
            sys.exit(f"error: {' '.join(command)} failed in {tree}:\n{done.stderr}")


def outputs(out):
    """name -> comparable content of every output file under `out`."""
    found = {}
    for folder, _, names in os.walk(out):
        for name in names:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, out)
            if name.endswith(".json"):
                with open(path) as f:
                    found[key] = {k: v for k, v in json.load(f).items() if k not in TIMINGS}
            elif name.endswith(".png"):
                with open(path, "rb") as f:
                    found[key] = f.read()
            elif name.endswith(".pt") and "checkpoint" not in name:
                found[key] = torch.load(path)
    return found


def same(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the earlier commit")
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--record", action="store_true",
                        help="write images/code_equivalence.json when all outputs agree")
    parser.add_argument("--only", nargs="+", choices=sorted({name for name, _ in RUNS}),
                        help="compare these runs only (a change meant to alter the others)")
    args = parser.parse_args()
    runs = [run for run in RUNS if not args.only or run[0] in args.only]
    data_dir = os.path.abspath(args.data_dir)
    base = subprocess.run(["git", "-C", ROOT, "rev-parse", args.base], check=True,
                          capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "base")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", tree, base],
                       check=True, capture_output=True)
        try:
            run_all(runs, tree, data_dir, os.path.join(tmp, "before"))
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree])
        run_all(runs, ROOT, data_dir, os.path.join(tmp, "after"))
        before, after = outputs(os.path.join(tmp, "before")), outputs(os.path.join(tmp, "after"))
        code = [load(os.path.join(tmp, "after"), k).get("code", {})
                for k in after if k.endswith(".json")]
    differ = sorted(k for k in set(before) | set(after)
                    if k not in before or k not in after or not same(before[k], after[k]))
    for key in sorted(set(before) | set(after)):
        print(f"{'DIFFERENT' if key in differ else 'same':>9}  {key}")
    if differ:
        sys.exit(f"error: {len(differ)} of {len(after)} outputs differ from {base[:8]}'s")
    print(f"all {len(after)} outputs are identical to those of {base[:8]}")
    if args.record:
        commits = {c.get("commit") for c in code}
        if len(commits) != 1 or None in commits or any(c.get("uncommitted_changes")
                                                        for c in code):
            sys.exit("error: --record needs the compared code committed")
        files = sorted({f for c in code for f in c.get("files", [])})
        record = {"base": base, "commit": commits.pop(), "files": files,
                  "checked_by": f"python -m report.same_outputs --base {base[:8]}"
                                + (f" --only {' '.join(args.only)}" if args.only else ""),
                  "runs": [" ".join(command) for _, command in runs]}
        path = os.path.join(ROOT, "images", "code_equivalence.json")
        with open(path + ".tmp", "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        os.replace(path + ".tmp", path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
