"""Question 1.4: log p(x) by naive Monte Carlo (z from the prior) against
importance sampling (z from q(z|x)), for the trained VAEs of zdims 2, 5, 10
and 20 (--out_dir/vae_z{Z}_model.pt), at k = 1, 3, 10, ... samples; writes
the estimates (mean and std over repeats) to --out, the figure beside it.

    python -m experiments.vae_mc_vs_is --data_dir ../shared/datasets  # ~15 min
"""

import io
import math
import os

import torch
from matplotlib.figure import Figure

import a3_vae_template as vae
import utils
from datasets import load_bmnist_split
from experiments import common

ESTIMATORS = {"prior": "naive MC, z ~ p(z)", "posterior": "importance sampling, z ~ q(z|x)"}


@torch.no_grad()
def log_weights(model, x, k, proposal, chunk=2**24):
    """log p(x, z) - log r(z) for k samples z ~ r per image, shape (k, B), with
    r the prior N(0, I) or q(z|x); in chunks of at most `chunk` logits."""
    mean, std = model.encoder(x)
    zero, one = torch.zeros_like(mean), torch.ones_like(std)
    if proposal == "prior":
        mean, std = zero, one
    n, out = max(1, chunk // (len(x) * x.shape[1])), []
    for start in range(0, k, n):
        z = mean + std * torch.randn(min(n, k - start), *mean.shape)
        log_joint = vae.log_bernoulli(model.decoder.logits(z), x) + vae.log_normal(z, zero, one)
        out.append(log_joint - vae.log_normal(z, mean, std))
    return torch.cat(out)


def nested_estimates(log_w, ks):
    """log (1/k) sum of the first k weights for every k in ks, averaged over
    the images: one cumulative logsumexp serves all k."""
    running = torch.logcumsumexp(log_w, dim=0)[torch.as_tensor(ks) - 1].mean(1)
    return running - torch.tensor([math.log(k) for k in ks])


def estimate(model, x, ks, repeats):
    """Per estimator, mean and std over repeats of the image-averaged
    estimates; and the ELBO, the mean log-weight under q(z|x)."""
    result = {"k": ks}
    for name in ESTIMATORS:
        log_w = [log_weights(model, x, ks[-1], name) for _ in range(repeats)]
        runs = torch.stack([nested_estimates(w, ks) for w in log_w])
        std = runs.std(0) if repeats > 1 else torch.zeros(len(ks))
        result[name] = {"mean": runs.mean(0).tolist(), "std": std.tolist()}
    result["elbo"] = torch.stack(log_w).mean().item()  # the posterior's, which comes last
    return result


def plot(results, n_images, path):
    """A panel per zdim (four at most): both estimators' mean with a +-1 std
    band against log k, the y-range from k = 10 on, where they differ."""
    fig = Figure(figsize=(6.2, 6.0), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (zdim, res) in zip(axes, results.items()):
        for name, color in zip(ESTIMATORS, ("tab:red", "tab:blue")):
            mean, std = torch.tensor(res[name]["mean"]), torch.tensor(res[name]["std"])
            ax.plot(res["k"], mean, "o-", ms=4, color=color, label=ESTIMATORS[name])
            ax.fill_between(res["k"], mean - std, mean + std, color=color, alpha=0.25)
        ax.axhline(res["elbo"], color="gray", ls=":", label="ELBO")
        shown = [v for n in ESTIMATORS for k, v in zip(res["k"], res[n]["mean"]) if k >= 10]
        low, high = min(shown + [res["elbo"]]), max(shown + [res["elbo"]])
        ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low) + 1e-3)
        gap = res["posterior"]["mean"][-1] - res["prior"]["mean"][-1]
        ax.set_title(f"zdim = {zdim}: IS - MC = {gap:.1f} nats", fontsize="medium")
        ax.set(xscale="log", xlabel="number of samples k", ylabel="log p(x) estimate (nats)")
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3)
    fig.suptitle(f"log p(x) of {n_images} test images, mean and std over repeats")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    utils.write_atomic(path, buffer.getvalue())


def study(args):
    torch.manual_seed(args.seed)
    images = load_bmnist_split(args.data_dir, "test").float()  # sorted by digit: spread rows
    x = images[torch.linspace(0, len(images) - 1, args.n_images).round().long()]
    ks = [k for e in range(10) for k in (10**e, 3 * 10**e) if k < args.max_samples]
    ks, results = ks + [args.max_samples], {}
    for z in args.zdims:
        model = common.load(vae.VAE(z_dim=z), os.path.join(args.out_dir, f"vae_z{z}_model.pt"))
        r = results[str(z)] = estimate(model, x, ks, args.repeats)
        print(f"zdim {z}: " + ", ".join(f"{n} {r[n]['mean'][-1]:.2f}" for n in ESTIMATORS))
    plot(results, len(x), common.figure_path(args.out))
    about = "log p(x) estimates in nats per image, averaged over n_images evenly spaced test "
    about += "images; mean and std over repeats; elbo: the mean importance log-weight"
    result = {"about": about, "n_images": len(x), "repeats": args.repeats, "seed": args.seed}
    return {**result, "device": "cpu", "zdims": results}


if __name__ == "__main__":
    p = common.parser(__doc__, os.path.join("images", "vae_mc_vs_is.json"))
    p.add_argument("--out_dir", default="images", help="holds vae_z{Z}_model.pt")
    p.add_argument("--zdims", type=int, nargs="+", default=[2, 5, 10, 20], help="four at most")
    p.add_argument("--n_images", type=int, default=100, help="test images, evenly spaced")
    p.add_argument("--max_samples", type=int, default=10_000, help="the largest k")
    p.add_argument("--repeats", type=int, default=3, help="independent repeats, for the std")
    p.add_argument("--seed", type=int, default=0)
    common.finish(study, p.parse_args())
