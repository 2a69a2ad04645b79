"""Why two hidden layers of 512 ELU units? A short side-by-side run.

Trains the VAE of a3_vae_template.py (zdim 20, Adam at a constant 1e-3) for
a few epochs with the architecture of Kingma and Welling (one hidden layer of
500 tanh units, the course's advice) and with two hidden layers of 512 units
under tanh, ReLU, softplus and ELU, from the same seed, and writes the
validation ELBO after each epoch to --out. The script's mlp() uses two ELU
layers because of this comparison.

    python -m experiments.vae_activations --data_dir ../shared/datasets
"""
import sys

import torch
import torch.nn as nn

import a3_vae_template as vae
import utils
from datasets import bmnist

# name: (hidden layers, units, activation)
VARIANTS = {"1 x 500 tanh (Kingma and Welling)": (1, 500, nn.Tanh),
            "2 x 512 tanh": (2, 512, nn.Tanh), "2 x 512 ReLU": (2, 512, nn.ReLU),
            "2 x 512 softplus": (2, 512, nn.Softplus), "2 x 512 ELU": (2, 512, nn.ELU)}


def network(sizes, activation):
    """vae.mlp with another activation in place of ELU."""
    net = vae.mlp(sizes)
    for i, layer in enumerate(net):
        if isinstance(layer, nn.ELU):
            net[i] = activation()
    return net


def variant(depth, width, activation):
    model = vae.VAE(width, 20)
    model.encoder.net = network([vae.PIXELS, *[width] * depth, 2 * 20], activation)
    model.decoder.net = network([20, *[width] * depth, vae.PIXELS], activation)
    return model


def main(argv=None):
    parser = utils.parser(__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--epochs", type=utils.positive_int, default=5)
    parser.add_argument("--out", default="images/vae_activations.json")
    args = parser.parse_args(argv)
    code = utils.code_version()
    try:
        train, val, _ = bmnist(args.data_dir, 128)
    except utils.RunError as err:
        sys.exit(f"error: {err}")
    result = {"epochs": args.epochs, "zdim": 20, "lr": 1e-3, "seed": 0, "val_elbo": {}}
    for name, (depth, width, activation) in VARIANTS.items():
        torch.manual_seed(0)
        model = variant(depth, width, activation)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        curve = []
        for _ in range(args.epochs):
            model.train()
            vae.epoch_iter(model, train, optimizer)
            model.eval()
            curve.append(vae.epoch_iter(model, val, optimizer))
        result["val_elbo"][name] = curve
        print(f"{name:>34}: validation ELBO by epoch " + " ".join(f"{e:.1f}" for e in curve),
              flush=True)
    result["code"] = code
    utils.save_json(result, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
