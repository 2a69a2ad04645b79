"""Seconds per GAN epoch on the CPU: our in-memory tensor loader against the
common PyTorch-GAN input pipeline (a Dataset of PIL images, per-item
ToTensor + Normalize, a torch DataLoader collating the batches).

Both feed the same images (the binarized training set) to the same
architecture and the same training step, imported from a3_gan_template.py,
so the difference is the input pipeline alone. Each pipeline starts from
freshly initialised networks with the same seed.

    python bench/bench_gan.py --data_dir /path/to/data --max_images 10000
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import a3_gan_template as gan  # noqa: E402
import datasets  # noqa: E402
import utils  # noqa: E402


class PILDataset(torch.utils.data.Dataset):
    """Returns one 28x28 PIL image per item, like torchvision's MNIST."""

    def __init__(self, pixels, transform):
        self.pixels = pixels  # uint8 numpy array (N, 28, 28), values 0..255
        self.transform = transform

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, index):
        from PIL import Image
        return self.transform(Image.fromarray(self.pixels[index], mode="L"))


def torchvision_loader(bits, batch_size, num_workers):
    from torchvision import transforms
    # The transform of the popular PyTorch-GAN scripts, Resize included.
    transform = transforms.Compose([transforms.Resize(28), transforms.ToTensor(),
                                    transforms.Normalize((0.5,), (0.5,))])
    pixels = (bits.numpy().reshape(-1, 28, 28) * np.uint8(255))
    return torch.utils.data.DataLoader(PILDataset(pixels, transform),
                                       batch_size=batch_size, shuffle=True,
                                       drop_last=True, num_workers=num_workers)


def tensor_loader(bits, batch_size):
    images = bits.float().view(-1, 1, 28, 28) * 2 - 1
    return datasets.TensorLoader(images, batch_size, shuffle=True,
                                 drop_last=True)


def time_epoch(loader, args):
    """Seconds for one epoch of training through `loader`."""
    defaults = gan.build_parser().parse_args([])  # the script's recipe
    utils.seed_everything(args.seed)
    generator = gan.Generator(args.latent_dim)
    discriminator = gan.Discriminator(defaults.d_dropout)
    opt_g = torch.optim.Adam(generator.parameters(), lr=defaults.lr,
                             betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=defaults.lr,
                             betas=(0.5, 0.999))
    start = time.perf_counter()
    for batch in loader:
        gan.train_step(batch, discriminator, generator, opt_g, opt_d,
                       args.latent_dim, defaults.real_label)
    return time.perf_counter() - start


def warm_up(bits, args):
    """A few untimed steps, so that one-off start-up costs (thread pools,
    allocator) count against neither pipeline."""
    time_epoch(tensor_loader(bits[:10 * args.batch_size], args.batch_size), args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--max_images", type=utils.nonneg_int, default=10_000,
                        help="images per epoch (0 = all 50k)")
    parser.add_argument("--batch_size", type=utils.positive_int, default=64)
    parser.add_argument("--latent_dim", type=utils.positive_int, default=100)
    parser.add_argument("--num_workers", type=utils.nonneg_int, default=0,
                        help="DataLoader worker processes of the baseline")
    parser.add_argument("--repeats", type=utils.positive_int, default=2,
                        help="epochs per pipeline, alternating; best is kept")
    parser.add_argument("--threads", type=utils.nonneg_int, default=0,
                        help="torch CPU threads (0: torch's default, as the "
                             "training script uses)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="images/bench_gan.json",
                        help="where to write the numbers ('' for nowhere)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        bits = datasets.load_bmnist_split(args.data_dir, "train")
    except datasets.DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.max_images:
        bits = bits[:args.max_images]

    loaders = {"ours (tensor in memory)": tensor_loader(bits, args.batch_size),
               "torchvision DataLoader + PIL transforms":
                   torchvision_loader(bits, args.batch_size, args.num_workers)}
    best = {name: float("inf") for name in loaders}
    warm_up(bits, args)
    # Alternate the pipelines so that a change in machine load hits both.
    for _ in range(args.repeats):
        for name, loader in loaders.items():
            best[name] = min(best[name], time_epoch(loader, args))
    print(f"{len(bits)} images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats} epochs")
    for name, seconds in best.items():
        print(f"  {name:42s} {seconds:7.2f} s/epoch")
    ours, theirs = best.values()
    print(f"  speed-up {theirs / ours:.2f}x  (target >= 1.5x)")
    if args.out:
        utils.save_json({"device": "cpu", "threads": torch.get_num_threads(),
                         "images": len(bits), "batch_size": args.batch_size,
                         "repeats": args.repeats, "ours_seconds": ours,
                         "dataloader_seconds": theirs, "speedup": theirs / ours},
                        args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
