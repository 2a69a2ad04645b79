"""Milliseconds per training step on one CPU thread, in alternating rounds:
the GAN step of the script's train() with G's moving average updated after
every step (AveragedModel.update_parameters, as the script does) against
without it, hence the average's relative cost (the target: at most 5%);
and the VAE's step on a batch of 128 (its epoch_iter).

    python -m bench.bench_step --data_dir ../shared/datasets  # ~2 min
"""

import functools
import os
import statistics
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import a3_vae_template as vae
from datasets import TensorLoader, load_bmnist_split
from experiments import common


def gan_step(models, optimizers, averaged, imgs):
    common.gan_step(imgs, models, optimizers)
    if averaged is not None:
        averaged.update_parameters(models[0])


def steps():
    """The steps timed, each from its own model with the same initial weights."""
    variants = {}
    for name in ("with moving average", "without"):
        models, optimizers = common.gan_models(0)
        ema = get_ema_multi_avg_fn(0.999)  # the script's default decay
        averaged = AveragedModel(models[0], multi_avg_fn=ema, use_buffers=True)
        averaged = None if name == "without" else averaged
        variants[name] = functools.partial(gan_step, models, optimizers, averaged)
    model = vae.VAE().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    variants["vae"] = lambda imgs: vae.epoch_iter(model, TensorLoader(imgs, 128), optimizer)
    return variants


def ms_per_step(step, batches):
    started = time.perf_counter()
    for imgs in batches:
        step(imgs)
    return (time.perf_counter() - started) / len(batches) * 1e3


def study(args):
    torch.set_num_threads(1)
    grey = common.grey_train_images(args.data_dir)
    binary = load_bmnist_split(args.data_dir, "train").float().view(-1, 1, 28, 28)
    data = {"with moving average": (grey, 64), "without": (grey, 64), "vae": (binary, 128)}
    timed = steps()
    times = {name: [] for name in timed}
    for r in range(args.rounds):
        for name in list(timed)[:: 1 if r % 2 else -1]:  # the order turns every round
            images, size = data[name]
            batches = TensorLoader(common.real_subset(images, size * args.steps, r), size)
            times[name].append(ms_per_step(timed[name], list(batches)))
    medians = {name: statistics.median(t) for name, t in times.items()}
    cost = medians["with moving average"] / medians["without"] - 1
    print(f"ms per step {medians}; the moving average costs {cost:.1%}")
    result = {"threads": 1, "rounds": args.rounds, "steps": args.steps}
    result.update(batch={"gan": 64, "vae": 128}, step_ms=times, step_ms_median=medians)
    result.update(moving_average_cost=cost, moving_average_cost_target=0.05)
    return result


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "bench_step.json"))
    p.add_argument("--rounds", type=int, default=7, help="alternating timing rounds")
    p.add_argument("--steps", type=int, default=200, help="steps per round")
    common.finish(study, p.parse_args())
