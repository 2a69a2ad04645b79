"""Variational auto-encoder on binarized MNIST (assignment 3, questions 1.12-1.15):
a Gaussian encoder q(z|x) and a Bernoulli decoder p(x|z), both MLPs, trained on
an ELBO written out by hand from logits (closed-form KL, one reparametrized
sample per image). Usage: python a3_vae_template.py --data_dir ../shared/datasets
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
import sample_quality
import utils
from datasets import bmnist, load_bmnist_split
from datasets.bmnist import SPLITS

PIXELS = 784
LOG_2PI = math.log(2 * math.pi)
# Logits per decoder pass when estimating log p(x) with many samples: 16 MB
# of float32, so that k = 5000 samples fit in memory on any machine.
CHUNK_LOGITS = 2 ** 22
# |ELBO| per image beyond which training has diverged: far past the 543 nats
# (784 ln 2) of a model that gives every pixel even odds.
DIVERGED = 1e4


# ------------------------------------------------------------- the ELBO's terms
def bernoulli_log_likelihood(logits, x):
    """log p(x | logits), summed over pixels; logits and x broadcast.
    x log s(l) + (1 - x) log(1 - s(l)) is minus the binary cross-entropy from
    logits: one fused kernel that never forms log(0)."""
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def gaussian_kl(mean, logvar):
    """KL(N(mean, diag exp(logvar)) || N(0, I)), summed over dimensions."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def log_normal(z, mean, logvar):
    """log N(z; mean, diag exp(logvar)), summed over dimensions. The residual
    is divided by sigma before squaring, which stays finite for any sample
    drawn from this Gaussian."""
    scaled = (z - mean) * torch.exp(-0.5 * logvar)
    return -0.5 * (LOG_2PI + logvar + scaled.pow(2)).sum(-1)


def log_standard_normal(z):
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def reparametrize(mean, logvar, n_samples=None):
    """z = mean + sigma * eps with eps ~ N(0, I): the noise carries no
    parameters, so gradients reach the encoder through mean and sigma.
    Shape of mean, or (n_samples, *mean.shape) for several samples each."""
    shape = mean.shape if n_samples is None else (n_samples, *mean.shape)
    eps = torch.randn(shape, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


# ------------------------------------------------------------------ the model
def mlp(sizes):
    """Linear layers with ELU in between (of ELU, ReLU and softplus, ELU
    trains fastest here: experiments/vae_activations.py)."""
    layers = [nn.Linear(sizes[0], sizes[1])]
    for n_in, n_out in zip(sizes[1:-1], sizes[2:]):
        layers += [nn.ELU(), nn.Linear(n_in, n_out)]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(z|x): two hidden layers, then the mean and log-variance of z."""

    def __init__(self, hidden_dim=512, z_dim=20):
        super().__init__()
        self.net = mlp([PIXELS, hidden_dim, hidden_dim, 2 * z_dim])

    def forward(self, input):
        """Mean and log-variance of q(z|x) (the log is what the KL needs)."""
        return self.net(input).chunk(2, dim=-1)


class Decoder(nn.Module):
    """p(x|z): a product of Bernoullis, one per pixel."""

    def __init__(self, hidden_dim=512, z_dim=20):
        super().__init__()
        self.net = mlp([z_dim, hidden_dim, hidden_dim, PIXELS])

    def logits(self, z):
        """The Bernoulli logits; every log-likelihood is computed from these."""
        return self.net(z)

    def forward(self, input):
        """The Bernoulli means f(z) in [0, 1]."""
        return torch.sigmoid(self.logits(input))


class VAE(nn.Module):

    def __init__(self, hidden_dim=512, z_dim=20):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = Encoder(hidden_dim, z_dim)
        self.decoder = Decoder(hidden_dim, z_dim)

    def elbo(self, x, kl_weight=1.0):
        """Per-image ELBO, shape (B,), with one reparametrized sample of z.

        kl_weight < 1 (KL warm-up) scales the gradient of the KL term only;
        the value stays the ELBO.
        """
        # under --bf16 the products give bfloat16; the ELBO sums in the data's precision
        mean, logvar = (t.to(x.dtype) for t in self.encoder(x))
        logits = self.decoder.logits(reparametrize(mean, logvar)).to(x.dtype)
        recon = bernoulli_log_likelihood(logits, x)
        kl = gaussian_kl(mean, logvar)
        if kl_weight != 1.0:
            kl = kl_weight * kl + (1.0 - kl_weight) * kl.detach()
        return recon - kl

    def forward(self, input, kl_weight=1.0):
        """The negative ELBO averaged over the batch: the training loss."""
        return -self.elbo(input.view(-1, PIXELS), kl_weight).mean()

    @torch.no_grad()
    def sample(self, n_samples, generator=None):
        """Ancestral sampling, z ~ N(0, I) then x ~ Bernoulli(f(z)): the binary
        images and the Bernoulli means, (n, 1, 28, 28) each."""
        device = next(self.parameters()).device
        z = torch.randn(n_samples, self.z_dim, generator=generator).to(device)
        im_means = self.decoder(z)
        u = torch.rand(im_means.shape, generator=generator).to(device)
        sampled_ims = (u < im_means).float()
        return sampled_ims.view(-1, 1, 28, 28), im_means.view(-1, 1, 28, 28)

    @torch.no_grad()
    def log_importance_weights(self, x, k, proposal="posterior"):
        """log w_i = log p(x, z_i) - log r(z_i) for k samples z_i of the proposal
        r, in chunks of shape (n, B) that bound the memory. "posterior": r =
        q(z|x) (the IW bound); "prior": r = p(z), so log w_i = log p(x|z_i), and
        as prior samples do not depend on x, all images share them."""
        x = x.view(-1, PIXELS)
        if proposal == "prior":
            chunk = max(1, CHUNK_LOGITS // PIXELS)
            for start in range(0, k, chunk):
                z = torch.randn(min(chunk, k - start), self.z_dim, device=x.device,
                                dtype=x.dtype)
                logits = self.decoder.logits(z)
                # x l - softplus(l) summed over pixels, for every (sample, image) pair
                yield logits @ x.T - F.softplus(logits).sum(-1, keepdim=True)
            return
        mean, logvar = self.encoder(x)
        chunk = max(1, CHUNK_LOGITS // (len(x) * PIXELS))
        for start in range(0, k, chunk):
            z = reparametrize(mean, logvar, min(chunk, k - start))
            yield (bernoulli_log_likelihood(self.decoder.logits(z), x)
                   + log_standard_normal(z) - log_normal(z, mean, logvar))


def log_likelihood(model, x, k, proposal="posterior", progress=None):
    """log p(x) ~ logsumexp_i log w_i - log k, shape (B,): a stochastic lower
    bound that tightens as k grows (Burda et al., 2016), computed as a running
    logsumexp over the chunks; progress(n) hears of every n pairs done."""
    total = torch.full((len(x),), -math.inf, device=x.device)
    for log_w in model.log_importance_weights(x, k, proposal):
        total = torch.logaddexp(total, log_w.logsumexp(0))
        if progress is not None:
            progress(log_w.numel())
    return total - math.log(k)


# ---------------------------------------------------------------- training
def epoch_iter(model, data, optimizer, kl_weight=1.0, bf16=False):
    """One pass over `data`, training when the model is in training mode;
    returns the average ELBO in nats per image. The sum stays on the device
    and is read once, so no batch waits for the host."""
    total, count = 0.0, 0
    for imgs in data:
        with torch.set_grad_enabled(model.training), \
                torch.autocast(imgs.device.type, torch.bfloat16, enabled=bf16):
            loss = model(imgs, kl_weight)
        if model.training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total = total + loss.detach() * len(imgs)
        count += len(imgs)
    average_elbo = -total / count
    utils.check_finite({"the ELBO": average_elbo}, "in an epoch", DIVERGED)
    return average_elbo.item()


def run_epoch(model, data, optimizer, kl_weight=1.0, bf16=False):
    """Train on the training set (under bf16 autocast with `bf16`), then
    evaluate on the validation set (in float32)."""
    traindata, valdata = data
    model.train()
    train_elbo = epoch_iter(model, traindata, optimizer, kl_weight, bf16)
    model.eval()
    val_elbo = epoch_iter(model, valdata, optimizer)
    return train_elbo, val_elbo


def train(args, data, state, run):
    """Train from the checkpoint's epoch to args.epochs: the validation ELBO
    before any update (epoch 0, the sanity check of about -543 nats: a
    decoder at p = 1/2 gives 784 ln 2), sample grids halfway and at the end,
    a checkpoint and a line after every epoch."""
    model, optimizer, history = state["model"], state["optimizer"], state["history"]
    if not state["val_elbo_epoch0"]:
        model.eval()
        state["val_elbo_epoch0"].append(epoch_iter(model, data[1], optimizer))
    for epoch in range(len(history["train_elbo"]) + 1, args.epochs + 1):
        started = time.perf_counter()
        kl_weight = min(1.0, epoch / (args.warmup + 1))
        train_elbo, val_elbo = run_epoch(model, data, optimizer, kl_weight, args.bf16)
        state["scheduler"].step()
        for key, value in (("train_elbo", train_elbo), ("val_elbo", val_elbo),
                           ("seconds_per_epoch", time.perf_counter() - started)):
            history[key].append(value)
        if epoch in (args.epochs // 2, args.epochs):
            save_samples(model, args.seed, run.path(f"samples_epoch{epoch}.png"))
        if args.keep_best and val_elbo >= max(history["val_elbo"]):
            state["best"] = {k: v.clone() for k, v in model.state_dict().items()}
        run.end_epoch(state)


@torch.no_grad()
def evaluate(model, data, iw_samples):
    """Average ELBO and importance-weighted NLL (nats per image) on `data`,
    with progress lines: the IW estimate costs k decoder passes per image."""
    model.eval()
    n_images = len(data.data)
    print(f"test evaluation: {n_images:,} images x {iw_samples:,} importance samples")
    progress = progress_printer(n_images * iw_samples)
    elbo = nll = 0.0
    for imgs in data:
        x = imgs.view(-1, PIXELS)
        elbo = elbo + model.elbo(x).sum()
        nll = nll - log_likelihood(model, x, iw_samples, progress=progress).sum()
    averages = {"the test ELBO": elbo / n_images, "the test NLL": nll / n_images}
    utils.check_finite(averages, "in the test evaluation")
    return [value.item() for value in averages.values()]


def progress_printer(total):
    """progress(n): n more of `total` units are done. Prints a line at every
    tenth of the work and at least once a minute."""
    started = last = time.perf_counter()
    done = tenths = 0

    def progress(n):
        nonlocal done, tenths, last
        done += n
        now = time.perf_counter()
        if done * 10 // total > tenths or now - last >= 60:
            tenths, last = done * 10 // total, now
            print(f"  {100 * done / total:.0f}% after {now - started:.0f} s", flush=True)
    return progress


# ------------------------------------------------------------------ figures
def save_elbo_plot(train_curve, val_curve, filename):
    """The curves against the epoch; a validation curve one longer than the
    training curve starts at epoch 0, before any update. That point lies
    hundreds of nats below the others: the axis leaves it out, the title
    gives it."""
    start = len(train_curve) + 1 - len(val_curve)  # 0 or 1
    train_curve = [float("nan")] * (1 - start) + list(train_curve)  # none before training
    title = None if start else f"epoch 0 (before training): validation ELBO {val_curve[0]:.0f}"
    figures.save_curves(filename, [("average ELBO (nats per image)",
                                    {"train": train_curve, "validation": val_curve})], "epoch",
                        title=title, start=start, y_from=1 - start)


def save_samples(model, seed, filename, n=25):
    """Binary samples (left) beside the Bernoulli means they were drawn from
    (right); the same seed every time, so the grids over training compare."""
    model.eval()
    sampled_ims, im_means = model.sample(n, torch.Generator().manual_seed(seed))
    nrow = int(math.sqrt(n))
    left = make_grid(sampled_ims.cpu(), nrow=nrow, pad_value=0.5)
    right = make_grid(im_means.cpu(), nrow=nrow, pad_value=0.5)
    gap = torch.ones(3, left.shape[1], 8)
    figures.save_png(torch.cat([left, gap, right], dim=2)[None], filename, upscale=2)


@torch.no_grad()
def save_manifold(model, filename, n=20):
    """Decoder means on an n x n grid of z covering the prior's bulk: the
    inverse CDF of evenly spaced points in (0, 1), as in Kingma & Welling."""
    model.eval()
    ticks = torch.tensor(norm.ppf((torch.arange(n) + 0.5) / n), dtype=torch.float32)
    z1, z2 = torch.meshgrid(ticks, ticks.flip(0), indexing="xy")  # z2 grows upwards
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)
    device = next(model.parameters()).device
    means = model.decoder(z.to(device)).view(-1, 1, 28, 28)
    figures.save_png(means, filename, upscale=2, nrow=n, padding=0)


# ---------------------------------------------------------------- the run
def build_parser():
    parser = utils.parser(__doc__.split("\n")[0])
    parser.add_argument("--epochs", default=40, type=utils.positive_int,
                        help="max number of epochs")
    parser.add_argument("--zdim", default=20, type=utils.positive_int,
                        help="dimensionality of latent space")
    parser.add_argument("--hidden_dim", default=512, type=utils.positive_int,
                        help="units in each of the two hidden layers")
    parser.add_argument("--batch_size", default=128, type=utils.positive_int,
                        help="images per training step")
    parser.add_argument("--lr", default=1e-3, type=utils.positive_float,
                        help="Adam's initial learning rate (cosine decay to 0)")
    parser.add_argument("--warmup", default=0, type=utils.nonneg_int,
                        help="KL warm-up: epoch e (from 1) weights the KL's gradient by "
                             "min(1, e/(N+1)); 0 trains on the ELBO throughout")
    parser.add_argument("--keep_best", action="store_true",
                        help="test the weights of the epoch with the best "
                             "validation ELBO (early stopping) instead of the last")
    parser.add_argument("--bf16", action="store_true",
                        help="train under bfloat16 autocast: faster on CPUs with bf16 "
                             "instructions (docs/speed.md) and on GPUs; tests in float32")
    parser.add_argument("--iw_samples", default=500, type=utils.positive_int,
                        help="importance samples per test image for the NLL")
    parser.add_argument("--quality_samples", default=10000,
                        type=sample_quality.sample_count(SPLITS["train"]),
                        help="samples scored by sample_quality.py after training (0: skip; "
                             f"else {sample_quality.MIN_SAMPLES} to the {SPLITS['train']:,} "
                             "training images that give the score's floor)")
    utils.add_run_flags(parser, "folder holding binarized_mnist/ (downloaded if "
                                "missing) and, for the quality score, MNIST/raw/")
    return parser


def training_config(args):
    """The flags a checkpoint must share with the run that resumes it."""
    return {k: getattr(args, k) for k in ("epochs", "zdim", "hidden_dim", "batch_size", "lr",
                                          "warmup", "keep_best", "bf16", "seed", "max_images")}


def build_scorer(args):
    """Scores samples against the binarized test images; the floor is that of
    as many binarized training images (all 50k, whatever --max_images)."""
    reference = load_bmnist_split(args.data_dir, "test").float()
    floor = load_bmnist_split(args.data_dir, "train")[:args.quality_samples].float()
    return sample_quality.scorer_for(args.data_dir, reference, floor)


def finish(args, data, test_data, state, quality, run):
    """Test numbers, figures, the model and the metrics file."""
    model, history = state["model"], state["history"]
    tested_epoch = len(history["val_elbo"])
    if args.keep_best:
        model.load_state_dict(state["best"])
        tested_epoch = 1 + max(range(tested_epoch), key=history["val_elbo"].__getitem__)
        print(f"testing the weights of epoch {tested_epoch} (best validation ELBO)")
    started = time.perf_counter()
    test_elbo, test_nll = evaluate(model, test_data, args.iw_samples)
    print(f"test elbo: {test_elbo:.2f}  test NLL (IW, k={args.iw_samples}): "
          f"{test_nll:.2f} nats per image")
    metrics = {**training_config(args), **history,
               "val_elbo_epoch0": state["val_elbo_epoch0"][0], "test_elbo": test_elbo,
               "test_nll_iw": test_nll, "iw_samples": args.iw_samples,
               "tested_epoch": tested_epoch,
               "test_seconds": time.perf_counter() - started,
               "device": str(args.device), "train_images": len(data[0].data)}
    save_elbo_plot(history["train_elbo"], state["val_elbo_epoch0"] + history["val_elbo"],
                   run.path("elbo.png"))
    if args.zdim == 2:
        save_manifold(model, run.path("manifold.png"))
    utils.save_torch(model.state_dict(), run.path("model.pt"))
    if quality is not None:
        scorer, metrics["quality_reference"] = quality
        sampled_ims, im_means = model.sample(args.quality_samples,
                                             torch.Generator().manual_seed(args.seed + 1))
        # the grey means only on the features: any network tells them from binary digits
        metrics["sample_quality"] = {**scorer(sampled_ims),
                                     "means_frechet_distance": scorer.frechet_distance(im_means)}
        print("sample quality: Frechet distance {frechet_distance:.2f}, two-sample accuracy "
              "{two_sample_accuracy:.3f}".format(**metrics["sample_quality"]))
    run.save_metrics(metrics)


def outputs(args):
    """The files this run writes besides its checkpoint and metrics."""
    grids = {f"samples_epoch{e}.png" for e in (0, args.epochs // 2, args.epochs)}
    return [*grids, "elbo.png", "model.pt", *(["manifold.png"] if args.zdim == 2 else [])]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    with utils.Run(args, f"vae_z{args.zdim}", training_config(args), args.epochs, __file__,
                   argv, "--hidden_dim, --zdim or --batch_size") as run:
        run.start(outputs(args))
        torch.manual_seed(args.seed)
        train_data, val_data, test_data = bmnist(args.data_dir, args.batch_size,
                                                 device=args.device)
        if args.max_images:
            train_data.data = train_data.data[:args.max_images]
        # Needs the labelled MNIST files: fails now, not after training.
        quality = build_scorer(args) if args.quality_samples else None
        model = VAE(hidden_dim=args.hidden_dim, z_dim=args.zdim).to(args.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)
        state = {"model": model, "optimizer": optimizer,
                 "scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs),
                 "history": {"train_elbo": [], "val_elbo": [], "seconds_per_epoch": []},
                 "val_elbo_epoch0": [],  # a list: one value once measured
                 # with --keep_best, the weights of the best epoch so far
                 "best": {k: v.clone() for k, v in model.state_dict().items()}
                 if args.keep_best else None}
        if args.resume:
            print("resuming after epoch", run.load(state))
        else:
            save_samples(model, args.seed, run.path("samples_epoch0.png"))
        data = (train_data, val_data)
        train(args, data, state, run)
        finish(args, data, test_data, state, quality, run)
    return run.status


if __name__ == "__main__":
    sys.exit(main())
