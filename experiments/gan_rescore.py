"""Finished GAN runs, scored again on today's sample score.

Training runs keep the score of the code that made them; to compare runs of
different code versions on one scale (issue: the step's new batching against
the earlier code, at an equal budget), this loads each run's moving-average
generator (gan_generator.pt beside its gan_metrics.json) and scores 10,000 of
its samples, drawn from the noise the run itself would score, with
sample_quality.py as it is now.

    python -m experiments.gan_rescore --data_dir ../shared/datasets \\
        --out images/gan_rescore.json old=runs/old_s0 new=runs/new_s0 ...
"""
import json
import os
import statistics
import sys

import torch

import a3_gan_template as gan
import utils

KEYS = ("frechet_distance", "two_sample_accuracy", "class_min_share")


def load_generator(folder, latent_dim):
    """A finished run's moving-average generator (its gan_generator.pt)."""
    generator = gan.Generator(latent_dim)
    generator.load_state_dict(torch.load(os.path.join(folder, "gan_generator.pt"),
                                         weights_only=True))
    return generator


def rescore(folder, data_dir, samples):
    """The run's training flags and code, and its generator's score."""
    with open(os.path.join(folder, "gan_metrics.json")) as f:
        metrics = json.load(f)
    args = gan.build_parser().parse_args([
        "--data_dir", data_dir, "--dataset", metrics["dataset"], "--seed", str(metrics["seed"]),
        "--latent_dim", str(metrics["latent_dim"]), "--quality_samples", str(samples)])
    score = gan.SampleScore(args, gan.real_images(args, "train"))
    result = score(load_generator(folder, args.latent_dim))
    return {"n_epochs": metrics["n_epochs"], "seed": metrics["seed"],
            "commit": metrics["code"]["commit"], **{k: result[k] for k in KEYS},
            "class_shares": result["class_shares"]}, score.summary


def main(argv=None):
    parser = utils.parser(__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--samples", type=utils.positive_int, default=10000)
    parser.add_argument("--out", required=True, help="JSON file")
    parser.add_argument("runs", nargs="+", metavar="NAME=FOLDER",
                        help="a group name and a finished run's --out_dir")
    args = parser.parse_args(argv)
    code, groups = utils.code_version(), {}
    try:
        for item in args.runs:
            name, _, folder = item.partition("=")
            scored, summary = rescore(folder, args.data_dir, args.samples)
            groups.setdefault(name, []).append(scored)
            print(f"{name} seed {scored['seed']}: Frechet distance "
                  f"{scored['frechet_distance']:.2f}, two-sample accuracy "
                  f"{scored['two_sample_accuracy']:.3f}, rarest digit "
                  f"{scored['class_min_share']:.3f}", flush=True)
    except (OSError, KeyError, ValueError) as err:
        sys.exit(f"error: {err}")
    result = {"quality_reference": summary, "code": code, "groups": {
        name: {"runs": runs, **{f"{k}_mean": statistics.mean(r[k] for r in runs)
                                for k in KEYS}} for name, runs in groups.items()}}
    utils.save_json(result, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
