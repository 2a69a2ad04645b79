"""Which GAN recipe gives better digits? The plain template against dropout in
the discriminator with one-sided label smoothing, trained with the same budget
and the same seeds, scored by sample_quality.py.

Runs a3_gan_template.py for every recipe and seed, collects the Frechet
distance to held-out digits, the two-sample test's accuracy, the class
coverage and the stray-pixel count of 10,000 samples of each final
generator, and writes them with their mean and spread over the seeds to
--out (JSON).

    python -m experiments.gan_remedy --data_dir ../shared/datasets --dataset mnist
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

import utils

RECIPES = {"plain template": ["--d_dropout", "0", "--real_label", "1"],
           "dropout + label smoothing": ["--d_dropout", "0.3", "--real_label", "0.9"]}
KEYS = ("frechet_distance", "two_sample_accuracy", "class_min_share", "stray_pixels_per_image")


def run(flags, args, seed, out_dir):
    """One training run; its final scores and its metrics. A failed run
    stops the comparison with the run's own message."""
    command = [sys.executable, os.path.join(utils.ROOT, "a3_gan_template.py"),
               "--dataset", args.dataset, "--data_dir", args.data_dir,
               "--n_epochs", str(args.n_epochs), "--seed", str(seed),
               "--save_interval", "1000000000", "--out_dir", out_dir, *flags]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if done.returncode:
        raise utils.RunError(f"the training run with seed {seed} and flags "
                             f"'{' '.join(flags)}' failed: "
                             f"{done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
    with open(os.path.join(out_dir, "gan_metrics.json")) as f:
        metrics = json.load(f)
    return {k: metrics[k] for k in KEYS}, metrics


def main(argv=None):
    parser = utils.parser(__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--dataset", choices=("mnist", "bmnist"), default="mnist")
    parser.add_argument("--n_epochs", type=utils.positive_int, default=10)
    parser.add_argument("--seeds", type=utils.seed, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None,
                        help="JSON file (default: images/gan_remedy_<dataset>.json)")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must be distinct")
    out = args.out or os.path.join("images", f"gan_remedy_{args.dataset}.json")
    try:
        compare(args, out)
    except utils.RunError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)


def compare(args, out):
    result = {"dataset": args.dataset, "n_epochs": args.n_epochs, "seeds": args.seeds,
              "recipes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in RECIPES.items():
            runs = []
            for seed in args.seeds:
                scores, metrics = run(flags, args, seed, os.path.join(tmp, f"{name}{seed}"))
                runs.append(scores)
                print(f"{name:>26} seed {seed}: " + "  ".join(
                    f"{k} {scores[k]:.3f}" for k in KEYS), flush=True)
            result["recipes"][name] = {
                "flags": " ".join(flags), "runs": runs,
                **{f"{k}_mean": statistics.mean(r[k] for r in runs) for k in KEYS},
                **{f"{k}_std": statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0
                   for k in KEYS}}
    result["quality_reference"] = metrics["quality_reference"]
    result["code"] = metrics["code"]  # the training runs' code
    utils.save_json(result, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
