"""Which non-linearity trains the VAE fastest? A short side-by-side run.

Trains the VAE of a3_vae_template.py (two hidden layers of --hidden_dim units,
zdim 20, Adam at a constant 1e-3) for a few epochs with ELU, ReLU and softplus
and prints the validation ELBO after each epoch. The script's mlp() uses ELU
because of this comparison.

    python -m experiments.vae_activations --data_dir ../shared/datasets
"""
import argparse

import torch
import torch.nn as nn

import a3_vae_template as vae
from datasets import bmnist


def with_activation(model, activation):
    for net in (model.encoder.net, model.decoder.net):
        for i, layer in enumerate(net):
            if isinstance(layer, nn.ELU):
                net[i] = activation()
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--hidden_dim", type=int, default=512)
    args = parser.parse_args()
    train, val, _ = bmnist(args.data_dir, 128)
    for activation in (nn.ELU, nn.ReLU, nn.Softplus):
        torch.manual_seed(0)
        model = with_activation(vae.VAE(args.hidden_dim, 20), activation)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        curve = []
        for _ in range(args.epochs):
            model.train()
            vae.epoch_iter(model, train, optimizer)
            model.eval()
            curve.append(vae.epoch_iter(model, val, optimizer))
        print(f"{activation.__name__:>8}: validation ELBO by epoch "
              + " ".join(f"{e:.1f}" for e in curve), flush=True)


if __name__ == "__main__":
    main()
