"""How close a VAE training pass comes to the cost of its matrix products.

In one process, with one thread count: the wall time of training passes of
a3_vae_template.py over the binarized training set (best of --epochs), and
the time of the very same matrix products (same shapes and strides, forward
and backward, recorded from a real step) replayed alone. Writes

    ratio_same_shapes = train_seconds / same_shape_gemm_seconds   (target <= 1.5)

and, for reference, the ratio to the machine's peak GEMM rate.

    python -m bench.bench_vae --data_dir ../shared/datasets
"""
import argparse
import time

import torch

import a3_vae_template as vae
import utils
from bench import gemm
from datasets import bmnist


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--epochs", type=utils.positive_int, default=3, help="timed passes")
    parser.add_argument("--zdim", type=utils.positive_int, default=20)
    parser.add_argument("--hidden_dim", type=utils.positive_int, default=512)
    parser.add_argument("--batch_size", type=utils.positive_int, default=128)
    parser.add_argument("--threads", type=utils.positive_int, default=1,
                        help="torch CPU threads, for both measurements (1: as the committed "
                             "runs use, one run per core)")
    parser.add_argument("--out", default="images/bench_vae.json",
                        help="where to write the numbers ('' for nowhere)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train, _, _ = bmnist(args.data_dir, args.batch_size)
    model = vae.VAE(args.hidden_dim, args.zdim).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    vae.epoch_iter(model, train, optimizer)  # warm-up pass, not timed

    seconds = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        vae.epoch_iter(model, train, optimizer)
        seconds.append(time.perf_counter() - started)

    # The products of a full batch, and of the last, smaller one.
    n_full, rest = divmod(len(train.data), args.batch_size)
    batches = [(train.data[:args.batch_size], n_full)] + (
        [(train.data[:rest], 1)] if rest else [])
    gemm_seconds = gemm_flops = 0.0
    recorded = [gemm.record(lambda: vae.epoch_iter(model, [batch], optimizer))
                for batch, _ in batches]
    for calls, (_, count) in zip(recorded, batches):
        gemm_seconds += gemm.time_products(calls, count)
        gemm_flops += gemm.flops(calls) * count
    rate = gemm.peak_gflops()
    best = min(seconds)
    result = {"device": "cpu", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "threads": torch.get_num_threads(), "images": len(train.data),
              "batch_size": args.batch_size, "hidden_dim": args.hidden_dim, "zdim": args.zdim,
              "train_seconds": best, "train_seconds_all": seconds,
              "same_shape_gemm_seconds": gemm_seconds,
              "ratio_same_shapes": best / gemm_seconds,
              "train_gflop": gemm_flops / 1e9, "peak_gflops": rate,
              "ratio_peak": best / (gemm_flops / 1e9 / rate),
              "slowest_products": gemm.shortfall(recorded[0], rate)}
    print(f"threads {result['threads']}: training pass {best:.2f} s (best of {args.epochs}), "
          f"its matrix products alone {gemm_seconds:.2f} s: ratio "
          f"{result['ratio_same_shapes']:.2f}; at the peak rate of "
          f"{rate:.0f} GFLOP/s they would take {gemm_flops / 1e9 / rate:.2f} s")
    if args.out:
        utils.save_json(result, args.out)


if __name__ == "__main__":
    main()
