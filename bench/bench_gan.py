"""Seconds per GAN training pass on the CPU, against two references.

In one process, with one thread count, over the grey-scale training images:
- the training pass of a3_gan_template.py (in-memory batches, its train_step
  and the update of the averaged generator);
- the very same matrix products (same shapes and strides, forward and
  backward, recorded from a real step) replayed alone:
  ratio_same_shapes = train_seconds / same_shape_gemm_seconds (target <= 1.5);
- the same pass fed by the common input pipeline, torchvision's MNIST
  dataset with per-item ToTensor + Normalize through a torch DataLoader:
  speedup_vs_dataloader = its seconds / train_seconds (target >= 1.5).

    python -m bench.bench_gan --data_dir ../shared/datasets
"""
import argparse
import time

import torch

import a3_gan_template as gan
import datasets
import utils
from bench import gemm


def models(args):
    """Freshly initialised networks and optimisers of the script's recipe."""
    defaults = gan.build_parser().parse_args([])
    torch.manual_seed(args.seed)
    generator, discriminator = gan.Generator(args.latent_dim), gan.Discriminator(defaults.d_dropout)
    optimizers = [torch.optim.Adam(m.parameters(), lr=defaults.lr, betas=(0.5, 0.999),
                                   fused=True) for m in (generator, discriminator)]
    averaged = gan.averaged_generator(generator, defaults.ema_decay)
    return generator, discriminator, *optimizers, defaults.real_label, averaged


def time_pass(loader, args):
    """Seconds for one training pass through `loader` (best of --repeats),
    each from freshly initialised networks."""
    best = float("inf")
    for _ in range(args.repeats):
        generator, discriminator, opt_g, opt_d, real_label, averaged = models(args)
        started = time.perf_counter()
        for batch in loader:
            batch = batch[0] if isinstance(batch, list) else batch  # (images, labels)
            gan.train_step(batch, discriminator, generator, opt_g, opt_d, args.latent_dim,
                           real_label)
            averaged.update_parameters(generator)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--max_images", type=utils.positive_int, default=12_800,
                        help="images per pass")
    parser.add_argument("--batch_size", type=utils.number(int, 2), default=64)
    parser.add_argument("--latent_dim", type=utils.positive_int, default=100)
    parser.add_argument("--repeats", type=utils.positive_int, default=2)
    parser.add_argument("--threads", type=utils.positive_int, default=1,
                        help="torch CPU threads, for both measurements (1: as the committed "
                             "runs use, one run per core)")
    parser.add_argument("--seed", type=utils.seed, default=0)
    parser.add_argument("--out", default="images/bench_gan.json",
                        help="where to write the numbers ('' for nowhere)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torchvision import transforms
    from torchvision.datasets import MNIST

    images = datasets.load_mnist(args.data_dir, "train")[0][:args.max_images]
    ours = datasets.TensorLoader((images.float() / 127.5 - 1).view(-1, 1, 28, 28),
                                 args.batch_size, shuffle=True, drop_last=True)
    pipeline = MNIST(args.data_dir, train=True, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    theirs = torch.utils.data.DataLoader(
        torch.utils.data.Subset(pipeline, range(args.max_images)),
        batch_size=args.batch_size, shuffle=True, drop_last=True)

    time_pass(datasets.TensorLoader(ours.data[:10 * args.batch_size], args.batch_size), args)
    train_seconds = time_pass(ours, args)
    dataloader_seconds = time_pass(theirs, args)
    generator, discriminator, opt_g, opt_d, real_label, _ = models(args)
    calls = gemm.record(lambda: gan.train_step(ours.data[:args.batch_size], discriminator,
                                               generator, opt_g, opt_d, args.latent_dim,
                                               real_label))
    gemm_seconds = gemm.time_products(calls, len(ours))
    result = {"device": "cpu", "threads": torch.get_num_threads(), "images": len(ours) *
              args.batch_size, "batch_size": args.batch_size, "repeats": args.repeats,
              "train_seconds": train_seconds, "same_shape_gemm_seconds": gemm_seconds,
              "ratio_same_shapes": train_seconds / gemm_seconds,
              "dataloader_seconds": dataloader_seconds,
              "speedup_vs_dataloader": dataloader_seconds / train_seconds}
    print(f"threads {result['threads']}, {result['images']} images: training pass "
          f"{train_seconds:.2f} s, its matrix products alone {gemm_seconds:.2f} s (ratio "
          f"{result['ratio_same_shapes']:.2f}, target <= 1.5); with a DataLoader "
          f"{dataloader_seconds:.2f} s ({result['speedup_vs_dataloader']:.2f}x, target >= 1.5x)")
    if args.out:
        utils.save_json(result, args.out)


if __name__ == "__main__":
    main()
