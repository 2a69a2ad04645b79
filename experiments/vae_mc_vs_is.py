"""Question 1.4: log p(x) by naive Monte Carlo (z from the prior) against
importance sampling (z from q(z|x)), for trained VAEs of several zdims. Both
use the VAE's one routine for log importance weights.

    python -m experiments.vae_mc_vs_is --data_dir ../shared/datasets  # images/vae_z*_model.pt
"""
import os
import sys

import torch
from matplotlib.figure import Figure

import figures
import utils
from a3_vae_template import PIXELS, VAE
from datasets import load_bmnist_split

ESTIMATORS = {"prior": "naive MC, z ~ p(z)", "posterior": "importance sampling, z ~ q(z|x)"}


def nested_estimates(log_w, ks):
    """The estimate from the first k weights, for every k in `ks`, shape
    (len(ks), B): one cumulative logsumexp serves all k."""
    running = torch.logcumsumexp(log_w, dim=0)[torch.as_tensor(ks) - 1]
    return running - torch.log(torch.as_tensor(ks, dtype=log_w.dtype)).unsqueeze(1)


# --------------------------------------------------------------- experiment
def sample_counts(max_samples):
    """1, 3, 10, 30, ... up to max_samples, which is always included."""
    ks, decade = [], 1
    while decade <= max_samples:
        ks += [k for k in (decade, 3 * decade) if k <= max_samples]
        decade *= 10
    return ks if ks[-1] == max_samples else ks + [max_samples]


@torch.no_grad()
def measure(model, x, ks, repeats):
    """Image-averaged estimates, shape (repeats, len(ks)) per estimator, and
    the ELBO (the mean log-weight under q(z|x)) averaged over the repeats."""
    runs = {name: [] for name in ESTIMATORS}
    elbos = []
    for _ in range(repeats):
        for name in ESTIMATORS:
            log_w = torch.cat(list(model.log_importance_weights(x, ks[-1], name)))
            runs[name].append(nested_estimates(log_w, ks).mean(1))
        elbos.append(log_w.mean().item())  # the posterior's, which comes last
    return {name: torch.stack(r) for name, r in runs.items()}, sum(elbos) / repeats


def summarize(runs, elbo, ks):
    """Mean and spread over the repeats, per sample count, as plain lists."""
    result = {"k": ks, "elbo": elbo}
    for name, r in runs.items():
        spread = r.std(0) if len(r) > 1 else torch.zeros(len(ks))
        result[name] = {"mean": r.mean(0).tolist(), "std": spread.tolist()}
    return result


# ------------------------------------------------------------------ loading
def model_path(out_dir, zdim):
    return os.path.join(out_dir, f"vae_z{zdim}_model.pt")


def check_models(args):
    """Stop with the training commands when any model is missing."""
    missing = [z for z in args.zdims if not os.path.exists(model_path(args.out_dir, z))]
    if missing:
        commands = "\n".join(f"  python a3_vae_template.py --zdim {z} --data_dir "
                             f"{args.data_dir} --out_dir {args.out_dir}" for z in missing)
        sys.exit(f"error: no trained VAE for zdim {', '.join(map(str, missing))} in "
                 f"{args.out_dir}; train it with:\n{commands}")


def load_model(path, zdim, device):
    """A VAE from a state_dict; the hidden width is read off its shapes."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model = VAE(hidden_dim=state["encoder.net.0.weight"].shape[0], z_dim=zdim)
        model.load_state_dict(state)
        if not all(torch.isfinite(v).all() for v in state.values()):
            raise ValueError("non-finite weights")
    except Exception as err:  # noqa: BLE001 - any unusable file is refused
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        sys.exit(f"error: {path} is not the weights of a VAE with zdim {zdim} ({reason})")
    return model.to(device).eval()


def evaluation_images(data_dir, n_images, device):
    """Evenly spaced test rows: the file is grouped by digit, so the first
    rows alone would be nearly all one digit."""
    images = load_bmnist_split(data_dir, "test")
    rows = torch.linspace(0, len(images) - 1, min(n_images, len(images))).round().long()
    return images[rows].to(device=device, dtype=torch.float32).view(-1, PIXELS)


# ------------------------------------------------------------------ output
def plot(results, n_images, filename):
    """A 2 x 2 grid, one panel per zdim, both estimators' mean with a +-1 std
    band; each panel's y-range covers the estimates from k = 10 on, where
    the difference lies. One legend below the grid, over no data."""
    rows = (len(results) + 1) // 2
    fig = Figure(figsize=(6.2, 3.0 * rows), layout="constrained")  # printed at ~5.5 in
    axes = fig.subplots(rows, 2, squeeze=False).ravel()
    for ax, (zdim, res) in zip(axes, results.items()):
        for name, color in zip(ESTIMATORS, ("tab:red", "tab:blue")):
            mean, std = torch.tensor(res[name]["mean"]), torch.tensor(res[name]["std"])
            ax.plot(res["k"], mean, "o-", ms=4, color=color, label=ESTIMATORS[name])
            ax.fill_between(res["k"], mean - std, mean + std, color=color, alpha=0.25)
        ax.axhline(res["elbo"], color="gray", ls=":", label="ELBO")
        low_k = min(10, res["k"][-1])  # from k = 10 on, or the largest k when smaller
        shown = [v for name in ESTIMATORS for k, v in zip(res["k"], res[name]["mean"])
                 if k >= low_k]
        span = max(shown) - min(shown) or 1.0
        ax.set_ylim(min(shown + [res["elbo"]]) - 0.1 * span, max(shown) + 0.1 * span)
        ax.set_xscale("log")
        gap = res["posterior"]["mean"][-1] - res["prior"]["mean"][-1]
        ax.set_title(f"zdim = {zdim}: IS - MC = {gap:.1f} nats", fontsize="medium")
        ax.set(xlabel="number of samples k", ylabel="log p(x) estimate (nats)")
        ax.grid(alpha=0.3)
    for ax in axes[len(results):]:
        ax.set_visible(False)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3,
               fontsize="small")
    fig.suptitle(f"log p(x) of {n_images} test images (mean and std over repeats); "
                 f"IS - MC at k = {max(res['k'][-1] for res in results.values()):,}",
                 fontsize="medium")
    figures.save_figure(fig, filename)


def print_table(results):
    print(f"{'zdim':>4} {'k':>6} {'prior MC':>20} {'importance':>20}")
    for zdim, res in results.items():
        for i, k in enumerate(res["k"]):
            cells = [f"{res[n]['mean'][i]:9.2f} +- {res[n]['std'][i]:5.2f}"
                     for n in ESTIMATORS]
            print(f"{zdim:>4} {k:>6} {cells[0]:>20} {cells[1]:>20}")


# ---------------------------------------------------------------- the run
def parse_args(argv=None):
    parser = utils.parser(__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="./data",
                        help="folder holding binarized_mnist/")
    parser.add_argument("--out_dir", default="images",
                        help="holds vae_z{zdim}_model.pt; the figure and JSON go here")
    parser.add_argument("--zdims", default=[2, 5, 10, 20], nargs="+",
                        type=utils.positive_int)
    parser.add_argument("--n_images", default=100, type=utils.positive_int,
                        help="test images, evenly spaced over the test set")
    parser.add_argument("--max_samples", default=10_000, type=utils.positive_int,
                        help="largest number of samples k per image")
    parser.add_argument("--repeats", default=3, type=utils.positive_int,
                        help="independent repeats, for the spread")
    parser.add_argument("--seed", default=0, type=utils.seed)
    parser.add_argument("--device", default="auto", type=utils.device, help="auto, cpu or cuda")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_models(args)
    try:
        experiment(args)
    except utils.RunError as err:  # data or write errors
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)


def experiment(args):
    code = utils.code_version()  # at the start: a commit during the run must not relabel it
    torch.manual_seed(args.seed)
    x = evaluation_images(args.data_dir, args.n_images, args.device)
    ks = sample_counts(args.max_samples)
    results = {}
    for zdim in args.zdims:
        model = load_model(model_path(args.out_dir, zdim), zdim, args.device)
        runs, elbo = measure(model, x, ks, args.repeats)
        results[zdim] = summarize(runs, elbo, ks)
    print_table(results)
    plot(results, len(x), os.path.join(args.out_dir, "vae_mc_vs_is.png"))
    utils.save_json({"about": "log p(x) estimates in nats per image, averaged over "
                              "n_images evenly spaced test images; mean and std over "
                              "repeats; elbo: the mean importance log-weight",
                     "n_images": len(x), "repeats": args.repeats, "seed": args.seed,
                     "device": str(args.device), "code": code,
                     "zdims": {str(z): r for z, r in results.items()}},
                    os.path.join(args.out_dir, "vae_mc_vs_is.json"))


if __name__ == "__main__":
    main()
