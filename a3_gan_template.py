"""A GAN on grey-scale MNIST (assignment 3, questions 2.5-2.7): the template's MLP
generator and discriminator, trained with the non-saturating generator loss.

    python a3_gan_template.py --data_dir ../shared/datasets
"""

import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import figures
import sample_quality
import utils
from datasets import TensorLoader, load_mnist

CURVES = ("loss_D", "loss_G", "D_x", "D_G_z")


class Generator(nn.Module):
    def __init__(self, latent_dim=100):
        super().__init__()
        # Linear latent_dim -> 128 -> 256 -> 512 -> 1024 -> 784 with LeakyReLU(0.2)
        # between and BatchNorm on the three middle layers; tanh: pixels in [-1, 1].
        layers = [nn.Linear(latent_dim, 128), nn.LeakyReLU(0.2)]
        for n_in, n_out in ((128, 256), (256, 512), (512, 1024)):
            layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Linear(1024, 784), nn.Tanh())

    def forward(self, z):
        return self.net(z).view(-1, 1, 28, 28)


class Dropout(nn.Dropout):
    def forward(self, x):  # the mask from rand_like: nn.Dropout's law, twice as fast on a CPU
        return x * (torch.rand_like(x) >= self.p) / (1 - self.p) if self.training else x


class Discriminator(nn.Module):
    def __init__(self, dropout=0.3):
        super().__init__()
        # Linear 784 -> 512 -> 256 -> 1 with LeakyReLU(0.2) and dropout between.
        layers = []
        for n_in, n_out in ((784, 512), (512, 256)):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2), Dropout(dropout)]
        self.net = nn.Sequential(*layers, nn.Linear(256, 1))

    def forward(self, img):
        """A logit per image, D(x) = sigmoid(logit): the losses never form log(0)."""
        return self.net(img.flatten(1)).squeeze(1)


def discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """-log D(x) - log(1 - D(G(z))), batch means. A real_label below 1
    (one-sided label smoothing) keeps D from pushing its real logits ever up."""
    target = torch.full_like(real_logits, real_label)
    real = F.binary_cross_entropy_with_logits(real_logits, target)
    return real + F.softplus(fake_logits).mean()  # -log(1 - sigmoid(l)) = softplus(l)


def generator_loss(fake_logits):
    """Non-saturating -log D(G(z)): its gradient stays large while D rejects G(z)."""
    return F.softplus(-fake_logits).mean()


def train(dataloader, discriminator, generator, optimizer_G, optimizer_D, args, run, state):
    """A step of G, then one of D, on every batch, each followed by a save point."""
    steps, total = len(dataloader), args.n_epochs * len(dataloader)
    if run.epochs_done == 0:
        save_point(0, total, args, run, state, [])
    for epoch in range(run.epochs_done, args.n_epochs):
        started, stats = time.perf_counter(), []
        for i, imgs in enumerate(dataloader):
            z = torch.randn(len(imgs), args.latent_dim, device=imgs.device)

            # Train Generator: an Adam step on -log D(G(z)), asking for G's gradients only
            # ---------------
            optimizer_G.zero_grad(set_to_none=True)
            fake = generator(z)
            loss_G = generator_loss(discriminator(fake))
            loss_G.backward(inputs=list(generator.parameters()))
            optimizer_G.step()
            state["averaged"].update_parameters(generator)

            # Train Discriminator: real and generated images in one pass, no gradient into G
            # -------------------
            optimizer_D.zero_grad(set_to_none=True)
            real_logits, fake_logits = discriminator(torch.cat([imgs, fake.detach()])).chunk(2)
            loss_D = discriminator_loss(real_logits, fake_logits, args.real_label)
            loss_D.backward()
            optimizer_D.step()
            d_x, d_g_z = torch.sigmoid(torch.stack([real_logits, fake_logits]).detach()).mean(1)
            stats.append(torch.stack([loss_D.detach(), loss_G.detach(), d_x, d_g_z]))

            # Save Images
            # -----------
            save_point(epoch * steps + i + 1, total, args, run, state, stats)
        stats = torch.stack(stats).double().cpu()
        utils.check_finite(stats, f"in epoch {epoch + 1}", 1e3)
        state["curves"] = torch.cat([state["curves"], stats])
        state["seconds"].append(time.perf_counter() - started)
        run.save({k: v for k, v in state.items() if k != "scorer"}, epoch + 1)
        line = " ".join(f"{k} {v:.3f}" for k, v in zip(CURVES, stats.mean(0).tolist()))
        print(f"epoch {epoch + 1}/{args.n_epochs} {line} {state['seconds'][-1]:.0f} s")


def save_point(done, total, args, run, state, stats):
    """G's moving average draws 25 images of fixed noise every --save_interval and, with
    the last iterate, is scored every --quality_interval."""
    averaged, path = state["averaged"], run.path(f"samples_iter{done}.png")
    if is_save_point(done, total, args.save_interval):
        utils.check_finite(torch.stack(stats or [torch.zeros(4)]), f"by iteration {done}", 1e3)
        save_images(generate(averaged, seeded_noise(25, args, 0)), path, nrow=5)
    if args.quality_interval and is_save_point(done, total, args.quality_interval):
        z = seeded_noise(args.quality_samples, args, 1)
        score = [state["scorer"]((generate(g, z) + 1) / 2) for g in (averaged, state["generator"])]
        state["quality"].append({"iteration": done, **score[0], "last_iterate": score[1]})


def is_save_point(done, total, interval):  # every `interval` from 0, halfway, the last
    return done % interval == 0 or done in (total // 2, total)


def seeded_noise(n, args, k):  # n latent vectors of the k-th noise batch fixed by --seed
    return torch.randn(n, args.latent_dim, generator=torch.Generator().manual_seed(args.seed + k))


@torch.no_grad()
def generate(generator, z):
    """Images in [-1, 1] in eval mode: a sample depends on its own noise only."""
    was_training = generator.training
    images = generator.eval()(z.to(next(generator.parameters()).device))
    generator.train(was_training)
    return images


def save_images(images, path, nrow):
    figures.save_png((images + 1) / 2, path, nrow, pad_value=0.5, upscale=4)


def interpolate(generator, z_a, z_b, steps=7):
    """steps + 2 images along the line from z_a to z_b, both ends included."""
    t = torch.linspace(0, 1, steps + 2).unsqueeze(1)
    return generate(generator, (1 - t) * z_a + t * z_b)


@torch.no_grad()
def save_interpolation(generator, classifier, noise, path, rows=3):
    """Rows between generated digits of different classes, by a neutral rule: of the samples
    of `noise`, each class is represented by the one the classifier labels with the widest
    logit margin over the runner-up; rows pair classes in their order of first appearance."""
    top = classifier((generate(generator, noise).flatten(1) + 1) / 2).topk(2, dim=1)
    margin, labels = top.values[:, 0] - top.values[:, 1], top.indices[:, 0].tolist()
    clearest = {}  # a dict keeps the order of first appearance
    for i, label in enumerate(labels):
        if label not in clearest or margin[i] > margin[clearest[label]]:
            clearest[label] = i
    ends = list(clearest.values()) if len(clearest) > 1 else margin.topk(2)[1].tolist()
    pairs = list(zip(ends[: 2 * rows : 2], ends[1 : 2 * rows : 2]))
    images = [interpolate(generator, noise[a], noise[b]) for a, b in pairs]
    save_images(torch.cat(images), path, nrow=len(images[0]))
    return [{"noise_indices": [a, b], "classes": [labels[a], labels[b]]} for a, b in pairs]


def main(argv=None):
    args = build_parser().parse_args(argv)
    with utils.Run(args, "gan", argv) as run:
        torch.manual_seed(args.seed)
        # load data: pixels in [-1, 1], the generator's range; batches in the order of
        # torch's seeded generator (a checkpoint keeps it), the last partial one dropped
        images = load_mnist(args.data_dir, "train")[0][: args.max_images or None]
        images = (images.float() / 127.5 - 1).unsqueeze(1).to(run.device)
        dataloader = TensorLoader(images, args.batch_size, shuffle=True, drop_last=True)
        if not len(dataloader):
            raise utils.RunError(f"{len(images)} images cannot fill a batch of {args.batch_size}")

        # Initialize models and optimizers (Adam with the DCGAN betas)
        generator = Generator(args.latent_dim).to(run.device)
        discriminator = Discriminator(args.d_dropout).to(run.device)
        optimizer_G, optimizer_D = (
            torch.optim.Adam(m.parameters(), lr=args.lr, betas=(0.5, 0.999), fused=True)
            for m in (generator, discriminator)
        )
        # The moving average of G's weights and BatchNorm statistics samples: a GAN's
        # last iterate wanders around an equilibrium, its recent average sits nearer.
        ema = get_ema_multi_avg_fn(args.ema_decay)
        averaged = AveragedModel(generator, multi_avg_fn=ema, use_buffers=True)
        state = {"generator": generator, "discriminator": discriminator, "averaged": averaged}
        state.update(optimizer_G=optimizer_G, optimizer_D=optimizer_D, quality=[], seconds=[])
        state["curves"] = torch.zeros(0, len(CURVES), dtype=torch.float64)
        classifier, total = sample_quality.load_classifier()[0], args.n_epochs * len(dataloader)
        saves = [i for i in range(total + 1) if is_save_point(i, total, args.save_interval)]
        files = ["losses.png", "quality.png", "interpolation.png", "generator.pt"]
        run.start([*(f"samples_iter{i}.png" for i in saves), *files, "discriminator.pt"])
        if args.resume:
            print("resuming after epoch", run.load(state))
        if args.quality_interval:
            test_images = sample_quality.unit_images(args.data_dir, "test")[0]
            state["scorer"] = sample_quality.Scorer(test_images, classifier)

        # Start training
        train(dataloader, discriminator, generator, optimizer_G, optimizer_D, args, run, state)

        # The averaged generator is the model: its weights, its interpolations.
        utils.save_torch(averaged.module.state_dict(), run.path("generator.pt"))
        utils.save_torch(discriminator.state_dict(), run.path("discriminator.pt"))
        save_losses(state["curves"], run.path("losses.png"))
        noise, path = seeded_noise(1000, args, 2), run.path("interpolation.png")
        rows = save_interpolation(averaged, classifier, noise, path)
        epoch_means = state["curves"].view(args.n_epochs, -1, len(CURVES)).mean(1).T.tolist()
        metrics = {**run.config, **dict(zip(CURVES, epoch_means)), "interpolation": rows}
        metrics.update(iterations=total, seconds_per_epoch=state["seconds"])
        if args.quality_interval:
            metrics["quality"] = state["quality"]
            sample_quality.plot(state["quality"], run.path("quality.png"))
        run.save_metrics(metrics)
    return run.status


def save_losses(curves, path):
    """The losses and mean outputs of D per iteration, smoothed over 1/50 of the run."""
    width, curves = max(1, min(200, len(curves) // 50)), curves.T.tolist()
    panels = [("loss", {"D": curves[0], "G (non-saturating)": curves[1]})]
    panels += [("mean D output", {"D(x)": curves[2], "D(G(z))": curves[3]})]
    title = f"moving average over {width} iterations"
    figures.save_curves(path, panels, "iteration", title, width)


def build_parser():
    return utils.parser(
        __doc__,
        "folder holding MNIST/raw/ (downloaded if missing)",
        ("--n_epochs", int, (1,), 200, "number of epochs"),
        ("--batch_size", int, (2,), 64, "batch size"),
        ("--lr", float, (1e-8, 1), 0.0002, "learning rate"),
        ("--latent_dim", int, (1,), 100, "dimensionality of the latent space"),
        ("--save_interval", int, (1,), 500, "save every SAVE_INTERVAL iterations"),
        ("--quality_interval", int, (0,), 10000, "score the samples every N iterations (0: never)"),
        ("--quality_samples", int, (sample_quality.FEATURES + 1, 60000), 10000, "images scored"),
        ("--d_dropout", float, (0, 0.9), 0.3, "dropout in D (0: the template's D)"),
        ("--real_label", float, (0.5, 1), 0.9, "D's target for real images (1: no smoothing)"),
        ("--ema_decay", float, (0, 0.9999), 0.999, "G's moving average's decay (0: last iterate)"),
    )


if __name__ == "__main__":
    sys.exit(main())
