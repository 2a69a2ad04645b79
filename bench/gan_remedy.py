"""Does the GAN's remedy for binarized data work? The plain template recipe
against the script's defaults, trained side by side with the same budget.

Runs a3_gan_template.py twice on --dataset bmnist for --n_epochs epochs:
plain (--d_dropout 0 --real_label 1) and the defaults (dropout in D and
one-sided label smoothing). Each run scores 10,000 of its samples with
sample_quality.py; this script collects the Frechet distance to held-out
digits, the class coverage and the stray-pixel count (lit pixels without a
lit neighbour) of both, next to the values of real binarized digits, into
--out (JSON) and prints a table.

    python bench/gan_remedy.py --data_dir ../shared/datasets --n_epochs 10
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import a3_gan_template as gan  # noqa: E402
import datasets  # noqa: E402
import utils  # noqa: E402

RECIPES = {"plain template": ["--d_dropout", "0", "--real_label", "1"],
           "defaults (remedy)": []}
KEYS = ("frechet_distance", "class_shares", "class_min_share", "class_entropy_normalized",
        "stray_pixels_per_image")


def run(flags, args, out_dir):
    command = [sys.executable, os.path.join(ROOT, "a3_gan_template.py"), "--dataset",
               "bmnist", "--data_dir", args.data_dir, "--n_epochs", str(args.n_epochs),
               "--seed", str(args.seed), "--save_interval", "100000",
               "--out_dir", out_dir, *flags]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out_dir, "gan_metrics.json")) as f:
        metrics = json.load(f)
    return {k: metrics[k] for k in KEYS}, metrics["quality_reference"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--n_epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="images/gan_remedy.json")
    args = parser.parse_args()

    real = datasets.load_bmnist_split(args.data_dir, "valid")[:5000]
    result = {"n_epochs": args.n_epochs, "seed": args.seed,
              "real_stray_pixels_per_image":
                  gan.stray_pixels(real.float().view(-1, 1, 28, 28) * 2 - 1),
              "recipes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, flags) in enumerate(RECIPES.items()):
            scores, reference = run(flags, args, os.path.join(tmp, str(i)))
            result["recipes"][name] = {"flags": " ".join(flags) or "(none)", **scores}
    result["real_frechet_distance"] = reference["real_frechet_distance"]
    result["real_class_min_share"] = reference["real_class_min_share"]
    print(f"{'recipe':>18}  Frechet  min share  entropy  stray px/image")
    for name, r in result["recipes"].items():
        print(f"{name:>18}  {r['frechet_distance']:7.1f}  {r['class_min_share']:9.3f}  "
              f"{r['class_entropy_normalized']:7.3f}  {r['stray_pixels_per_image']:.2f}")
    print(f"{'real digits':>18}  {result['real_frechet_distance']:7.1f}  "
          f"{result['real_class_min_share']:9.3f}  {'':7}  "
          f"{result['real_stray_pixels_per_image']:.3f}")
    if args.out:
        utils.save_json(result, args.out)


if __name__ == "__main__":
    main()
