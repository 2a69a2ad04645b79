"""A GAN on MNIST (assignment 3, questions 2.5-2.7).

The template's fully connected generator and discriminator, trained with the
non-saturating generator loss; sample grids during training, the loss curves,
the sample-quality score and a latent interpolation between two generated
digits of different classes go to --out_dir.

    python a3_gan_template.py --data_dir ../shared/datasets
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import datasets
import figures
import sample_quality
import utils

CURVES = ("loss_D", "loss_G", "D_x", "D_G_z")
# A mean loss beyond this many nats means the logits have blown up: D at
# chance costs 2 ln 2 = 1.39, and float32 sigmoids saturate near |logit| 17.
DIVERGED = 1e3
CANDIDATES = 1000  # generated digits searched for the interpolations' ends
INTERPOLATIONS = 3  # rows of the interpolation figure, each another pair of classes
# The scores also given for the last iterate, beside the averaged generator.
LAST_ITERATE = ("frechet_distance", "two_sample_accuracy", "class_min_share")
# Steps between updates of G's moving average; each update uses decay**EMA_EVERY,
# which keeps its time constant at a quarter of the cost (2 ms of a 50 ms step).
EMA_EVERY = 4


# ------------------------------------------------------------------- models
class Generator(nn.Module):
    """Maps noise z of shape (B, latent_dim) to images in [-1, 1] of shape
    (B, 1, 28, 28)."""

    def __init__(self, latent_dim=100):
        super().__init__()
        layers = [nn.Linear(latent_dim, 128), nn.LeakyReLU(0.2)]
        for n_in, n_out in ((128, 256), (256, 512), (512, 1024)):
            layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.LeakyReLU(0.2)]
        layers += [nn.Linear(1024, 784), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z).view(-1, 1, 28, 28)


class Discriminator(nn.Module):
    """Maps images of shape (B, 1, 28, 28) (or (B, 784)) to LOGITS of shape
    (B,): D(x) = sigmoid(logit). Returning logits lets the losses use the
    numerically stable log-sigmoid instead of log(sigmoid(.))."""

    def __init__(self, dropout=0.3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Linear(256, 1))

    def forward(self, img):
        return self.net(img.flatten(1)).squeeze(1)


def build_models(args):
    """G, D and their Adam optimisers (the DCGAN betas; the fused update, one
    kernel for all parameters) on args.device; G's weights are drawn first."""
    generator = Generator(args.latent_dim).to(args.device)
    discriminator = Discriminator(args.d_dropout).to(args.device)
    optimizers = (torch.optim.Adam(m.parameters(), lr=args.lr, betas=(0.5, 0.999), fused=True)
                  for m in (generator, discriminator))
    return generator, discriminator, *optimizers


def averaged_generator(generator, decay):
    """An exponential moving average of the generator's weights and BatchNorm
    statistics, updated every EMA_EVERY steps (and at every save point):
    avg <- decay**EMA_EVERY * avg + (1 - decay**EMA_EVERY) * G. The last
    iterate of a GAN wanders around an equilibrium from step to step; its
    average over the last ~1 / (1 - decay) steps sits nearer the centre.
    decay 0 samples the last iterate (the plain template)."""
    return AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay ** EMA_EVERY),
                         use_buffers=True)


# ------------------------------------------------------------------- losses
def discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """Binary cross-entropy of D: -log D(x) - log(1 - D(G(z))), batch means.

    From logits, -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) =
    softplus(l), so a confident D gives no inf and no NaN. A real_label
    below 1 (one-sided label smoothing) stops D from pushing its logits on
    real images ever higher; fakes keep target 0."""
    real = F.binary_cross_entropy_with_logits(real_logits,
                                              torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits):
    """Non-saturating loss -log D(G(z)): unlike log(1 - D(G(z))) its gradient
    stays large while D still rejects the samples, early in training."""
    return F.softplus(-fake_logits).mean()


# ------------------------------------------------------------------ training
def train_step(imgs, discriminator, generator, optimizer_G, optimizer_D,
               latent_dim, real_label=1.0):
    """One update of D, then one of G, on a batch of real images. Returns
    the named statistics as detached tensors: reading them here would make
    every step wait for the device."""
    z = torch.randn(len(imgs), latent_dim, device=imgs.device)
    fake = generator(z)

    # D sees the real and the fake batch in one pass (no gradient into G):
    # products of twice the rows run nearer the machine's peak than two halves.
    optimizer_D.zero_grad(set_to_none=True)
    real_logits, fake_logits = discriminator(torch.cat([imgs, fake.detach()])).chunk(2)
    loss_D = discriminator_loss(real_logits, fake_logits, real_label)
    loss_D.backward()
    optimizer_D.step()

    # Only G's gradients: asking for them alone skips D's weight gradients,
    # a sixth of the step's products.
    optimizer_G.zero_grad(set_to_none=True)
    loss_G = generator_loss(discriminator(fake))
    loss_G.backward(inputs=list(generator.parameters()))
    optimizer_G.step()

    return {"loss_D": loss_D.detach(), "loss_G": loss_G.detach(),
            "D_x": torch.sigmoid(real_logits.detach()).mean(),
            "D_G_z": torch.sigmoid(fake_logits.detach()).mean()}


def train(dataloader, discriminator, generator, optimizer_G, optimizer_D, args, state,
          run, score):
    """Train from the checkpoint's epoch to args.n_epochs, with a save point at
    the start, every save interval, halfway and at the end (scored at the
    start, every quality interval, halfway and at the end), and a checkpoint
    after every epoch."""
    averaged, optimizers = state["generator_ema"], (optimizer_G, optimizer_D)
    saves = set(save_points(args.n_epochs, len(dataloader), args.save_interval))
    scored = saves & set(save_points(args.n_epochs, len(dataloader), args.quality_interval))
    fixed_noise = torch.randn(25, args.latent_dim,
                              generator=torch.Generator().manual_seed(args.seed))
    first = len(state["history"]["seconds_per_epoch"]) + 1
    if first == 1:
        save_point(0, state, score, fixed_noise, run)  # 0 is always scored
    for epoch in range(first, args.n_epochs + 1):
        generator.train()
        discriminator.train()
        started, steps = time.perf_counter(), []
        for iteration, imgs in enumerate(dataloader, (epoch - 1) * len(dataloader) + 1):
            stats = train_step(imgs, discriminator, generator, optimizer_G, optimizer_D,
                               args.latent_dim, args.real_label)
            if iteration % EMA_EVERY == 0 or iteration in saves:
                averaged.update_parameters(generator)
            steps.append(torch.stack([stats[name] for name in CURVES]))
            if iteration in saves:
                check_divergence(steps, optimizers, f"in epoch {epoch}, by iteration {iteration}")
                save_point(iteration, state, score if iteration in scored else None,
                           fixed_noise, run)
        check_divergence(steps, optimizers, f"in epoch {epoch}")
        record_epoch(state, steps, time.perf_counter() - started)
        run.end_epoch(state)


def save_points(n_epochs, steps_per_epoch, save_interval):
    """The iterations after which the run saves a grid: 0, every
    save_interval, halfway and the last."""
    total = n_epochs * steps_per_epoch
    return sorted({0, total // 2, total, *range(save_interval, total + 1, save_interval)})


def save_point(iteration, state, score, fixed_noise, run):
    """A grid of the averaged generator's samples of the fixed noise and, with
    a score, the quality of the averaged generator and of the last iterate."""
    averaged = state["generator_ema"].module
    save_samples(averaged, fixed_noise, run.path(f"samples_iter{iteration}.png"))
    if score is not None:
        last = score(state["generator"])
        state["quality"].append({"iteration": iteration, **score(averaged),
                                 "last_iterate": {key: last[key] for key in LAST_ITERATE}})


def check_divergence(steps, optimizers, where):
    """Stop on losses beyond DIVERGED or non-finite weights or Adam state,
    before they reach a figure, a score or a checkpoint."""
    weights = torch.cat([t.flatten() for opt in optimizers for p in opt.param_groups[0]["params"]
                         for t in (p, *opt.state[p].values())])
    if steps:
        utils.check_finite({"the losses": torch.stack(steps)[:, :2]}, where, DIVERGED)
    utils.check_finite({"the weights or Adam's state": weights}, where)


def record_epoch(state, steps, seconds):
    """The epoch's statistics: every iteration's in state["curves"], their
    means and the epoch's seconds in state["history"]."""
    steps = torch.stack(steps).double()
    state["curves"] = torch.cat([state["curves"], steps.cpu()])
    for name, value in zip(CURVES, steps.mean(0).tolist()):
        state["history"][name].append(value)
    state["history"]["seconds_per_epoch"].append(seconds)


# ------------------------------------------------------------------- outputs
@torch.no_grad()
def generate(generator, z):
    """Images in [-1, 1]; eval mode, so BatchNorm uses its running statistics
    and sampling neither depends on the batch nor changes the model."""
    was_training = generator.training
    generator.eval()
    images = generator(z.to(next(generator.parameters()).device))
    generator.train(was_training)
    return images


def to_unit(images):
    """[-1, 1] (the generator's tanh) to [0, 1] (the classifier's input)."""
    return (images.cpu().flatten(1) + 1) / 2


def save_samples(generator, noise, path):
    figures.save_png(generate(generator, noise), path, upscale=4, nrow=5, normalize=True,
                     value_range=(-1, 1), pad_value=0.5)  # grey lines between the digits


class SampleScore:
    """The quality of a generator's samples of one fixed noise batch against
    the held-out test images (sample_quality.Scorer); `summary` holds the
    classifier's accuracy and the floor of as many real training images."""

    def __init__(self, args, train_images):
        self.scorer, self.summary = sample_quality.scorer_for(
            args.data_dir, to_unit(real_images(args, "test")),
            to_unit(train_images[:args.quality_samples]))
        self.noise = torch.randn(args.quality_samples, args.latent_dim,
                                 generator=torch.Generator().manual_seed(args.seed + 1))

    def __call__(self, generator):
        return self.scorer(to_unit(generate(generator, self.noise)))


@torch.no_grad()
def interpolate(generator, z_a, z_b, steps=7):
    """steps + 2 images along the line from z_a to z_b, both ends included."""
    t = torch.linspace(0, 1, steps + 2, device=z_a.device).unsqueeze(1)
    return generate(generator, (1 - t) * z_a + t * z_b)


@torch.no_grad()
def save_interpolation(generator, classifier, noise, path):
    """Write INTERPOLATIONS rows, each between two generated digits of
    different classes. A neutral rule picks the ends: the classifier labels
    the samples of the noise vectors (a seeded random draw); each class is
    represented by its clearest sample, the one the classifier labels with
    the widest margin; the rows join the classes in pairs, in the order in which
    each class first appears in the draw (one class only: its two clearest).
    `blend_frames` counts the frames of a row that are not confidently
    (>= 0.9) either end's class."""
    # clarity: the logit margin over the runner-up class (probabilities of
    # clear digits all round to 1 in float32)
    top = classifier(to_unit(generate(generator, noise))).topk(2, dim=1)
    margin, labels = top.values[:, 0] - top.values[:, 1], top.indices[:, 0].tolist()
    clearest = {}
    for i in range(len(noise)):  # a dict keeps the order of first appearance
        if labels[i] not in clearest or margin[i] > margin[clearest[labels[i]]]:
            clearest[labels[i]] = i
    ends = list(clearest.values())[:2 * INTERPOLATIONS]
    ends = list(zip(ends[::2], ends[1::2])) or [tuple(margin.topk(2).indices.tolist())]
    images, info = [], []
    for a, b in ends:
        row = interpolate(generator, noise[a], noise[b])
        path_labels, path_conf = sample_quality.predict(classifier, to_unit(row))
        sure_ends = (path_conf >= 0.9) & ((path_labels == labels[a]) | (path_labels == labels[b]))
        images.append(row)
        info.append({"noise_indices": [a, b], "labels_along_path": path_labels.tolist(),
                     "confidences_along_path": [round(c, 4) for c in path_conf.tolist()],
                     "different_classes": bool(path_labels[0] != path_labels[-1]),
                     "blend_frames": int((~sure_ends[1:-1]).sum())})
    figures.save_png(torch.cat(images), path, upscale=4, nrow=len(images[0]), normalize=True,
                     value_range=(-1, 1), pad_value=0.5)
    return {"steps": len(images[0]) - 2, "rows": info}


def write_outputs(args, state, run, score, classifier):
    generator = state["generator_ema"].module  # the averaged weights sample
    utils.save_torch(generator.state_dict(), run.path("generator.pt"))
    utils.save_torch(state["discriminator"].state_dict(), run.path("discriminator.pt"))
    curves, width = state["curves"].T.tolist(), max(1, min(200, len(state["curves"]) // 50))
    figures.save_curves(run.path("losses.png"), [
        ("loss", {"D loss": curves[0], "G loss (non-saturating)": curves[1]}),
        ("mean discriminator output", {"D(x)": curves[2], "D(G(z))": curves[3]})],
        "iteration", f"GAN training (moving average over {width} iterations)", width)
    noise = torch.randn(CANDIDATES, args.latent_dim,
                        generator=torch.Generator().manual_seed(args.seed + 2))
    metrics = {"device": str(args.device), "iterations": len(state["curves"]),
               **training_config(args), **state["history"],
               "interpolation": save_interpolation(generator, classifier, noise,
                                                   run.path("interpolation.png"))}
    if score is not None:
        quality = state["quality"]
        sample_quality.plot_quality(quality, score.summary, run.path("quality.png"))
        metrics.update({**quality[-1], "quality_reference": score.summary,
                        "stray_pixels_per_image": sample_quality.stray_pixels(
                            (generate(generator, score.noise) + 1) / 2),
                        "quality_over_training": {key: [q[key] for q in quality] for key in (
                            "iteration", "frechet_distance", "two_sample_accuracy",
                            "class_min_share", "class_entropy_normalized")},
                        "last_iterate_over_training": {
                            key: [q["last_iterate"][key] for q in quality]
                            for key in LAST_ITERATE}})
    run.save_metrics(metrics)


# ----------------------------------------------------------------- the run
def build_parser():
    parser = utils.parser(__doc__.split("\n")[0])
    parser.add_argument("--n_epochs", type=utils.positive_int, default=200,
                        help="number of epochs")
    parser.add_argument("--batch_size", type=utils.number(int, 2), default=64,
                        help="batch size (at least 2, for BatchNorm)")
    parser.add_argument("--lr", type=utils.positive_float, default=0.0002,
                        help="learning rate of both optimisers")
    parser.add_argument("--latent_dim", type=utils.positive_int, default=100,
                        help="dimensionality of the latent space")
    parser.add_argument("--save_interval", type=utils.positive_int, default=500,
                        help="save a sample grid every SAVE_INTERVAL iterations")
    parser.add_argument("--quality_samples", default=10000,
                        type=sample_quality.sample_count(datasets.mnist.SIZES["train"]),
                        help="generated images scored at every save point (0: skip; else "
                             f"{sample_quality.MIN_SAMPLES} to as many as training images)")
    parser.add_argument("--quality_interval", type=utils.positive_int, default=10000,
                        help="score at the save points every QUALITY_INTERVAL iterations, "
                             "the first, halfway and the last (each costs about 3 s on "
                             "one core)")
    parser.add_argument("--d_dropout", type=utils.number(float, 0, 1, high_open=True),
                        default=0.3, help="dropout after each hidden layer of D "
                                          "(0: the plain template)")
    parser.add_argument("--ema_decay", type=utils.number(float, 0, 1, high_open=True),
                        default=0.999, help="decay of the moving average of G's weights "
                                            "that samples (0: the last iterate, as the "
                                            "template)")
    parser.add_argument("--real_label", type=utils.number(float, 0.5, 1, low_open=True),
                        default=0.9, help="target of D for real images (< 1: one-sided "
                                          "label smoothing; 1: the plain template)")
    parser.add_argument("--dataset", choices=("mnist", "bmnist"), default="mnist",
                        help="grey-scale MNIST or the binarized training set")
    utils.add_run_flags(parser, "folder holding MNIST/raw/ (downloaded if missing) "
                                "and, for --dataset bmnist, binarized_mnist/")
    return parser


def training_config(args):
    """Every flag that changes the training trajectory; a checkpoint only
    resumes a run with the same values."""
    return {k: getattr(args, k) for k in (
        "n_epochs", "batch_size", "lr", "latent_dim", "save_interval", "quality_samples",
        "quality_interval", "d_dropout", "real_label", "ema_decay", "seed", "dataset",
        "max_images")}


def real_images(args, split):
    """Images of a split of the chosen data set in [-1, 1], (N, 1, 28, 28)."""
    if args.dataset == "mnist":
        images = datasets.load_mnist(args.data_dir, split)[0].float() / 127.5 - 1
    else:
        images = datasets.load_bmnist_split(args.data_dir, split).float() * 2 - 1
    return images.view(-1, 1, 28, 28)


def outputs(args, steps_per_epoch):
    """The files this run writes besides its checkpoint and metrics."""
    grids = [f"samples_iter{i}.png"
             for i in save_points(args.n_epochs, steps_per_epoch, args.save_interval)]
    return [*grids, "losses.png", "interpolation.png", "generator.pt", "discriminator.pt",
            *(["quality.png"] if args.quality_samples else [])]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    with utils.Run(args, "gan", training_config(args), args.n_epochs, __file__, argv,
                   "--quality_samples or --latent_dim") as run:
        torch.manual_seed(args.seed)
        train_images = real_images(args, "train")
        images = train_images[:args.max_images or None].to(args.device)
        if len(images) < args.batch_size:
            raise datasets.DataError(f"{len(images)} training images cannot fill one "
                                     f"batch of {args.batch_size}")
        dataloader = datasets.TensorLoader(images, args.batch_size, shuffle=True,
                                           drop_last=True)
        run.start(outputs(args, len(dataloader)))
        # The classifier and the test images: fail now, not after hours of training.
        score = SampleScore(args, train_images) if args.quality_samples else None
        classifier = (score.scorer.classifier if score
                      else sample_quality.load_classifier(args.data_dir)[0])
        generator, discriminator, optimizer_G, optimizer_D = build_models(args)
        state = {"generator": generator, "discriminator": discriminator,
                 "generator_ema": averaged_generator(generator, args.ema_decay),
                 "optimizer_G": optimizer_G, "optimizer_D": optimizer_D,
                 "history": {name: [] for name in CURVES + ("seconds_per_epoch",)},
                 "curves": torch.zeros(0, len(CURVES), dtype=torch.float64), "quality": []}
        if args.resume:
            print("resuming after epoch", run.load(state))
        train(dataloader, discriminator, generator, optimizer_G, optimizer_D, args, state,
              run, score)
        write_outputs(args, state, run, score, classifier)
    return run.status


if __name__ == "__main__":
    sys.exit(main())
