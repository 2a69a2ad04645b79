"""Question 1.12: why two hidden layers of ELU units? The script's VAE (zdim
20, Adam at a constant 1e-3) trained a few epochs with one hidden layer of 500
tanh units (Kingma and Welling) and with two of 500 under tanh, ReLU,
softplus and ELU (the script's own), from the same seed, by the script's
run_epoch; writes the validation ELBO after each epoch to --out.

    python -m experiments.vae_activations --data_dir ../shared/datasets  # ~5 min
"""

import os

import torch
import torch.nn as nn

import a3_vae_template as vae
from datasets import bmnist
from experiments import common


def mlp(sizes, activation):
    layers = [nn.Linear(sizes[0], sizes[1])]
    for n_in, n_out in zip(sizes[1:-1], sizes[2:]):
        layers += [activation(), nn.Linear(n_in, n_out)]
    return nn.Sequential(*layers)


def variant(seed, hidden=None, activation=None):
    """The script's VAE (its q(z|x), ELBO and loss), its networks replaced
    when `hidden` is given; the weights of a shape are the same draws in all."""
    torch.manual_seed(seed)
    model = vae.VAE(500, 20)
    if hidden:
        torch.manual_seed(seed)
        model.encoder.net = mlp([784, *hidden, 40], activation)
        model.decoder.net = mlp([20, *hidden, 784], activation)
    return model


VARIANTS = {  # the last is the script's VAE itself
    "1 x 500 tanh (Kingma and Welling)": ([500], nn.Tanh),
    "2 x 500 tanh": ([500, 500], nn.Tanh),
    "2 x 500 ReLU": ([500, 500], nn.ReLU),
    "2 x 500 softplus": ([500, 500], nn.Softplus),
    "2 x 500 ELU": (),
}


def study(args):
    train, val, _ = bmnist(args.data_dir)
    train.data = train.data[: args.max_images or None]
    result = {"epochs": args.epochs, "zdim": 20, "lr": 1e-3, "seed": args.seed, "val_elbo": {}}
    for name, networks in VARIANTS.items():
        model = variant(args.seed, *networks)
        torch.manual_seed(args.seed + 1)  # the same batch order for all
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        curve = [vae.run_epoch(model, (train, val), optimizer)[1] for _ in range(args.epochs)]
        result["val_elbo"][name] = curve
        print(f"{name:>34}: validation ELBO by epoch " + " ".join(f"{e:.1f}" for e in curve))
    return result


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "vae_activations.json"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_images", type=int, default=0, help="training images (0: all 50,000)")
    common.finish(study, p.parse_args())
