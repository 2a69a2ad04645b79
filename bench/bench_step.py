"""Where the GAN step's time went, and bf16 autocast on the CPU.

1. The GAN step of a3_gan_template.py against its earlier form, which ran D
   on the real and the fake batch as two passes of 64 rows, let G's
   backward also compute D's weight gradients, and updated the moving
   average every step: milliseconds a step, alternating, on one thread.
2. bf16 autocast (torch.autocast("cpu", dtype=torch.bfloat16)) against
   float32, for a training step of either model, and the quality after a
   short budget (one epoch of each) with three seeds: the GAN's Frechet
   distance (2,000 samples of the last iterate, sample_quality.py) and the
   VAE's validation ELBO. The quality does not depend on the machine, the
   speed does: CPUs that report the same bf16 instructions have measured
   bf16 both faster and slower than float32.
3. The GAN step compiled whole by torch.compile (inductor, which fuses the
   element-wise work into generated C++) against the same step in eager
   mode; the first, compiling round is left out by taking the best round.

    python -m bench.bench_step --data_dir ../shared/datasets
"""
import argparse
import statistics
import time

import torch

import a3_gan_template as gan
import a3_vae_template as vae
import datasets
import sample_quality
import utils

BATCH_G, BATCH_V = 64, 128


def earlier_gan_step(imgs, discriminator, generator, optimizer_G, optimizer_D, latent_dim,
                     real_label):
    """The step before the batching: two D passes, D's weight gradients in
    G's backward (and the moving average updated by the caller every step)."""
    fake = generator(torch.randn(len(imgs), latent_dim))
    optimizer_D.zero_grad(set_to_none=True)
    loss_D = gan.discriminator_loss(discriminator(imgs), discriminator(fake.detach()),
                                    real_label)
    loss_D.backward()
    optimizer_D.step()
    optimizer_G.zero_grad(set_to_none=True)
    gan.generator_loss(discriminator(fake)).backward()
    optimizer_G.step()


class Gan:
    """A GAN of the script's recipe, trained one step at a time."""

    def __init__(self, seed, every):
        torch.manual_seed(seed)
        self.G, self.D, *self.opts = gan.build_models(
            gan.build_parser().parse_args(["--device", "cpu"]))
        self.avg, self.every, self.t = gan.averaged_generator(self.G, 0.999), every, 0

    def step(self, imgs, step_fn=gan.train_step):
        step_fn(imgs, self.D, self.G, *self.opts, 100, 0.9)
        self.t += 1
        if self.t % self.every == 0:
            self.avg.update_parameters(self.G)


class Vae:
    def __init__(self, seed):
        torch.manual_seed(seed)
        self.model = vae.VAE(512, 20).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=True)

    def step(self, imgs):
        vae.epoch_iter(self.model, [imgs], self.opt)


def batches(data, size, count, seed):
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return [data[order[i * size:(i + 1) * size]] for i in range(count)]


def ms_per_step(variants, data, size, steps, rounds):
    """Best-of-rounds milliseconds a step of each variant, run alternately."""
    times = {name: [] for name in variants}
    for r in range(rounds):
        for name, step in variants.items():
            todo = batches(data, size, steps, r)
            started = time.perf_counter()
            for b in todo:
                step(b)
            times[name].append((time.perf_counter() - started) / steps * 1e3)
    return {name: min(t) for name, t in times.items()}


def bf16_instructions():
    """The CPU's bf16 instruction sets as torch sees them (private probes:
    an older torch without them reports none)."""
    return [name for name, probe in (("AVX512-BF16", "_is_avx512_bf16_supported"),
                                     ("AMX", "_is_amx_tile_supported"))
            if getattr(torch.cpu, probe, lambda: False)()]


def autocast(enabled, fn):
    def run(*args):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            return fn(*args)
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--steps", type=utils.positive_int, default=100,
                        help="steps per timing round")
    parser.add_argument("--epochs", type=utils.positive_int, default=1,
                        help="training epochs of each model in the bf16 quality comparison")
    parser.add_argument("--seeds", type=utils.seed, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="images/bench_step.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    grey = gan.real_images(gan.build_parser().parse_args(["--data_dir", args.data_dir]), "train")
    binary = datasets.load_bmnist_split(args.data_dir, "train").float().view(-1, 1, 28, 28)
    valid = datasets.load_bmnist_split(args.data_dir, "valid").float().view(-1, 1, 28, 28)

    now, before = Gan(0, gan.EMA_EVERY), Gan(0, 1)
    step_ms = ms_per_step({"this step": now.step,
                           "earlier step": lambda b: before.step(b, earlier_gan_step)},
                          grey, BATCH_G, args.steps, 3)
    result = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "bf16_instructions": bf16_instructions(), "threads": 1,
              "gan_step_ms": step_ms,
              "gan_step_speedup": step_ms["earlier step"] / step_ms["this step"]}

    result["gan_compiled_ms"] = compiled_gan_ms(grey, args.steps // 4)

    g32, g16, v32, v16 = Gan(0, gan.EMA_EVERY), Gan(0, gan.EMA_EVERY), Vae(0), Vae(0)
    result["gan_bf16_ms"] = ms_per_step({"float32": g32.step, "bf16": autocast(True, g16.step)},
                                        grey, BATCH_G, args.steps // 4, 2)
    result["vae_bf16_ms"] = ms_per_step({"float32": v32.step, "bf16": autocast(True, v16.step)},
                                        binary, BATCH_V, args.steps // 4, 2)

    result["bf16_quality"] = bf16_quality(args, grey, binary, valid)
    print({k: v for k, v in result.items() if k != "bf16_quality"})
    if args.out:
        utils.save_json(result, args.out)


def compiled_gan_ms(data, steps):
    """Eager against torch.compile'd GAN steps, or None where inductor
    cannot build (it needs a C++ compiler at run time)."""
    eager, compiled, step = Gan(0, gan.EMA_EVERY), Gan(0, gan.EMA_EVERY), torch.compile(
        gan.train_step)
    try:
        return ms_per_step({"eager": eager.step, "torch.compile": lambda b: compiled.step(b, step)},
                           data, BATCH_G, steps, 3)
    except Exception as error:  # inductor's build errors have no common type
        print("torch.compile failed:", str(error).splitlines()[0])
        return None


def bf16_quality(args, grey, binary, valid):
    """The GAN's Frechet distance and the VAE's validation ELBO after
    args.epochs of training in float32 and under bf16 autocast, per seed."""
    classifier, _ = sample_quality.load_classifier(args.data_dir)
    scorer = sample_quality.Scorer(classifier, gan.to_unit(gan.real_images(
        gan.build_parser().parse_args(["--data_dir", args.data_dir]), "test")))
    quality = {"epochs": args.epochs, "seeds": args.seeds}
    for bf16 in (False, True):
        name, fds, elbos = "bf16" if bf16 else "float32", [], []
        for seed in args.seeds:
            g, v = Gan(seed, gan.EMA_EVERY), Vae(seed)
            for epoch in range(args.epochs):
                for b in batches(grey, BATCH_G, len(grey) // BATCH_G, seed + epoch):
                    autocast(bf16, g.step)(b)
                for b in batches(binary, BATCH_V, len(binary) // BATCH_V, seed + epoch):
                    autocast(bf16, v.step)(b)
            z = torch.randn(2000, 100, generator=torch.Generator().manual_seed(seed))
            fds.append(scorer(gan.to_unit(gan.generate(g.G, z)))["frechet_distance"])
            v.model.eval()
            elbos.append(vae.epoch_iter(v.model, datasets.TensorLoader(valid, 1000), None))
            print(f"{name} seed {seed}: GAN Frechet distance {fds[-1]:.1f}, "
                  f"VAE validation ELBO {elbos[-1]:.2f}", flush=True)
        quality[name] = {"gan_frechet_distance": fds, "vae_val_elbo": elbos,
                         "gan_frechet_distance_mean": statistics.mean(fds),
                         "vae_val_elbo_mean": statistics.mean(elbos)}
    return quality


if __name__ == "__main__":
    main()
