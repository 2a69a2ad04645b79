"""Write the measured results into README.md from the metrics files in images/.

Every number in the README's results section comes from here, so it always
matches the committed runs:

    python results.py            # or: make results
"""
import argparse
import json
import os
import statistics

START = "<!-- results:start (written by `make results`; do not edit by hand) -->"
END = "<!-- results:end -->"


def load(out_dir, name):
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def vae_section(metrics):
    lines = ["| run | epochs | train ELBO | val ELBO | test ELBO | test NLL (IW) | "
             "s/epoch | device |", "|---|---|---|---|---|---|---|---|"]
    for m in metrics:
        lines.append(
            f"| `--zdim {m['zdim']}` | {m['epochs']} | {m['train_elbo'][-1]:.2f} | "
            f"{m['val_elbo'][-1]:.2f} | **{m['test_elbo']:.2f}** | "
            f"**{m['test_nll_iw']:.2f}** (k = {m['iw_samples']}) | "
            f"{statistics.median(m['seconds_per_epoch']):.1f} | {m['device']} |")
    return lines


def gan_section(m):
    shares = m.get("class_shares")
    lines = [f"GAN, `--dataset {m['dataset']}`, {m['n_epochs']} epochs on "
             f"{m['device']}, {statistics.median(m['seconds_per_epoch']):.1f} s "
             "per epoch (median):", ""]
    lines += ["| last epoch | loss D | loss G | D(x) | D(G(z)) |", "|---|---|---|---|---|",
              f"| {m['n_epochs']} | {m['loss_D'][-1]:.3f} | {m['loss_G'][-1]:.3f} | "
              f"{m['D_x'][-1]:.3f} | {m['D_G_z'][-1]:.3f} |"]
    if shares:
        lines += ["", f"Digit classes of {m.get('class_samples', 'the')} generated "
                  "samples, as labelled by the labeller (share in %):", "",
                  "| " + " | ".join(str(d) for d in range(10)) + " |",
                  "|" + "---|" * 10,
                  "| " + " | ".join(f"{100 * s:.1f}" for s in shares) + " |"]
    return lines


def bench_section(out_dir):
    lines = []
    vae = load(out_dir, "bench_vae.json")
    if vae:
        lines.append(f"- VAE epoch on {vae['device']}: {vae['train_seconds']:.2f} s "
                     f"for the training pass, {vae['ideal_seconds']:.2f} s for its matrix "
                     f"products at the measured {vae['gemm_gflops']:.0f} GFLOP/s: "
                     f"ratio **{vae['ratio']:.2f}** (target <= 1.5).")
    gan = load(out_dir, "bench_gan.json")
    if gan:
        lines.append(f"- GAN epoch on {gan['device']}: {gan['ours_seconds']:.2f} s with "
                     f"in-memory batches vs {gan['dataloader_seconds']:.2f} s with a "
                     f"torchvision DataLoader: **{gan['speedup']:.2f}x** faster "
                     "(target >= 1.5x).")
    return lines


def results(out_dir):
    lines = []
    vae = [m for m in (load(out_dir, f"vae_z{z}_metrics.json") for z in (20, 2)) if m]
    if vae:
        lines += vae_section(vae) + [""]
    gan = load(out_dir, "gan_metrics.json")
    if gan:
        lines += gan_section(gan) + [""]
    lines += bench_section(out_dir)
    return "\n".join(lines).strip()


def write(out_dir, readme):
    """Replace the text between the markers in `readme` with the results."""
    with open(readme) as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"error: {readme} lacks the results markers")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new = f"{head}{START}\n{results(out_dir)}\n{END}{tail}"
    tmp = readme + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, readme)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", default="images")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args()
    write(args.out_dir, args.readme)


if __name__ == "__main__":
    main()
