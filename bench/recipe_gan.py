"""The common PyTorch recipe for an MLP GAN on MNIST, as a speed reference.

What most tutorials do: torchvision's MNIST through a DataLoader with per-item
Resize, ToTensor and Normalize; a discriminator that ends in a sigmoid,
trained with BCELoss; torch.optim.Adam with its default implementation; the
generator's step first, then the discriminator's on the detached fakes. The
layer sizes, the learning rate, Adam's betas and the batch of 64 are those of
a3_gan_template.py, so that only the implementation differs.
bench/bench_gan.py times one epoch of this against one of the project's
script, each as a whole process.

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
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.0002)
    parser.add_argument("--latent_dim", type=int, default=100)
    args = parser.parse_args(argv)

    data = MNIST(args.data_dir, train=True, transform=transforms.Compose([
        transforms.Resize(28), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]))
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True)
    generator = nn.Sequential(*block(args.latent_dim, 128, normalize=False), *block(128, 256),
                              *block(256, 512), *block(512, 1024), nn.Linear(1024, 784),
                              nn.Tanh())
    discriminator = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256),
                                  nn.LeakyReLU(0.2), nn.Linear(256, 1), nn.Sigmoid())
    bce = nn.BCELoss()
    opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))

    for epoch in range(args.n_epochs):
        started = time.perf_counter()
        for imgs, _ in loader:
            real = imgs.view(len(imgs), -1)
            ones, zeros = torch.ones(len(imgs), 1), torch.zeros(len(imgs), 1)

            opt_g.zero_grad()
            fake = generator(torch.randn(len(imgs), args.latent_dim))
            loss_g = bce(discriminator(fake), ones)
            loss_g.backward()
            opt_g.step()

            opt_d.zero_grad()
            loss_d = (bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)) / 2
            loss_d.backward()
            opt_d.step()
        print(f"epoch {epoch + 1}: D loss {loss_d.item():.3f}, G loss {loss_g.item():.3f}, "
              f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
