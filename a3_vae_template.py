"""Variational auto-encoder on binarized MNIST (assignment 3, questions 1.12-1.15).

q(z|x) = N(mu(x), diag sigma^2(x)) and a Bernoulli decoder p(x|z), both MLPs;
the ELBO is written out by hand: Bernoulli log-likelihood from logits, the
closed-form KL to N(0, I) and one reparametrized sample per image.

    python a3_vae_template.py --data_dir ../shared/datasets --zdim 20
"""
import argparse
import math
import os
import shlex
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.stats import norm  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

import sample_quality  # noqa: E402
import utils  # noqa: E402
from datasets import DataError, bmnist  # noqa: E402

PIXELS = 784
LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------ the ELBO
def bernoulli_log_likelihood(logits, x):
    """log p(x | logits), summed over pixels.

    x log s(l) + (1 - x) log(1 - s(l)) simplifies to x l - softplus(l), which
    never forms log(0) and stays exact for logits of any size. Broadcasts, so
    k samples of logits (k, B, 784) can share one batch x (B, 784).
    """
    return (x * logits - F.softplus(logits)).sum(-1)


def gaussian_kl(mean, logvar):
    """KL(N(mean, diag exp(logvar)) || N(0, I)), summed over dimensions."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def log_normal(z, mean, logvar):
    """log N(z; mean, diag exp(logvar)), summed over dimensions."""
    return -0.5 * (LOG_2PI + logvar + (z - mean).pow(2) * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z):
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def reparametrize(mean, logvar):
    """z = mean + sigma * eps with eps ~ N(0, I): the noise carries no
    parameters, so gradients reach the encoder through mean and sigma."""
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


# ------------------------------------------------------------------ the model
def mlp(sizes):
    """Linear layers with ELU in between: of ELU, ReLU and softplus, ELU
    trains fastest here (bench/vae_activations.py)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ELU())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(z|x): two hidden layers, then the mean and log-variance of z."""

    def __init__(self, hidden_dim=500, z_dim=20):
        super().__init__()
        self.net = mlp([PIXELS, hidden_dim, hidden_dim, 2 * z_dim])

    def forward(self, input):
        """Return the mean and the log-variance (not std: its log is what the
        KL needs, and exp() keeps the variance positive) of q(z|x)."""
        mean, logvar = self.net(input).chunk(2, dim=-1)
        return mean, logvar


class Decoder(nn.Module):
    """p(x|z): a product of Bernoullis, one per pixel."""

    def __init__(self, hidden_dim=500, z_dim=20):
        super().__init__()
        self.net = mlp([z_dim, hidden_dim, hidden_dim, PIXELS])

    def logits(self, z):
        """The Bernoulli logits; the loss uses these for numerical stability."""
        return self.net(z)

    def forward(self, input):
        """The Bernoulli means f(z) in [0, 1]."""
        return torch.sigmoid(self.logits(input))


class VAE(nn.Module):

    def __init__(self, hidden_dim=500, z_dim=20):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = Encoder(hidden_dim, z_dim)
        self.decoder = Decoder(hidden_dim, z_dim)

    def elbo_terms(self, x):
        """Per-image reconstruction term E_q[log p(x|z)] (one reparametrized
        sample of z) and KL(q(z|x) || p(z)), shape (B,) each."""
        mean, logvar = self.encoder(x)
        z = reparametrize(mean, logvar)
        recon = bernoulli_log_likelihood(self.decoder.logits(z), x)
        return recon, gaussian_kl(mean, logvar)

    def elbo(self, x):
        """Per-image ELBO, shape (B,), with one reparametrized sample of z."""
        recon, kl = self.elbo_terms(x)
        return recon - kl

    def forward(self, input, kl_weight=1.0):
        """The negative ELBO averaged over the batch (the training loss).

        kl_weight < 1 down-weights the KL term (warm-up); the result is then
        no longer the negative ELBO.
        """
        recon, kl = self.elbo_terms(input.view(-1, PIXELS))
        return -(recon - kl_weight * kl).mean()

    @torch.no_grad()
    def sample(self, n_samples, generator=None):
        """Ancestral sampling: z ~ N(0, I), then x ~ Bernoulli(f(z)).

        Returns the binary images and the Bernoulli means, (n, 1, 28, 28) each.
        """
        device = next(self.parameters()).device
        z = torch.randn(n_samples, self.z_dim, generator=generator).to(device)
        im_means = self.decoder(z)
        u = torch.rand(im_means.shape, generator=generator).to(device)
        sampled_ims = (u < im_means).float()
        return sampled_ims.view(-1, 1, 28, 28), im_means.view(-1, 1, 28, 28)

    @torch.no_grad()
    def log_likelihood_iw(self, x, k, chunk=None):
        """Importance-sampled estimate of log p(x), shape (B,), with k samples
        from q(z|x) (Burda et al., 2016); a lower bound that tightens with k.

        log p(x) ~ logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k
        """
        x = x.view(-1, PIXELS)
        chunk = chunk or max(1, min(k, 2 ** 22 // (len(x) * PIXELS)))
        mean, logvar = self.encoder(x)
        log_w = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            std = torch.exp(0.5 * logvar)
            z = mean + std * torch.randn(n, *mean.shape, device=x.device)
            logits = self.decoder.logits(z)
            log_w.append(bernoulli_log_likelihood(logits, x) + log_standard_normal(z)
                         - log_normal(z, mean, logvar))
        return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)

    @torch.no_grad()
    def log_likelihood_prior_mc(self, x, k, chunk=None):
        """Naive Monte-Carlo estimate of log p(x), shape (B,), with k samples
        from the prior (question 1.4); also a lower bound that tightens with k.

        log p(x) ~ logsumexp_i log p(x|z_i) - log k,  z_i ~ N(0, I)

        Inefficient: p(x|z) is negligible outside the small region of z that
        explains x, and the prior's chance of landing there shrinks roughly
        exponentially with z_dim, so the few samples that count are rare.
        """
        x = x.view(-1, PIXELS)
        chunk = chunk or max(1, min(k, 2 ** 22 // (len(x) * PIXELS)))
        log_lik = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            z = torch.randn(n, len(x), self.z_dim, device=x.device, dtype=x.dtype)
            log_lik.append(bernoulli_log_likelihood(self.decoder.logits(z), x))
        return torch.logsumexp(torch.cat(log_lik), dim=0) - math.log(k)


# ---------------------------------------------------------------- training
def epoch_iter(model, data, optimizer, stop=None, epoch=0, kl_weight=1.0):
    """One pass over `data`; trains when the model is in training mode.

    The loss down-weights the KL by kl_weight (KL warm-up); the returned
    figure is always the true average ELBO in nats per image.
    """
    total, count = 0.0, 0
    for i, imgs in enumerate(data, start=1):
        if stop is not None:
            stop.check()
        with torch.set_grad_enabled(model.training):
            recon, kl = model.elbo_terms(imgs.view(-1, PIXELS))
            loss = -(recon - kl_weight * kl).mean()
        elbo = (recon - kl).mean().item()
        if not math.isfinite(elbo):
            raise utils.TrainingError(f"the ELBO became {elbo} in epoch "
                                      f"{epoch}, iteration {i}; training stopped")
        if model.training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total += elbo * len(imgs)
        count += len(imgs)
    return total / count


def run_epoch(model, data, optimizer, stop=None, epoch=0, kl_weight=1.0):
    """Train on the training set, then evaluate on the validation set."""
    traindata, valdata = data
    model.train()
    train_elbo = epoch_iter(model, traindata, optimizer, stop, epoch, kl_weight)
    model.eval()
    val_elbo = epoch_iter(model, valdata, optimizer, stop, epoch)
    return train_elbo, val_elbo


@torch.no_grad()
def evaluate(model, data, iw_samples):
    """Average ELBO and importance-weighted NLL (nats per image) on `data`,
    printing progress since the IW estimate takes a while."""
    model.eval()
    n_images = len(data.data)
    elbo = nll = 0.0
    done, shown = 0, 0
    started = time.time()
    for imgs in data:
        x = imgs.view(-1, PIXELS)
        elbo += model.elbo(x).sum().item()
        nll -= model.log_likelihood_iw(x, iw_samples).sum().item()
        done += len(x)
        if done * 10 // n_images > shown:
            shown = done * 10 // n_images
            print(f"  test evaluation: {done}/{n_images} images, "
                  f"{time.time() - started:.0f} s", flush=True)
    return elbo / n_images, nll / n_images


# ------------------------------------------------------------------ figures
def save_elbo_plot(train_curve, val_curve, filename):
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(train_curve) + 1)
    ax.plot(epochs, train_curve, label="train")
    ax.plot(epochs, val_curve, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("average ELBO (nats per image)")
    ax.legend()
    ax.grid(alpha=0.3)
    utils.save_figure(fig, filename)
    plt.close(fig)


def save_samples(model, seed, filename, n=64):
    """Binary samples (left) beside the Bernoulli means they were drawn from
    (right); the same seed every time, so the grids over training compare."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    sampled_ims, im_means = model.sample(n, generator)
    nrow = int(math.sqrt(n))
    left = make_grid(sampled_ims.cpu(), nrow=nrow, pad_value=0.5)
    right = make_grid(im_means.cpu(), nrow=nrow, pad_value=0.5)
    gap = torch.ones(3, left.shape[1], 8)
    utils.save_png(torch.cat([left, gap, right], dim=2), filename)


@torch.no_grad()
def save_manifold(model, filename, n=20):
    """Decoder means on an n x n grid of z covering the prior's bulk: the
    inverse CDF of evenly spaced points in (0, 1), as in Kingma & Welling."""
    model.eval()
    ticks = torch.tensor(norm.ppf((torch.arange(n) + 0.5) / n), dtype=torch.float32)
    z1, z2 = torch.meshgrid(ticks, ticks.flip(0), indexing="xy")  # z2 grows upwards
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)
    device = next(model.parameters()).device
    means = model.decoder(z.to(device)).view(-1, 1, 28, 28).cpu()
    utils.save_png(make_grid(means, nrow=n, padding=0), filename)


# ---------------------------------------------------------------- the run
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", default=40, type=utils.positive_int,
                        help="max number of epochs")
    parser.add_argument("--zdim", default=20, type=utils.positive_int,
                        help="dimensionality of latent space")
    parser.add_argument("--hidden_dim", default=512, type=utils.positive_int,
                        help="units in each of the two hidden layers")
    parser.add_argument("--batch_size", default=128, type=utils.positive_int)
    parser.add_argument("--lr", default=1e-3, type=utils.positive_float,
                        help="Adam's initial learning rate (cosine decay to 0)")
    parser.add_argument("--warmup", default=0, type=utils.nonneg_int,
                        help="KL warm-up: epoch e (from 1) weights the KL term by "
                             "min(1, e/(N+1)); 0 trains on the ELBO throughout")
    parser.add_argument("--keep_best", action="store_true",
                        help="test the weights of the epoch with the best "
                             "validation ELBO (early stopping) instead of the last")
    parser.add_argument("--iw_samples", default=500, type=utils.positive_int,
                        help="importance samples per test image for the NLL")
    parser.add_argument("--quality_samples", default=10000, type=utils.nonneg_int,
                        help="samples scored by sample_quality.py after training "
                             "(needs the labelled MNIST test set; 0: skip)")
    parser.add_argument("--seed", default=0, type=utils.nonneg_int)
    parser.add_argument("--max_images", default=0, type=utils.nonneg_int,
                        help="train on the first N training images (0: all)")
    parser.add_argument("--data_dir", default="./data",
                        help="folder holding binarized_mnist/ (downloaded if missing)")
    parser.add_argument("--out_dir", default="images", help="figures and metrics")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out_dir")
    args = parser.parse_args(argv)
    args.device = utils.resolve_device(parser, args.device)
    utils.check_writable_dir(parser, args.out_dir)
    return args


def training_config(args):
    """The flags a checkpoint must share with the run that resumes it."""
    keys = ("epochs", "zdim", "hidden_dim", "batch_size", "lr", "warmup", "keep_best",
            "seed", "max_images")
    return {k: getattr(args, k) for k in keys}


def output_path(args, suffix):
    return os.path.join(args.out_dir, f"vae_z{args.zdim}_{suffix}")


def save_checkpoint(args, model, optimizer, scheduler, history, best):
    utils.save_torch({"config": training_config(args), "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "best": best,
                      "rng": utils.rng_state(), "history": history},
                     output_path(args, "checkpoint.pt"))


def load_data(args):
    train, val, test = bmnist(args.data_dir, args.batch_size, device=args.device)
    if args.max_images:
        train.data = train.data[:args.max_images]
    return (train, val), test


def train(args, model, data, optimizer, scheduler, history, best):
    """Train up to args.epochs, checkpointing after every epoch. With
    --keep_best, best["model"] holds the weights of the best validation
    ELBO so far."""
    halfway = args.epochs // 2
    with utils.StopOnSigint() as stop:
        for epoch in range(len(history["train_elbo"]) + 1, args.epochs + 1):
            started = time.time()
            kl_weight = min(1.0, epoch / (args.warmup + 1))
            train_elbo, val_elbo = run_epoch(model, data, optimizer, stop, epoch, kl_weight)
            scheduler.step()
            history["train_elbo"].append(train_elbo)
            history["val_elbo"].append(val_elbo)
            history["seconds_per_epoch"].append(time.time() - started)
            print(f"[Epoch {epoch}/{args.epochs}] train elbo: {train_elbo:.2f} "
                  f"val elbo: {val_elbo:.2f} "
                  f"({history['seconds_per_epoch'][-1]:.1f} s)", flush=True)
            if epoch in (halfway, args.epochs):
                save_samples(model, args.seed, output_path(args, f"samples_epoch{epoch}.png"))
            if args.keep_best and val_elbo >= max(history["val_elbo"]):
                best["model"] = {k: v.clone() for k, v in model.state_dict().items()}
            save_checkpoint(args, model, optimizer, scheduler, history, best)


def build_scorer(args, data):
    """Scores samples against the validation images; the summary includes
    the score of as many training images (what a perfect model would get)."""
    (train, val) = data
    reference = val.data.flatten(1).cpu()
    return sample_quality.scorer_for(args.data_dir, reference,
                                     train.data[:len(reference)].flatten(1).cpu())


def score_samples(model, args, scorer):
    """Quality of binary samples, and the Frechet distance of their
    Bernoulli means (smooth images, hence further from binary real digits)."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    sampled_ims, im_means = model.sample(args.quality_samples, generator)
    quality = scorer(sampled_ims)
    quality["means_frechet_distance"] = scorer(im_means)["frechet_distance"]
    return quality


def finish(args, model, test_data, history, best, quality=None):
    """Test numbers, figures, the model and the metrics file; `quality`, the
    scorer and its summary, adds the sample quality."""
    tested_epoch = len(history["val_elbo"])
    if args.keep_best:
        model.load_state_dict(best["model"])
        tested_epoch = 1 + max(range(tested_epoch), key=history["val_elbo"].__getitem__)
        print(f"testing the weights of epoch {tested_epoch} (best validation ELBO)")
    started = time.time()
    test_elbo, test_nll = evaluate(model, test_data, args.iw_samples)
    test_seconds = time.time() - started
    print(f"test elbo: {test_elbo:.2f}  test NLL (IW, k={args.iw_samples}): "
          f"{test_nll:.2f} nats per image")
    save_elbo_plot(history["train_elbo"], history["val_elbo"], output_path(args, "elbo.png"))
    if args.zdim == 2:
        save_manifold(model, output_path(args, "manifold.png"))
    utils.save_torch(model.state_dict(), os.path.join(args.out_dir, f"vae_z{args.zdim}.pt"))
    metrics = {**training_config(args), **history, "test_elbo": test_elbo,
               "test_nll_iw": test_nll, "iw_samples": args.iw_samples,
               "tested_epoch": tested_epoch, "test_seconds": test_seconds,
               "device": str(args.device),
               "train_images": args.max_images or 50_000}
    if quality is not None:
        scorer, summary = quality
        metrics["sample_quality"] = score_samples(model, args, scorer)
        metrics["quality_reference"] = summary
        print(f"sample quality: Frechet distance "
              f"{metrics['sample_quality']['frechet_distance']:.2f} "
              f"(real images: {summary['real_frechet_distance']:.2f})")
    utils.save_json(metrics, output_path(args, "metrics.json"))


def main(argv=None):
    args = parse_args(argv)
    utils.seed_everything(args.seed)
    try:
        data, test_data = load_data(args)
        # Needs the labelled test set: fails now, not after training.
        quality = build_scorer(args, data) if args.quality_samples else None
    except DataError as err:
        sys.exit(f"error: {err}")
    model = VAE(hidden_dim=args.hidden_dim, z_dim=args.zdim).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    history = {"train_elbo": [], "val_elbo": [], "seconds_per_epoch": []}
    best = {"model": None}
    checkpoint = output_path(args, "checkpoint.pt")
    try:
        if args.resume:
            ckpt = utils.load_checkpoint(checkpoint, training_config(args))
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            history = ckpt["history"]
            best = ckpt.get("best", best)
            utils.set_rng_state(ckpt["rng"])
            print(f"resuming after epoch {len(history['train_elbo'])}")
        else:
            save_samples(model, args.seed, output_path(args, "samples_epoch0.png"))
            save_checkpoint(args, model, optimizer, scheduler, history, best)
        train(args, model, data, optimizer, scheduler, history, best)
        finish(args, model, test_data, history, best, quality)
    except (utils.Interrupted, KeyboardInterrupt):  # the latter: during evaluation
        done = len(history["train_elbo"])
        command = shlex.join([sys.executable, *sys.argv] +
                             ([] if args.resume else ["--resume"]))
        print(f"interrupted: {checkpoint} holds epoch {done}; resume with: {command}")
        sys.exit(130)
    except utils.TrainingError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
