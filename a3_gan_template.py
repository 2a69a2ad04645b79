"""A GAN on MNIST (assignment 3, part 2).

Trains the template's fully connected generator and discriminator with the
non-saturating GAN objective and writes, into --out_dir, sample grids during
training, a loss figure, the sample-quality score of sample_quality.py at
every save point, an interpolation between two generated digits of different
classes, the trained weights and a JSON summary.

Training on the binarized set (--dataset bmnist, the only training set
available offline) is harder than on grey-scale MNIST: real images sit exactly
on {-1, 1}, so a plain discriminator wins by spotting any value in between and
the generator is pushed towards saturated, speckled strokes and can drop
digit classes. Two cheap ways of keeping the discriminator from becoming
over-confident were chosen by measurement and are on by default: dropout in
the discriminator (--d_dropout 0.3) and one-sided label smoothing
(--real_label 0.9); --d_dropout 0 --real_label 1 is the plain template.

Run `python a3_gan_template.py --help` for the flags.
"""
import argparse
import os
import shlex
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import datasets
import sample_quality
import utils


# ---------------------------------------------------------------- arguments
def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n_epochs", type=utils.positive_int, default=200,
                        help="number of epochs")
    parser.add_argument("--batch_size", type=utils.positive_int, default=64,
                        help="batch size")
    parser.add_argument("--lr", type=utils.positive_float, default=0.0002,
                        help="learning rate of both optimisers")
    parser.add_argument("--latent_dim", type=utils.positive_int, default=100,
                        help="dimensionality of the latent space")
    parser.add_argument("--save_interval", type=utils.positive_int, default=500,
                        help="save a sample grid every SAVE_INTERVAL iterations")
    parser.add_argument("--quality_samples", type=utils.positive_int,
                        default=10000,
                        help="generated images scored (Frechet distance and "
                             "class coverage) at every save point")
    parser.add_argument("--d_dropout", type=float, default=0.3,
                        help="dropout probability after each hidden layer of "
                             "the discriminator (0 = the plain template)")
    parser.add_argument("--real_label", type=float, default=0.9,
                        help="target of D for real images (< 1 = one-sided "
                             "label smoothing, 1 = the plain template)")
    parser.add_argument("--dataset", choices=("mnist", "bmnist"), default="mnist",
                        help="grey-scale MNIST (downloaded when missing) or "
                             "the binarized training set")
    parser.add_argument("--data_dir", default="./data",
                        help="folder holding MNIST/ and binarized_mnist/")
    parser.add_argument("--max_images", type=utils.nonneg_int, default=0,
                        help="train on the first N images only (0 = all)")
    parser.add_argument("--out_dir", default="images",
                        help="folder for figures, weights and the checkpoint")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"),
                        default="auto", help="where to train")
    parser.add_argument("--seed", type=utils.nonneg_int, default=0, help="random seed")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out_dir>/gan_checkpoint.pt")
    return parser


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.d_dropout < 1.0:
        parser.error(f"--d_dropout must be in [0, 1), got {args.d_dropout}")
    if not 0.5 < args.real_label <= 1.0:
        parser.error(f"--real_label must be in (0.5, 1], got {args.real_label}")
    args.device = utils.resolve_device(parser, args.device)
    utils.check_writable_dir(parser, args.out_dir)
    return args


def training_config(args):
    """Every flag that changes the training trajectory; a checkpoint only
    resumes a run with the same values."""
    return {k: getattr(args, k) for k in (
        "n_epochs", "batch_size", "lr", "latent_dim", "save_interval",
        "d_dropout", "real_label", "seed", "dataset", "max_images")}


# --------------------------------------------------------------------- data
def load_data(args):
    """A shuffling loader of training images in [-1, 1], shape (B, 1, 28, 28),
    held in memory on the training device."""
    if args.dataset == "mnist":
        images = datasets.mnist(args.data_dir, args.batch_size,
                                device=args.device).data
    else:
        bits = datasets.load_bmnist_split(args.data_dir, "train")
        images = bits.to(args.device, torch.float32).view(-1, 1, 28, 28) * 2 - 1
    if args.max_images:
        images = images[:args.max_images]
    if len(images) < args.batch_size:
        raise datasets.DataError(f"{len(images)} training images cannot fill "
                                 f"one batch of {args.batch_size}")
    return datasets.TensorLoader(images, args.batch_size, shuffle=True,
                                 drop_last=True)


# ------------------------------------------------------------------- models
class Generator(nn.Module):
    """Maps noise z of shape (B, latent_dim) to images in [-1, 1] of shape
    (B, 1, 28, 28)."""

    def __init__(self, latent_dim=100):
        super().__init__()
        layers = [nn.Linear(latent_dim, 128), nn.LeakyReLU(0.2)]
        for n_in, n_out in ((128, 256), (256, 512), (512, 1024)):
            layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out),
                       nn.LeakyReLU(0.2)]
        layers += [nn.Linear(1024, 784), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z).view(-1, 1, 28, 28)


class Discriminator(nn.Module):
    """Maps images of shape (B, 1, 28, 28) (or (B, 784)) to LOGITS of shape
    (B,): D(x) = sigmoid(logit). Returning logits lets the losses use the
    numerically stable log-sigmoid instead of log(sigmoid(.))."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Linear(256, 1))

    def forward(self, img):
        return self.net(img.flatten(1)).squeeze(1)


# ------------------------------------------------------------------- losses
def discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """Binary cross-entropy of D: -log D(x) - log(1 - D(G(z))), batch means.

    From logits, -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) =
    softplus(l), so a confident D (|l| large) gives no inf and no NaN. A
    real_label below 1 (one-sided label smoothing) stops D from pushing its
    logits on real images ever higher; fakes keep target 0."""
    real = F.binary_cross_entropy_with_logits(
        real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits,
                                              torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits):
    """Non-saturating loss -log D(G(z)): unlike log(1 - D(G(z))) its gradient
    stays large while D still rejects the samples, early in training."""
    return F.softplus(-fake_logits).mean()


# -------------------------------------------------------------------- train
def train_step(imgs, discriminator, generator, optimizer_G, optimizer_D,
               latent_dim, real_label=1.0):
    """One update of D, then one of G, on a batch of real images.

    Returns a detached tensor [loss_D, loss_G, mean D(x), mean D(G(z))]; it is
    not turned into Python numbers here, so a GPU never waits on the CPU."""
    z = torch.randn(len(imgs), latent_dim, device=imgs.device)
    fake = generator(z)

    optimizer_D.zero_grad(set_to_none=True)
    real_logits = discriminator(imgs)
    fake_logits = discriminator(fake.detach())  # no gradient into G here
    loss_D = discriminator_loss(real_logits, fake_logits, real_label)
    loss_D.backward()
    optimizer_D.step()

    optimizer_G.zero_grad(set_to_none=True)
    loss_G = generator_loss(discriminator(fake))
    loss_G.backward()
    optimizer_G.step()

    return torch.stack([loss_D, loss_G, torch.sigmoid(real_logits).mean(),
                        torch.sigmoid(fake_logits).mean()]).detach()


CURVES = ("loss_D", "loss_G", "D_x", "D_G_z")


def check_finite(stats, epoch, first_iteration):
    """Raise TrainingError at the first iteration with a non-finite value."""
    bad = (~torch.isfinite(stats)).any(dim=1).nonzero()
    if len(bad):
        i = first_iteration + int(bad[0]) + 1
        raise utils.TrainingError(
            f"non-finite loss in epoch {epoch} at iteration {i}; the last good "
            "checkpoint is kept (try a smaller --lr)")


def train(dataloader, discriminator, generator, optimizer_G, optimizer_D,
          args, state, fixed_noise, stop, score):
    """Train from state["epoch"] to args.n_epochs, saving a checkpoint after
    each epoch. Returns False when stopped by Ctrl-C (the partial epoch is
    dropped), True when all epochs are done."""
    total = args.n_epochs * len(dataloader)
    for epoch in range(state["epoch"] + 1, args.n_epochs + 1):
        generator.train()
        discriminator.train()
        start, first = time.perf_counter(), state["iteration"]
        iteration, stats = first, []
        for imgs in dataloader:
            if stop.requested:
                return False
            stats.append(train_step(imgs, discriminator, generator, optimizer_G,
                                    optimizer_D, args.latent_dim,
                                    args.real_label))
            iteration += 1
            if is_sample_iteration(iteration, total, args.save_interval):
                check_finite(torch.stack(stats).cpu(), epoch, first)
                save_samples(generator, fixed_noise, iteration, args.out_dir)
                state["quality"].append({"iteration": iteration, **score(generator)})
        stats = torch.stack(stats).cpu()
        check_finite(stats, epoch, first)
        record_epoch(state, stats, time.perf_counter() - start)
        state["epoch"], state["iteration"] = epoch, iteration
        save_checkpoint(args, state, generator, discriminator, optimizer_G,
                        optimizer_D)
        print_epoch(state, args.n_epochs)
    return True


def record_epoch(state, stats, seconds):
    state["curves"] = torch.cat([state["curves"], stats.to(torch.float64)])
    for name, value in zip(CURVES, stats.to(torch.float64).mean(0).tolist()):
        state["metrics"][name].append(value)
    state["metrics"]["seconds_per_epoch"].append(seconds)


def print_epoch(state, n_epochs):
    m = state["metrics"]
    print(f"epoch {state['epoch']}/{n_epochs}  loss_D {m['loss_D'][-1]:.4f}  "
          f"loss_G {m['loss_G'][-1]:.4f}  D(x) {m['D_x'][-1]:.3f}  "
          f"D(G(z)) {m['D_G_z'][-1]:.3f}  {m['seconds_per_epoch'][-1]:.1f} s",
          flush=True)


# ------------------------------------------------------------- checkpoints
def checkpoint_path(args):
    return os.path.join(args.out_dir, "gan_checkpoint.pt")


def new_state():
    metrics = {name: [] for name in CURVES + ("seconds_per_epoch",)}
    return {"epoch": 0, "iteration": 0, "metrics": metrics, "quality": [],
            "curves": torch.zeros(0, len(CURVES), dtype=torch.float64)}


def save_checkpoint(args, state, generator, discriminator, optimizer_G,
                    optimizer_D):
    utils.save_torch({
        "config": training_config(args), **state,
        "generator": generator.state_dict(),
        "discriminator": discriminator.state_dict(),
        "optimizer_G": optimizer_G.state_dict(),
        "optimizer_D": optimizer_D.state_dict(),
        "rng": utils.rng_state(),
    }, checkpoint_path(args))


def resume(args, generator, discriminator, optimizer_G, optimizer_D):
    """Restore models, optimisers, RNG and progress; raises TrainingError when
    the checkpoint is missing, unreadable or from other settings."""
    ckpt = utils.load_checkpoint(checkpoint_path(args), training_config(args))
    generator.load_state_dict(ckpt["generator"])
    discriminator.load_state_dict(ckpt["discriminator"])
    optimizer_G.load_state_dict(ckpt["optimizer_G"])
    optimizer_D.load_state_dict(ckpt["optimizer_D"])
    utils.set_rng_state(ckpt["rng"])
    state = {k: ckpt[k] for k in ("epoch", "iteration", "metrics", "curves")}
    state["quality"] = ckpt.get("quality", [])  # absent before the quality score
    return state


def resume_command(argv):
    if "--resume" not in argv:
        argv = [*argv, "--resume"]
    return shlex.join([sys.executable, sys.argv[0], *argv])


# ----------------------------------------------------------------- outputs
def make_fixed_noise(args):
    """The noise behind every sample grid, from its own generator so that
    drawing it leaves the training RNG untouched."""
    rng = torch.Generator().manual_seed(args.seed)
    return torch.randn(25, args.latent_dim, generator=rng).to(args.device)


def is_sample_iteration(iteration, total, interval):
    return iteration % interval == 0 or iteration in (total // 2, total)


@torch.no_grad()
def generate(generator, z):
    """Images in [-1, 1]; eval mode, so BatchNorm uses its running statistics
    and sampling neither depends on the batch nor changes the model."""
    was_training = generator.training
    generator.eval()
    images = generator(z)
    generator.train(was_training)
    return images


def save_samples(generator, fixed_noise, iteration, out_dir):
    images = generate(generator, fixed_noise)
    utils.save_png(images, os.path.join(out_dir, f"gan_samples_iter{iteration}.png"),
                   nrow=5, normalize=True, value_range=(-1, 1))


def smooth(values, width):
    if len(values) < width or width < 2:
        return values
    kernel = torch.ones(1, 1, width, dtype=values.dtype) / width
    return F.conv1d(values.view(1, 1, -1), kernel).view(-1)


def plot_curves(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(1, min(200, len(curves) // 50))
    x = torch.arange(len(curves)) + 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for ax, (i, j), ylabel in ((top, (0, 1), "loss"),
                               (bottom, (2, 3), "mean discriminator output")):
        for k in (i, j):
            y = smooth(curves[:, k], width)
            ax.plot(x[width - 1:] if len(y) < len(x) else x, y,
                    label=("D loss", "G loss (non-saturating)", "D(x)",
                           "D(G(z))")[k])
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
    bottom.set_xlabel("iteration")
    title = "GAN training"
    if width > 1:
        title += f" (moving average over {width} iterations)"
    top.set_title(title)
    utils.save_figure(fig, path)
    plt.close(fig)


def stray_pixels(images):
    """Mean number per image of lit pixels (> 0) with no lit neighbour among
    their 8: speckle that clean strokes lack (binarized MNIST: ~0.05)."""
    lit = (images.cpu() > 0).float()
    ring = torch.ones(1, 1, 3, 3)
    ring[0, 0, 1, 1] = 0
    alone = (lit == 1) & (F.conv2d(lit, ring, padding=1) == 0)
    return float(alone.sum((1, 2, 3)).float().mean())


def pick_pair(labels, confidence):
    """Indices of the most confidently labelled sample and of the most
    confident one of another class (of the same class only when a collapsed
    generator makes nothing else)."""
    a = int(confidence.argmax())
    # Confidence is at most 1, so any other class outranks the same class.
    score = confidence + (labels != labels[a]).float()
    score[a] = -1.0
    return a, int(score.argmax())


@torch.no_grad()
def interpolate(generator, z_a, z_b, steps=7):
    """steps + 2 images along the line from z_a to z_b, both ends included."""
    t = torch.linspace(0, 1, steps + 2, device=z_a.device).unsqueeze(1)
    return generate(generator, (1 - t) * z_a + t * z_b)


# ------------------------------------------------------------ sample quality
def build_scorer(args, train_loader):
    """Scores generated images against held-out real ones: the validation
    split of binarized MNIST, or the grey-scale test set for --dataset mnist.
    The summary it returns includes the score of 10k training images, about
    the best a model can reach with this many samples."""
    if args.dataset == "mnist":
        reference, _ = datasets.load_mnist_test(args.data_dir)
    else:
        reference = datasets.load_bmnist_split(args.data_dir, "valid").float()
    real = to_unit(train_loader.data[:len(reference)])
    return sample_quality.scorer_for(args.data_dir, reference, real)


def to_unit(images):
    """[-1, 1] (the generator's tanh) to [0, 1] (the classifier's input)."""
    return (images.cpu().flatten(1) + 1) / 2


def make_quality_noise(args):
    """The same noise at every save point, from its own RNG, so that scores
    over training differ only through the generator, and training's random
    stream is untouched."""
    rng = torch.Generator().manual_seed(args.seed + 1)
    return torch.randn(args.quality_samples, args.latent_dim,
                       generator=rng).to(args.device)


def plot_quality(quality, summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [q["iteration"] for q in quality]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.semilogy(x, [q["frechet_distance"] for q in quality], label="generator")
    top.axhline(summary["real_frechet_distance"], color="k", ls="--",
                label="real training images")
    top.set_ylabel("Frechet distance")
    bottom.plot(x, [q["class_min_share"] for q in quality], label="generator")
    bottom.axhline(0.1, color="k", ls="--", label="every digit equally often")
    bottom.set_ylabel("share of the rarest digit")
    bottom.set_xlabel("iteration")
    for ax in (top, bottom):
        ax.legend()
        ax.grid(alpha=0.3)
    top.set_title(f"GAN samples vs held-out digits ({quality[-1]['images']} "
                  "per point, classifier features)")
    utils.save_figure(fig, path)
    plt.close(fig)


def evaluate(generator, scorer, quality_noise, args):
    """The final generator: sample quality, speckle, and the interpolation
    between two confidently labelled samples of different classes."""
    samples = generate(generator, quality_noise)
    labels, confidence = sample_quality.predict(scorer.classifier, to_unit(samples))
    a, b = pick_pair(labels, confidence)
    row = interpolate(generator, quality_noise[a], quality_noise[b])
    utils.save_png(row, os.path.join(args.out_dir, "gan_interpolation.png"),
                   nrow=len(row), normalize=True, value_range=(-1, 1))
    row_labels, _ = sample_quality.predict(scorer.classifier, to_unit(row))
    return {**scorer(to_unit(samples)),
            "stray_pixels_per_image": stray_pixels(samples),
            "interpolation": {
                "labels": [int(labels[a]), int(labels[b])],
                "different_classes": bool(labels[a] != labels[b]),
                "confidences": [float(confidence[a]), float(confidence[b])],
                "steps": len(row) - 2,
                "labels_along_path": row_labels.tolist()}}


def write_outputs(args, state, generator, discriminator, scorer, summary,
                  quality_noise):
    out = args.out_dir
    utils.save_torch(generator.state_dict(), os.path.join(out, "gan_generator.pt"))
    utils.save_torch(discriminator.state_dict(),
                     os.path.join(out, "gan_discriminator.pt"))
    plot_curves(state["curves"], os.path.join(out, "gan_losses.png"))
    plot_quality(state["quality"], summary, os.path.join(out, "gan_quality.png"))
    metrics = {"device": str(args.device), "dataset": args.dataset,
               "n_epochs": args.n_epochs, "iterations": state["iteration"],
               "config": training_config(args), **state["metrics"],
               **evaluate(generator, scorer, quality_noise, args),
               "quality_reference": summary,
               "quality_over_training": {
                   key: [q[key] for q in state["quality"]] for key in (
                       "iteration", "frechet_distance", "class_min_share",
                       "class_entropy_normalized")}}
    utils.save_json(metrics, os.path.join(out, "gan_metrics.json"))


# -------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    utils.seed_everything(args.seed)
    try:
        dataloader = load_data(args)
        # Needs the labelled test set: fails now, not after hours of training.
        scorer, summary = build_scorer(args, dataloader)
        quality_noise = make_quality_noise(args)

        def score(generator):
            return scorer(to_unit(generate(generator, quality_noise)))

        generator = Generator(args.latent_dim).to(args.device)
        discriminator = Discriminator(args.d_dropout).to(args.device)
        optimizer_G = torch.optim.Adam(generator.parameters(), lr=args.lr,
                                       betas=(0.5, 0.999))
        optimizer_D = torch.optim.Adam(discriminator.parameters(), lr=args.lr,
                                       betas=(0.5, 0.999))
        fixed_noise = make_fixed_noise(args)
        if args.resume:
            state = resume(args, generator, discriminator, optimizer_G,
                           optimizer_D)
        else:
            state = new_state()
            save_samples(generator, fixed_noise, 0, args.out_dir)
            state["quality"].append({"iteration": 0, **score(generator)})
            save_checkpoint(args, state, generator, discriminator, optimizer_G,
                            optimizer_D)
        with utils.StopOnSigint() as stop:
            finished = train(dataloader, discriminator, generator, optimizer_G,
                             optimizer_D, args, state, fixed_noise, stop, score)
        if not finished:
            print(f"interrupted: {checkpoint_path(args)} holds epoch "
                  f"{state['epoch']}; resume with: {resume_command(argv)}")
            return 130
        write_outputs(args, state, generator, discriminator, scorer, summary,
                      quality_noise)
    except (datasets.DataError, utils.TrainingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
