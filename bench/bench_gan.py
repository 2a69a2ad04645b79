"""Seconds per GAN epoch on the CPU: the project's script against the common
recipe, and its training pass against the cost of its matrix products.

- Whole processes, one epoch each on the 60,000 grey-scale training images,
  alternating --pairs times: `a3_gan_template.py --n_epochs 1
  --quality_samples 0` against bench/recipe_gan.py (torchvision's MNIST
  through a DataLoader, sigmoid + BCELoss, torch's default Adam):
  speedup_vs_recipe = median recipe wall / median script wall.
- The script's training pass (its own epoch time, from its metrics) against
  its matrix products, recorded from a real step: ratio_peak divides by
  their FLOPs at the peak rate of one large product (bench.gemm.peak_gflops,
  same threads, same run); ratio_same_shapes by the products replayed alone
  with their own shapes and strides.

    python -m bench.bench_gan --data_dir ../shared/datasets
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import a3_gan_template as gan
import sample_quality
import utils
from bench import gemm

STEPS = 60_000 // 64  # one epoch of the default batch


def wall_seconds(command, threads):
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=utils.ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return time.perf_counter() - started


def products():
    """The matrix products of one training step of the script's recipe."""
    defaults = gan.build_parser().parse_args(["--device", "cpu"])
    generator, discriminator, opt_g, opt_d = gan.build_models(defaults)
    real = torch.rand(defaults.batch_size, 1, 28, 28) * 2 - 1
    return gemm.record(lambda: gan.train_step(real, discriminator, generator, opt_g, opt_d,
                                              defaults.latent_dim, defaults.real_label))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--pairs", type=utils.positive_int, default=3,
                        help="alternating runs of the script and of the recipe")
    parser.add_argument("--threads", type=utils.positive_int, default=1,
                        help="torch CPU threads of every measurement (1: as the committed "
                             "runs use, one run per core)")
    parser.add_argument("--out", default="images/bench_gan.json",
                        help="where to write the numbers ('' for nowhere)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sample_quality.load_classifier(args.data_dir)  # cached before any timing
    ours, theirs, epochs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            out_dir = os.path.join(tmp, str(pair))
            ours.append(wall_seconds([sys.executable, "a3_gan_template.py", "--data_dir",
                                      args.data_dir, "--n_epochs", "1", "--quality_samples",
                                      "0", "--out_dir", out_dir], args.threads))
            theirs.append(wall_seconds([sys.executable, "-m", "bench.recipe_gan", "--data_dir",
                                        args.data_dir, "--n_epochs", "1"], args.threads))
            with open(os.path.join(out_dir, "gan_metrics.json")) as f:
                epochs.append(json.load(f)["seconds_per_epoch"][0])
            print(f"pair {pair + 1}: script {ours[-1]:.1f} s (epoch {epochs[-1]:.1f} s), "
                  f"recipe {theirs[-1]:.1f} s", flush=True)
    calls = products()
    rate = gemm.peak_gflops()
    limit = gemm.flops(calls) * STEPS / rate / 1e9
    same_shapes = gemm.time_products(calls, STEPS)
    train = statistics.median(epochs)
    result = {"device": "cpu", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "threads": torch.get_num_threads(), "pairs": args.pairs,
              "script_wall_seconds": ours, "recipe_wall_seconds": theirs,
              "speedup_vs_recipe": statistics.median(theirs) / statistics.median(ours),
              "images": STEPS * 64, "train_seconds": train, "train_seconds_all": epochs,
              "step_gflop": gemm.flops(calls) / 1e9, "peak_gflops": rate,
              "flop_limit_seconds": limit, "ratio_peak": train / limit,
              "same_shape_gemm_seconds": same_shapes, "ratio_same_shapes": train / same_shapes,
              "slowest_products": gemm.shortfall(calls, rate)}
    print(f"threads {result['threads']}: the script is {result['speedup_vs_recipe']:.2f}x "
          f"as fast as the common recipe (whole process, one epoch, median of {args.pairs}); "
          f"its training pass {train:.1f} s is {result['ratio_peak']:.2f}x the time of its "
          f"matrix products at {rate:.0f} GFLOP/s ({limit:.1f} s) and "
          f"{result['ratio_same_shapes']:.2f}x the products replayed alone")
    if args.out:
        utils.save_json(result, args.out)


if __name__ == "__main__":
    main()
