"""A VAE on binarized MNIST (assignment 3, questions 1.12-1.15): a Gaussian
encoder q(z|x) and a Bernoulli decoder p(x|z), both MLPs, trained on the ELBO
written out from logits (closed-form KL, one reparametrized sample per image).

    python a3_vae_template.py --data_dir ../shared/datasets
"""

import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import norm
from torchvision.utils import make_grid

import figures
import utils
from datasets.bmnist import bmnist


def mlp(sizes):
    """Linear layers with ELU between (faster here than tanh: experiments/vae_activations.py)."""
    layers = [nn.Linear(sizes[0], sizes[1])]
    for n_in, n_out in zip(sizes[1:-1], sizes[2:]):
        layers += [nn.ELU(), nn.Linear(n_in, n_out)]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    def __init__(self, hidden_dim=500, z_dim=20):
        super().__init__()
        self.net = mlp([784, hidden_dim, hidden_dim, 2 * z_dim])

    def forward(self, input):
        """Mean and std of q(z|x), shape [batch_size, z_dim] each; std = exp(h) > 0."""
        mean, log_std = self.net(input).chunk(2, dim=-1)
        return mean, log_std.exp()


class Decoder(nn.Module):
    def __init__(self, hidden_dim=500, z_dim=20):
        super().__init__()
        self.net = mlp([z_dim, hidden_dim, hidden_dim, 784])

    def logits(self, input):
        """The Bernoulli logits: every log-likelihood is computed from them."""
        return self.net(input)

    def forward(self, input):
        """The Bernoulli means f(z), shape [batch_size, 784]."""
        return torch.sigmoid(self.logits(input))


def log_bernoulli(logits, x):
    """log p(x | logits) summed over pixels: minus the BCE from logits, no log(0)."""
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def log_normal(z, mean, std):
    """log N(z; mean, diag std^2) summed over dimensions."""
    return -(0.5 * math.log(2 * math.pi) + std.log() + 0.5 * ((z - mean) / std).pow(2)).sum(-1)


def kl_divergence(mean, std):
    """KL(N(mean, diag std^2) || N(0, I)) in closed form, summed over dimensions."""
    return (0.5 * (mean.pow(2) + std.pow(2) - 1) - std.log()).sum(-1)


class VAE(nn.Module):
    def __init__(self, hidden_dim=500, z_dim=20):
        super().__init__()

        self.z_dim = z_dim
        self.encoder = Encoder(hidden_dim, z_dim)
        self.decoder = Decoder(hidden_dim, z_dim)

    def elbo(self, x):
        """Per-image ELBO, E_q[log p(x|z)] - KL(q(z|x) || p(z)), with one
        reparametrized sample z = mean + std * eps: the noise eps carries no
        parameter, so gradients reach the encoder through mean and std."""
        mean, std = self.encoder(x)
        z = mean + std * torch.randn_like(std)
        return log_bernoulli(self.decoder.logits(z), x) - kl_divergence(mean, std)

    def forward(self, input):
        """The negative ELBO averaged over the batch: the training loss."""
        average_negative_elbo = -self.elbo(input.view(-1, 784)).mean()
        return average_negative_elbo

    @torch.no_grad()
    def sample(self, n_samples, generator=None):
        """z ~ N(0, I), then x ~ Bernoulli(f(z)): the binary images and the
        Bernoulli means, [n_samples, 1, 28, 28] each."""
        device = next(self.parameters()).device
        z = torch.randn(n_samples, self.z_dim, generator=generator).to(device)
        im_means = self.decoder(z)
        u = torch.rand(im_means.shape, generator=generator).to(device)
        sampled_ims = (u < im_means).float()
        return sampled_ims.view(-1, 1, 28, 28), im_means.view(-1, 1, 28, 28)

    @torch.no_grad()
    def log_likelihood(self, x, k, chunk=2**22):
        """log p(x) ~ log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): a lower
        bound that tightens as k grows (Burda et al., 2016), shape [batch_size];
        a running logsumexp over chunks of at most `chunk` logits bounds memory."""
        mean, std = self.encoder(x)
        total = torch.full((len(x),), -math.inf, device=x.device)
        n = max(1, chunk // (len(x) * 784))
        for start in range(0, k, n):
            z = mean + std * torch.randn(min(n, k - start), *mean.shape, device=x.device)
            log_prior = log_normal(z, torch.zeros_like(z), torch.ones_like(z))
            log_w = log_bernoulli(self.decoder.logits(z), x) + log_prior - log_normal(z, mean, std)
            total = torch.logaddexp(total, log_w.logsumexp(0))
        return total - math.log(k)


def epoch_iter(model, data, optimizer):
    """One pass over `data`, training when model.training; returns the average
    ELBO in nats per image. The sum stays on the device until the end."""
    total = 0.0
    for imgs in data:
        with torch.set_grad_enabled(model.training):
            loss = model(imgs)
        if model.training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total = total + loss.detach() * len(imgs)
    average_epoch_elbo = -total / len(data.data)
    utils.check_finite(average_epoch_elbo, "in an epoch", 1e4)  # 784 ln 2 = 543 at chance
    return average_epoch_elbo.item()


def run_epoch(model, data, optimizer):
    """Run a train and validation epoch and return the average ELBO of each."""
    traindata, valdata = data

    model.train()
    train_elbo = epoch_iter(model, traindata, optimizer)

    model.eval()
    val_elbo = epoch_iter(model, valdata, optimizer)

    return train_elbo, val_elbo


def save_elbo_plot(train_curve, val_curve, filename):
    curves = {"train": train_curve, "validation": val_curve}
    figures.save_curves(filename, [("ELBO (nats per image)", curves)], "epoch")


def save_samples(model, seed, filename, n=25):
    """Binary samples (left) beside the Bernoulli means they were drawn from
    (right), from the same seed at every call, so that the grids compare."""
    model.eval()
    sampled_ims, im_means = model.sample(n, torch.Generator().manual_seed(seed))
    left, right = (make_grid(ims.cpu(), nrow=5, pad_value=0.5) for ims in (sampled_ims, im_means))
    figures.save_png(torch.cat([left, torch.ones(3, left.shape[1], 8), right], dim=2), filename)


@torch.no_grad()
def save_manifold(model, filename, n=20):
    """Decoder means on an n x n grid of z through the inverse normal CDF of
    evenly spaced points in (0, 1): the prior's bulk, as in Kingma & Welling."""
    model.eval()
    ticks = torch.tensor(norm.ppf((torch.arange(n) + 0.5) / n), dtype=torch.float32)
    z1, z2 = torch.meshgrid(ticks, ticks.flip(0), indexing="xy")  # z2 grows upwards
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1).to(next(model.parameters()).device)
    figures.save_png(model.decoder(z).view(-1, 1, 28, 28), filename, nrow=n, padding=0)


@torch.no_grad()
def evaluate(model, data, k):
    """The average ELBO and importance-weighted NLL (k samples) on `data`, in
    nats per image, with a progress line at least every half minute."""
    model.eval()
    elbo = nll = 0.0
    last = time.perf_counter()
    for i, imgs in enumerate(data):
        x = imgs.view(-1, 784)
        elbo, nll = elbo + model.elbo(x).sum(), nll - model.log_likelihood(x, k).sum()
        if time.perf_counter() - last > 30:
            print(f"test evaluation: {i + 1} of {len(data)} batches")
            last = time.perf_counter()
    averages = torch.stack([elbo, nll]) / len(data.data)
    utils.check_finite(averages, "in the test evaluation", 1e4)
    return averages.tolist()


def main(argv=None):
    args = build_parser().parse_args(argv)
    with utils.Run(args, f"vae_z{args.zdim}", argv) as run:
        torch.manual_seed(args.seed)
        train_data, val_data, test_data = bmnist(args.data_dir, device=run.device)
        train_data.data = train_data.data[: args.max_images or None]
        model = VAE(z_dim=args.zdim).to(run.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        # the step size decays to zero along a cosine: the last epoch's weights are settled
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
        state = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
        state.update(train_curve=[], val_curve=[], seconds=[])
        grids = [f"samples_epoch{e}.png" for e in {0, args.epochs // 2, args.epochs}]
        run.start([*grids, "elbo.png", "manifold.png", "model.pt"])
        if args.resume:
            print("resuming after epoch", run.load(state))
        else:
            save_samples(model, args.seed, run.path("samples_epoch0.png"))

        for epoch in range(run.epochs_done + 1, args.epochs + 1):
            started = time.perf_counter()
            train_elbo, val_elbo = run_epoch(model, (train_data, val_data), optimizer)
            scheduler.step()
            state["train_curve"].append(train_elbo)
            state["val_curve"].append(val_elbo)
            state["seconds"].append(time.perf_counter() - started)
            if epoch in (args.epochs // 2, args.epochs):  # samples halfway and at the end
                save_samples(model, args.seed, run.path(f"samples_epoch{epoch}.png"))
            run.save(state, epoch)
            print(f"[Epoch {epoch}] train elbo: {train_elbo:.2f} val_elbo: {val_elbo:.2f}")

        if args.zdim == 2:  # the learned data manifold
            save_manifold(model, run.path("manifold.png"))
        save_elbo_plot(state["train_curve"], state["val_curve"], run.path("elbo.png"))
        utils.save_torch(model.state_dict(), run.path("model.pt"))
        t0 = time.perf_counter()
        test_elbo, test_nll = evaluate(model, test_data, args.iw_samples)
        print(f"test elbo: {test_elbo:.2f}, test NLL (k = {args.iw_samples}): {test_nll:.2f}")
        metrics = {**run.config, "train_elbo": state["train_curve"], "val_elbo": state["val_curve"]}
        metrics.update(test_elbo=test_elbo, test_nll_iw=test_nll, train_images=len(train_data.data))
        metrics.update(seconds_per_epoch=state["seconds"], test_seconds=time.perf_counter() - t0)
        run.save_metrics(metrics)
    return run.status


def build_parser():
    return utils.parser(
        __doc__,
        "folder holding binarized_mnist/ (downloaded if missing)",
        ("--epochs", int, (1,), 40, "max number of epochs"),
        ("--zdim", int, (1,), 20, "dimensionality of latent space"),
        ("--iw_samples", int, (1,), 500, "importance samples per test image for the NLL"),
    )


if __name__ == "__main__":
    sys.exit(main())
