"""Which GAN recipe gives better digits? The plain template (no dropout in D,
real label 1, the last iterate) against ours (the script's defaults: dropout
0.3, real label 0.9, G's moving average), same seeds, same budget: trains
a3_gan_template.main in-process into temporary folders and scores 10,000
samples (seeded noise) of each final generator against the grey-scale test
digits; writes the scores and their mean and std over the seeds to --out.

    python -m experiments.gan_remedy --data_dir ../shared/datasets  # ~30 min
"""

import os
import statistics
import tempfile

import torch

import a3_gan_template as gan
import sample_quality
import utils
from experiments import common

RECIPES = {
    "plain template": ["--d_dropout", "0", "--real_label", "1", "--ema_decay", "0"],
    "dropout + label smoothing + moving average": [],
}


def train_and_score(flags, args, seed, out_dir, scorer):
    """One run of the script, then the scores of its gan_generator.pt (the
    moving average; with decay 0 the last iterate) on seeded noise."""
    argv = ["--data_dir", args.data_dir, "--n_epochs", str(args.n_epochs), "--seed", str(seed)]
    argv += ["--max_images", str(args.max_images), "--quality_interval", "0"]
    if gan.main(argv + ["--save_interval", str(10**6), "--out_dir", out_dir, *flags]):
        raise utils.RunError(f"the run with seed {seed} and flags {flags} failed")
    generator = common.load(gan.Generator(), os.path.join(out_dir, "gan_generator.pt"))
    noise = torch.randn(args.samples, 100, generator=torch.Generator().manual_seed(0))
    score = scorer((gan.generate(generator, noise) + 1) / 2, two_sample=True)
    return {"seed": seed, **{k: score[k] for k in common.SCORES}}


def study(args):
    classifier, info = sample_quality.load_classifier()
    scorer = sample_quality.Scorer(sample_quality.unit_images(args.data_dir, "test")[0], classifier)
    result = {"n_epochs": args.n_epochs, "seeds": args.seeds, "samples": args.samples}
    result.update(classifier=info, recipes={})
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, flags) in enumerate(RECIPES.items()):
            runs = [train_and_score(flags, args, s, f"{tmp}/{i}_{s}", scorer) for s in args.seeds]
            recipe = {"flags": " ".join(flags) or "the script's defaults", "runs": runs}
            for k, values in ((k, [r[k] for r in runs]) for k in common.SCORES):
                recipe[f"{k}_mean"] = statistics.mean(values)
                recipe[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            result["recipes"][name] = recipe
            print(f"{name}: " + ", ".join(f"{k} {recipe[k + '_mean']:.3f}" for k in common.SCORES))
    return result


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "gan_remedy_mnist.json"))
    p.add_argument("--n_epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=10_000, help="generated images scored")
    p.add_argument("--max_images", type=int, default=0, help="training images (0: all)")
    common.finish(study, p.parse_args())
