"""The common PyTorch recipe for an MLP GAN on MNIST, the speed reference of
bench/bench_gan.py: torchvision's MNIST through a DataLoader with per-item
transforms, a D that ends in a sigmoid trained with BCELoss, torch's default
Adam, G's step then D's on the detached fakes. Layer sizes, learning rate,
betas and batch are the script's (whose D adds dropout and G a moving
average, costs on the script's side): only the implementation differs.

    python -m bench.recipe_gan --data_dir ../shared/datasets --n_epochs 1
"""

import argparse
import time

import torch
import torch.nn as nn
from torchvision import transforms
from torchvision.datasets import MNIST


def block(n_in, n_out, normalize=True):
    layers = [nn.Linear(n_in, n_out)]
    if normalize:
        layers.append(nn.BatchNorm1d(n_out))
    return layers + [nn.LeakyReLU(0.2)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--n_epochs", type=int, default=1)
    args = parser.parse_args(argv)

    normalize = [transforms.Resize(28), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
    data = MNIST(args.data_dir, train=True, transform=transforms.Compose(normalize))
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    layers = block(100, 128, normalize=False) + block(128, 256) + block(256, 512)
    generator = nn.Sequential(*layers, *block(512, 1024), nn.Linear(1024, 784), nn.Tanh())
    layers = [nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2)]
    discriminator = nn.Sequential(*layers, nn.Linear(256, 1), nn.Sigmoid())
    bce = nn.BCELoss()
    opt_g = torch.optim.Adam(generator.parameters(), lr=0.0002, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=0.0002, betas=(0.5, 0.999))

    for epoch in range(args.n_epochs):
        started = time.perf_counter()
        for imgs, _ in loader:
            real = imgs.view(len(imgs), -1)
            ones, zeros = torch.ones(len(imgs), 1), torch.zeros(len(imgs), 1)

            opt_g.zero_grad()
            fake = generator(torch.randn(len(imgs), 100))
            loss_g = bce(discriminator(fake), ones)
            loss_g.backward()
            opt_g.step()

            opt_d.zero_grad()
            loss_d = (bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)) / 2
            loss_d.backward()
            opt_d.step()
        seconds = time.perf_counter() - started
        print(f"epoch {epoch + 1}: D {loss_d.item():.3f}, G {loss_g.item():.3f}, {seconds:.1f} s")


if __name__ == "__main__":
    main()
