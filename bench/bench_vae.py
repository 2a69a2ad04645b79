"""How close one VAE training epoch comes to the cost of its matrix products.

Measures, in one run: the machine's float32 GEMM rate (a large square matrix
product, best of several), the forward+backward FLOPs of the model's linear
layers for one epoch, and the wall time of real training epochs of
a3_vae_template.py. Prints seconds per epoch and

    ratio = epoch seconds / (epoch GEMM FLOPs / GEMM rate)

Target on CPU: ratio <= 1.5.

    python bench/bench_vae.py --data_dir ../shared/datasets
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import a3_vae_template as vae  # noqa: E402
import utils  # noqa: E402
from datasets import bmnist  # noqa: E402


def gemm_gflops(n=2048, repeats=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best / 1e9


def training_flops(model, n_images):
    """FLOPs of the linear layers in one training pass over n_images: forward
    2*in*out per image, backward as much again for the weight gradient and
    once more for the input gradient, except at the first encoder layer,
    whose input (the data) needs no gradient."""
    first = model.encoder.net[0]
    total = 0
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            mac = layer.in_features * layer.out_features
            total += 2 * mac * (2 if layer is first else 3)
    return total * n_images


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs")
    parser.add_argument("--zdim", type=int, default=20)
    parser.add_argument("--hidden_dim", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--out", default="images/bench_vae.json",
                        help="where to write the numbers ('' for nowhere)")
    args = parser.parse_args()

    torch.manual_seed(0)
    train, val, _ = bmnist(args.data_dir, args.batch_size)
    model = vae.VAE(args.hidden_dim, args.zdim)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    vae.epoch_iter(model, train, optimizer)  # warm-up epoch, not timed

    train_seconds, epoch_seconds = [], []
    for _ in range(args.epochs):
        started = time.perf_counter()
        model.train()
        vae.epoch_iter(model, train, optimizer)
        train_seconds.append(time.perf_counter() - started)
        model.eval()
        vae.epoch_iter(model, val, optimizer)
        epoch_seconds.append(time.perf_counter() - started)

    rate = gemm_gflops()
    flops = training_flops(model, len(train.data))
    ideal = flops / (rate * 1e9)
    best = min(train_seconds)
    print(f"threads: {torch.get_num_threads()}, GEMM rate: {rate:.1f} GFLOP/s")
    print(f"training pass: {flops / 1e9:.1f} GFLOP, ideal {ideal:.2f} s")
    print(f"training pass: best {best:.2f} s, epochs "
          + " ".join(f"{s:.2f}" for s in train_seconds))
    print(f"epoch with validation: best {min(epoch_seconds):.2f} s")
    print(f"ratio (training pass / GEMM time): {best / ideal:.2f}  (target <= 1.5)")
    if args.out:
        utils.save_json({"device": "cpu", "threads": torch.get_num_threads(),
                         "gemm_gflops": rate, "train_gflop": flops / 1e9,
                         "ideal_seconds": ideal, "train_seconds": best,
                         "epoch_seconds": min(epoch_seconds), "ratio": best / ideal,
                         "hidden_dim": args.hidden_dim, "zdim": args.zdim,
                         "batch_size": args.batch_size}, args.out)


if __name__ == "__main__":
    main()
