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
# The run that targets the published test NLL (`make run-vae-best`).
BEST_DIR = "vae_best"
BEST_ZDIM = 40
# One stochastic layer, standard normal prior, static binarization
# (Tomczak & Welling, 2018, VampPrior paper).
PUBLISHED_NLL = 88.56


def load(out_dir, name):
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def vae_flags(m):
    """The flags that set a run apart from the defaults, as a command line."""
    flags = [f"--zdim {m['zdim']}"]
    for key, default in (("epochs", 40), ("hidden_dim", 512), ("warmup", 0)):
        if m.get(key, default) != default:
            flags.append(f"--{key} {m[key]}")
    if m.get("keep_best"):
        flags.append("--keep_best")
    return " ".join(flags)


def vae_section(metrics):
    lines = ["| run | epochs | train ELBO | val ELBO | test ELBO | test NLL (IW) | "
             "sample FD | s/epoch | device |", "|---|---|---|---|---|---|---|---|---|"]
    for m in metrics:
        fd = m.get("sample_quality", {}).get("frechet_distance")
        tested = m.get("tested_epoch", m["epochs"])
        lines.append(
            f"| `{vae_flags(m)}` | {m['epochs']} | {m['train_elbo'][tested - 1]:.2f} | "
            f"{m['val_elbo'][tested - 1]:.2f} | **{m['test_elbo']:.2f}** | "
            f"**{m['test_nll_iw']:.2f}** (k = {m['iw_samples']}) | "
            f"{'-' if fd is None else f'{fd:.1f}'} | "
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
        lines += ["", f"Digit classes of {m.get('images', 'the')} generated "
                  "samples, as labelled by the digit classifier (share in %):", "",
                  "| " + " | ".join(str(d) for d in range(10)) + " |",
                  "|" + "---|" * 10,
                  "| " + " | ".join(f"{100 * s:.1f}" for s in shares) + " |"]
    return lines


def quality_section(gan, vae):
    """Frechet distances (classifier features, 10k samples vs the held-out
    validation digits): the GAN over training, the VAE, and real digits."""
    ref = next((m["quality_reference"] for m in [gan or {}, *vae]
                if "quality_reference" in m), {})
    lines = ["| samples | Frechet distance | rarest digit (%) |", "|---|---|---|"]
    if "real_frechet_distance" in ref:
        lines.append(f"| real training images | {ref['real_frechet_distance']:.2f} | "
                     f"{100 * ref['real_class_min_share']:.1f} |")
    curve = (gan or {}).get("quality_over_training")
    if curve:
        steps = len(curve["iteration"]) - 1
        for i in sorted({0, steps // 10, steps // 2, steps}):
            lines.append(f"| GAN, iteration {curve['iteration'][i]:,} | "
                         f"{curve['frechet_distance'][i]:.1f} | "
                         f"{100 * curve['class_min_share'][i]:.1f} |")
        best = min(range(steps + 1), key=curve["frechet_distance"].__getitem__)
        lines.append(f"| GAN, best save point (iteration {curve['iteration'][best]:,}) | "
                     f"{curve['frechet_distance'][best]:.1f} | "
                     f"{100 * curve['class_min_share'][best]:.1f} |")
    for m in vae:
        q = m.get("sample_quality")
        if q:
            lines.append(f"| VAE `{vae_flags(m)}`, binary samples | "
                         f"{q['frechet_distance']:.1f} | {100 * q['class_min_share']:.1f} |")
            lines.append(f"| VAE `{vae_flags(m)}`, Bernoulli means | "
                         f"{q['means_frechet_distance']:.1f} | - |")
    return lines if len(lines) > 2 else []


def best_section(m):
    """One sentence on the run that targets the published test NLL."""
    margin = PUBLISHED_NLL - m["test_nll_iw"]
    verdict = (f"{margin:.2f} nats below" if margin > 0
               else f"{-margin:.2f} nats above")
    minutes = sum(m["seconds_per_epoch"]) / 60
    timing = f"training took {minutes:.0f} min on {m['device']} (sum of the epoch times)"
    if "test_seconds" in m:
        timing += f", the test evaluation {m['test_seconds'] / 60:.0f} min"
    return [f"Best VAE (`{vae_flags(m)}`, tested at epoch "
            f"{m.get('tested_epoch', m['epochs'])}): test NLL **{m['test_nll_iw']:.2f}** "
            f"nats (k = {m['iw_samples']}, all 10,000 test images), {verdict} the "
            f"published {PUBLISHED_NLL}; {timing}."]


def remedy_section(m):
    """bench/gan_remedy.py: the plain template against the defaults."""
    lines = [f"GAN remedy for binarized data (`bench/gan_remedy.py`, {m['n_epochs']} "
             "epochs each, same seed):", "",
             "| recipe | flags | Frechet distance | rarest digit (%) | stray pixels per image |",
             "|---|---|---|---|---|"]
    for name, r in m["recipes"].items():
        lines.append(f"| {name} | `{r['flags']}` | {r['frechet_distance']:.1f} | "
                     f"{100 * r['class_min_share']:.1f} | {r['stray_pixels_per_image']:.2f} |")
    lines.append(f"| real digits | | {m['real_frechet_distance']:.2f} | "
                 f"{100 * m['real_class_min_share']:.1f} | "
                 f"{m['real_stray_pixels_per_image']:.3f} |")
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
    names = ["vae_z20_metrics.json", "vae_z2_metrics.json",
             os.path.join(BEST_DIR, f"vae_z{BEST_ZDIM}_metrics.json")]
    runs = [load(out_dir, name) for name in names]
    vae = [m for m in runs if m]
    if vae:
        lines += vae_section(vae) + [""]
    best = runs[-1]
    if best:
        lines += best_section(best) + [""]
    gan = load(out_dir, "gan_metrics.json")
    if gan:
        lines += gan_section(gan) + [""]
    quality = quality_section(gan, [m for m in vae if m.get("sample_quality")])
    if quality:
        lines += ["Sample quality: Frechet distance between classifier features of "
                  "10,000 samples and the 10,000 held-out validation digits "
                  "(`sample_quality.py`; lower is better):", ""] + quality + [""]
    remedy = load(out_dir, "gan_remedy.json")
    if remedy:
        lines += remedy_section(remedy) + [""]
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
