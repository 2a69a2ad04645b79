"""What the studies and benchmarks share: their command line and end, loading
trained weights, and one GAN iteration as the script's train() makes it."""

import argparse
import math
import os
import sys

import torch

import a3_gan_template as gan
import utils
from datasets import load_mnist

SCORES = ("frechet_distance", "two_sample_accuracy", "class_min_share")  # the scores reported


def parser(doc, out):
    """--data_dir and --out (a JSON file; a figure, if any, goes beside it)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--data_dir", default="./data", help="folder holding the data sets")
    p.add_argument("--out", default=out, help="the JSON file to write")
    return p


def finish(study, args):
    """study(args) -> result, written to args.out at the end in one atomic
    step, with the commit read at the start (a commit during the run must
    not relabel it): an error or an interrupt leaves the earlier file whole."""
    changed = bool(utils.git("status", "-s", "--", "*.py"))  # the code, not the results
    code = {"commit": utils.git("rev-parse", "HEAD"), "changed": changed}
    try:
        utils.save_json({**study(args), "code": code}, args.out)
    except utils.RunError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit("interrupted: nothing was written")
    print(f"wrote {args.out}")


def figure_path(out):
    return os.path.splitext(out)[0] + ".png"


def load(module, path):
    """`module` with the state dict saved at `path`, in eval mode; a missing
    or unfitting file stops the study in one line."""
    try:
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - torch raises many kinds
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise utils.RunError(f"{path}: no weights of {type(module).__name__} ({reason})") from None
    return module.eval()


def real_subset(images, n, seed):
    """n images drawn at random (seeded): a split's first rows may be sorted by class."""
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def grey_train_images(data_dir):
    """The grey-scale training digits in [-1, 1], shaped as the script's batches."""
    return load_mnist(data_dir, "train")[0].float().div(127.5).sub(1).unsqueeze(1)


def gan_models(seed):
    """The script's G and D from `seed`, with its optimisers (Adam 2e-4, (0.5, 0.999))."""
    torch.manual_seed(seed)
    models = gan.Generator(), gan.Discriminator()
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    return models, [adam(m) for m in models]


def gan_step(imgs, models, optimizers, g_loss=gan.generator_loss, norm=False):
    """One iteration of the script's train(): a step of G on g_loss(D(G(z))),
    then one of D on real and fake in one pass (real label 0.9, the script's).
    Returns G's loss, its gradient norm (with norm, else 0), the mean D(x)
    of D's pass and the mean D(G(z)) of G's (the one G's loss sees)."""
    (generator, discriminator), (optimizer_G, optimizer_D) = models, optimizers
    optimizer_G.zero_grad(set_to_none=True)
    fake = generator(torch.randn(len(imgs), 100))
    fake_logits = discriminator(fake)
    loss_G = g_loss(fake_logits)
    loss_G.backward(inputs=list(generator.parameters()))
    grad = torch.nn.utils.clip_grad_norm_(generator.parameters(), math.inf) if norm else 0.0
    optimizer_G.step()
    optimizer_D.zero_grad(set_to_none=True)
    real_logits, fake_logits_D = discriminator(torch.cat([imgs, fake.detach()])).chunk(2)
    gan.discriminator_loss(real_logits, fake_logits_D, 0.9).backward()
    optimizer_D.step()
    d_x, d_g_z = torch.sigmoid(torch.stack([real_logits, fake_logits]).detach()).mean(1)
    return torch.stack([loss_G.detach(), torch.as_tensor(grad), d_x, d_g_z])
