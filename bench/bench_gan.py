"""Seconds per GAN epoch on one CPU thread, as whole processes: the script's
`a3_gan_template.py --n_epochs 1 --quality_interval 0` against the common
recipe, bench/recipe_gan.py, alternating --pairs times. Writes the walls,
their medians, speedup_vs_recipe (recipe median / script median), the
single-thread float32 peak of one large torch.mm and the CPU model.

    python -m bench.bench_gan --data_dir ../shared/datasets  # ~4 min
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import utils
from experiments import common


def wall_seconds(command, data_dir):
    """A whole process on one thread, imports and data loading included."""
    started, env = time.perf_counter(), {**os.environ, "OMP_NUM_THREADS": "1"}
    command += ["--data_dir", data_dir]
    if subprocess.run(command, cwd=utils.ROOT, env=env, stdout=subprocess.DEVNULL).returncode:
        raise utils.RunError(f"{' '.join(command)} failed")
    return time.perf_counter() - started


def peak_gflops(n=2048, repeats=10):
    """float32 GFLOP/s of one large square product on one thread, best of repeats."""
    torch.set_num_threads(1)
    a, b, best = torch.randn(n, n), torch.randn(n, n), float("inf")
    for _ in range(repeats + 1):  # the first warms up
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def cpu_model():
    with open("/proc/cpuinfo") as f:
        names = [line.split(":")[1].strip() for line in f if line.startswith("model name")]
    return names[0] if names else None


def study(args):
    script = [sys.executable, "a3_gan_template.py", "--n_epochs", "1", "--quality_interval", "0"]
    recipe = [sys.executable, "-m", "bench.recipe_gan", "--n_epochs", "1"]
    walls = {"script": [], "recipe": []}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            out_dir = os.path.join(tmp, str(pair))
            walls["script"].append(wall_seconds(script + ["--out_dir", out_dir], args.data_dir))
            walls["recipe"].append(wall_seconds(recipe, args.data_dir))
            print(f"pair {pair + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in walls.items()))
    medians = {name: statistics.median(w) for name, w in walls.items()}
    speedup = medians["recipe"] / medians["script"]
    result = {"threads": 1, "pairs": args.pairs, "wall_seconds": walls}
    result.update(median_wall_seconds=medians, speedup_vs_recipe=speedup)
    result.update(peak_gflops=peak_gflops(), cpu_model=cpu_model())
    return result


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "bench_gan.json"))
    p.add_argument("--pairs", type=int, default=3, help="alternating runs of each")
    common.finish(study, p.parse_args())
