"""How low does D(G(z)) go early in training? Question 2.4 says that early on
D rejects the samples (D(G(z)) near 0), which is why G needs the
non-saturating loss. This trains the first epoch of both recipes of
experiments/gan_remedy.py from the same seeds with the script's own step and
records the mean D(x) and D(G(z)) of every WINDOW iterations.

    python -m experiments.gan_early --data_dir ../shared/datasets
"""
import statistics
import sys

import torch

import a3_gan_template as gan
import datasets
import utils
from experiments.gan_remedy import RECIPES

WINDOW = 25  # iterations per recorded mean


def first_epoch(images, flags, seed):
    """The window means of D(x) and D(G(z)) over one epoch of a recipe, and
    the epoch's mean D(G(z))."""
    args = gan.build_parser().parse_args(["--seed", str(seed), "--device", "cpu", *flags])
    torch.manual_seed(seed)
    generator, discriminator, optimizer_G, optimizer_D = gan.build_models(args)
    stats = [gan.train_step(batch, discriminator, generator, optimizer_G, optimizer_D,
                            args.latent_dim, args.real_label)
             for batch in datasets.TensorLoader(images, args.batch_size, shuffle=True,
                                                drop_last=True)]
    curves = {name: [s[name].item() for s in stats] for name in ("D_x", "D_G_z")}
    return {"D_G_z_epoch_mean": statistics.mean(curves["D_G_z"]),
            **{name: [round(statistics.mean(c[i:i + WINDOW]), 4) for i in range(0, len(c), WINDOW)]
               for name, c in curves.items()}}


def main(argv=None):
    parser = utils.parser(__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--seeds", type=utils.seed, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="images/gan_early.json")
    args = parser.parse_args(argv)
    code = utils.code_version()
    try:
        images = gan.real_images(gan.build_parser().parse_args(
            ["--data_dir", args.data_dir]), "train")
    except utils.RunError as err:
        sys.exit(f"error: {err}")
    result = {"window": WINDOW, "seeds": args.seeds, "recipes": {}}
    for name, flags in RECIPES.items():
        runs = [first_epoch(images, flags, seed) for seed in args.seeds]
        lowest = [min(run["D_G_z"]) for run in runs]
        result["recipes"][name] = {
            "flags": " ".join(flags), "runs": runs,
            "D_G_z_first_window_mean": statistics.mean(run["D_G_z"][0] for run in runs),
            "D_G_z_lowest_window": min(lowest),
            "D_G_z_epoch_mean": statistics.mean(run["D_G_z_epoch_mean"] for run in runs)}
        print(f"{name:>26}: D(G(z)) lowest {WINDOW}-iteration mean {min(lowest):.3f}, "
              f"epoch mean {result['recipes'][name]['D_G_z_epoch_mean']:.3f}", flush=True)
    result["code"] = code
    utils.save_json(result, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
