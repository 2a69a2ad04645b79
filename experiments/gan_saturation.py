"""Question 2.4: does the saturating generator loss log(1 - D(G(z))) stall
early, against the non-saturating -log D(G(z))? From one seed, the script's G
and D are trained with each, in its train()'s step order and settings (Adam
2e-4, batch 64, dropout 0.3, real label 0.9). Every --window iterations it
records the means of D(x), of D(G(z)) in G's step, of G's loss and of the L2
norm of G's gradient; after each epoch the Frechet distance of 2,000 samples.
It only records. Writes --out and a figure beside it.

    python -m experiments.gan_saturation --data_dir ../shared/datasets  # ~3 min
"""

import os

import torch
import torch.nn.functional as F

import a3_gan_template as gan
import figures
import sample_quality
from datasets import TensorLoader
from experiments import common

CURVES = ("loss_G", "grad_norm_G", "D_x", "D_G_z")


def saturating_loss(fake_logits):
    """log(1 - D(G(z))) = -softplus(l), batch mean: G minimises it."""
    return -F.softplus(fake_logits).mean()


LOSSES = {
    "non-saturating -log D(G(z))": gan.generator_loss,
    "saturating log(1 - D(G(z)))": saturating_loss,
}


def train(loss, images, scorer, args):
    """The window means of CURVES and the Frechet distance after each epoch."""
    models, optimizers = common.gan_models(args.seed)
    loader = TensorLoader(images, 64, shuffle=True, drop_last=True)
    noise = torch.randn(args.samples, 100, generator=torch.Generator().manual_seed(args.seed))
    stats, frechet = [], []
    for epoch in range(args.n_epochs):
        stats += [common.gan_step(imgs, models, optimizers, loss, norm=True) for imgs in loader]
        frechet.append(scorer((gan.generate(models[0], noise) + 1) / 2)["frechet_distance"])
        print(f"{loss.__name__}, epoch {epoch + 1}: Frechet distance {frechet[-1]:.1f}")
    stats = torch.stack(stats).double()
    windows = stats[: len(stats) // args.window * args.window].view(-1, args.window, len(CURVES))
    return {**dict(zip(CURVES, windows.mean(1).T.tolist())), "frechet_distance": frechet}


def plot(result, path):
    """D(G(z)) and G's gradient norm against the iteration, for both losses."""
    runs = result["losses"].items()
    panels = [("mean D(G(z))", {name: r["D_G_z"] for name, r in runs})]
    panels += [("G's gradient norm", {name: r["grad_norm_G"] for name, r in runs})]
    title = f"seed {result['seed']}, means over {result['window']} iterations"
    figures.save_curves(path, panels, "iteration", title, x=result["iteration"])


def study(args):
    images = common.grey_train_images(args.data_dir)[: args.max_images or None]
    scorer = sample_quality.Scorer(sample_quality.unit_images(args.data_dir, "test")[0])
    result = {"seed": args.seed, "n_epochs": args.n_epochs, "window": args.window}
    result.update(samples=args.samples, iterations_per_epoch=len(images) // 64)
    result["losses"] = {name: train(loss, images, scorer, args) for name, loss in LOSSES.items()}
    windows = len(result["losses"][next(iter(LOSSES))]["D_G_z"])
    result["iteration"] = [(i + 1) * args.window for i in range(windows)]  # each window's last
    plot(result, common.figure_path(args.out))
    return result


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "gan_saturation.json"))
    p.add_argument("--n_epochs", type=int, default=3)
    p.add_argument("--window", type=int, default=25, help="iterations per recorded mean")
    p.add_argument("--samples", type=int, default=2000, help="samples per Frechet distance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_images", type=int, default=0, help="training images (0: all)")
    common.finish(study, p.parse_args())
