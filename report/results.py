"""Write the generated parts of the documentation from the results in images/
(the headline table of README.md, every result in docs/results.md) and name
every run whose script changed since the commit it records:

    python -m report.results            # or: make results

Standard library only (report/make_results.py imports it).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEST = os.path.join("vae_best", "vae_z40_metrics.json")  # `make run-vae-best`
# One stochastic layer, standard normal prior, static binarization
# (Tomczak & Welling, 2018, VampPrior paper, Table 2).
PUBLISHED_NLL = 88.56
# What each run's numbers depend on besides its script.
DEPENDS = {"vae_": ["a3_vae_template.py"], "gan_": ["a3_gan_template.py", "digit_classifier.pt"]}


def load(out_dir, name):
    path = pathlib.Path(out_dir, name)
    return json.loads(path.read_text()) if path.exists() else None


def pct(share):
    return f"{100 * share:.1f}"


def vae_flags(m):
    flags = [f"--zdim {m['zdim']}"] + [f"--epochs {m['epochs']}"] * (m["epochs"] != 40)
    return " ".join(flags + [f"--iw_samples {m['iw_samples']}"] * (m["iw_samples"] != 500))


def vae_section(runs):
    lines = [
        "| run | train ELBO | val ELBO | test ELBO | test NLL (IW) | s/epoch |",
        "|---|---|---|---|---|---|",
    ]
    for m in runs:
        lines.append(
            f"| `{vae_flags(m)}` | {m['train_elbo'][-1]:.2f} | {m['val_elbo'][-1]:.2f} | "
            f"**{m['test_elbo']:.2f}** | **{m['test_nll_iw']:.2f}** (k = {m['iw_samples']}) | "
            f"{statistics.median(m['seconds_per_epoch']):.1f} |"
        )
    return lines


def best_section(m):
    margin = PUBLISHED_NLL - m["test_nll_iw"]
    verdict = f"{abs(margin):.2f} nats {'below' if margin > 0 else 'above'}"
    minutes = sum(m["seconds_per_epoch"]) / 60
    return [
        f"Best VAE (`{vae_flags(m)}`): test NLL **{m['test_nll_iw']:.2f}** nats on all "
        f"10,000 test images, {verdict} the published {PUBLISHED_NLL}; training took "
        f"{minutes:.0f} min, the test evaluation {m['test_seconds'] / 60:.0f} min."
    ]


def gan_section(m):
    q = m.get("quality") or []
    lines = [
        f"GAN, {m['n_epochs']} epochs, {statistics.median(m['seconds_per_epoch']):.1f} s per "
        f"epoch (median); last epoch: loss D {m['loss_D'][-1]:.3f}, loss G "
        f"{m['loss_G'][-1]:.3f}, D(x) {m['D_x'][-1]:.3f}, D(G(z)) {m['D_G_z'][-1]:.3f}.",
        "",
    ]
    if q:
        lines += [
            f"Scores over training ({q[-1]['images']:,} samples against the test digits):",
            "",
            "| iteration | Frechet distance: moving average | last iterate "
            "| rarest digit (%): moving average | last iterate |",
            "|---|---|---|---|---|",
        ]
        for i in sorted({0, 1, len(q) // 4, len(q) // 2, 3 * len(q) // 4, len(q) - 1}):
            a, b = q[i], q[i]["last_iterate"]
            lines.append(
                f"| {a['iteration']:,} | {a['frechet_distance']:.2f} | "
                f"{b['frechet_distance']:.2f} | {pct(a['class_min_share'])} | "
                f"{pct(b['class_min_share'])} |"
            )
    return lines


def quality_section(s):
    """experiments/sample_scores.py: the final models' samples and the floors."""
    rows = [
        ("VAE `--zdim 20`, binary samples", s["vae"]),
        ("binarized training digits (floor)", s["vae_floor"]),
        ("GAN, moving average of G", s["gan"]),
        ("grey-scale training digits (floor)", s["gan_floor"]),
    ]
    lines = [
        f"Sample quality of {s['gan']['images']:,} samples against the held-out test digits "
        "of the same kind (`experiments/sample_scores.py`; lower is better, 50% is the "
        "two-sample test's chance level):",
        "",
        "| samples | Frechet distance | two-sample accuracy (%) | rarest digit (%) |",
        "|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['frechet_distance']:.2f} | {pct(r['two_sample_accuracy'])} | "
            f"{pct(r['class_min_share'])} |"
        )
    lines.append(
        f"| VAE `--zdim 20`, Bernoulli means | {s['vae']['means_frechet_distance']:.2f} | - | - |"
    )
    return lines


def remedy_section(m):
    lines = [
        f"GAN recipes (`experiments/gan_remedy.py`, {m['n_epochs']} epochs, seeds "
        f"{', '.join(map(str, m['seeds']))}; mean +- std over the seeds):",
        "",
        "| recipe | Frechet distance | two-sample accuracy (%) | rarest digit (%) |",
        "|---|---|---|---|",
    ]
    for name, r in m["recipes"].items():
        cells = [
            f"{r[k + '_mean'] * f:.2f} +- {r[k + '_std'] * f:.2f}"
            for k, f in (("frechet_distance", 1), ("two_sample_accuracy", 100))
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {pct(r['class_min_share_mean'])} |")
    return lines


def bench_section(out_dir):
    lines = []
    m = load(out_dir, "bench_gan.json")
    if m:
        w = m["median_wall_seconds"]
        lines.append(
            f"- One GAN epoch as a whole process ({m['cpu_model']}, one thread, single-thread "
            f"peak {m['peak_gflops']:.0f} GFLOP/s): {w['script']:.1f} s against "
            f"{w['recipe']:.1f} s for the common recipe (`bench/recipe_gan.py`, medians of "
            f"{m['pairs']} alternating pairs): **{m['speedup_vs_recipe']:.2f}x**."
        )
    m = load(out_dir, "bench_step.json")
    if m:
        t = m["step_ms_median"]
        lines.append(
            f"- A GAN step takes {t['with moving average']:.1f} ms with the moving average "
            f"updated, {t['without']:.1f} ms without ({100 * m['moving_average_cost']:.1f}% "
            f"more); a VAE step {t['vae']:.1f} ms (`bench/bench_step.py`, medians of "
            f"{m['rounds']} alternating rounds)."
        )
    return lines


def stale_results(out_dir):
    """(path, why) for each run whose script (or what its numbers depend on)
    changed since the commit it records."""
    stale = []
    for folder, _, names in sorted(os.walk(out_dir)):
        for name in sorted(n for n in names if n.endswith("_metrics.json")):
            code = (load(folder, name) or {}).get("code") or {}
            files = next(f for prefix, f in DEPENDS.items() if name.startswith(prefix))
            diff = subprocess.run(
                ["git", "-C", ROOT, "diff", "--name-only", str(code.get("commit")), "--", *files],
                capture_output=True,
                text=True,
            )
            if code.get("changed") or diff.returncode or diff.stdout.strip():
                why = diff.stdout.split() or ["uncommitted or unknown code"]
                stale.append((os.path.join(folder, name), f"changed: {', '.join(why)}"))
    return stale


def results(out_dir):
    vae = [load(out_dir, f"vae_z{z}_metrics.json") for z in (20, 2, 5, 10)]
    best, gan = load(out_dir, BEST), load(out_dir, "gan_metrics.json")
    scores, remedy = load(out_dir, "sample_scores.json"), load(out_dir, "gan_remedy_mnist.json")
    lines = vae_section([m for m in vae + [best] if m]) + [""]
    lines += (best_section(best) + [""]) if best else []
    lines += (gan_section(gan) + [""]) if gan else []
    lines += (quality_section(scores) + [""]) if scores else []
    lines += (remedy_section(remedy) + [""]) if remedy else []
    lines += bench_section(out_dir) + [""]
    if stale := stale_results(out_dir):
        lines += ["**Stale results** (to be rerun with the current code):", ""]
        lines += [f"- `{os.path.relpath(path, out_dir)}` {why}" for path, why in stale]
    return "\n".join(lines).strip()


def headline(out_dir):
    lines = ["| model | result | reference |", "|---|---|---|"]
    z20, best = load(out_dir, "vae_z20_metrics.json"), load(out_dir, BEST)
    scores = load(out_dir, "sample_scores.json")
    if z20:
        lines.append(
            f"| VAE, `--zdim 20`, {z20['epochs']} epochs | test ELBO **{z20['test_elbo']:.2f}**, "
            f"NLL **{z20['test_nll_iw']:.2f}** nats (k = {z20['iw_samples']}) | |"
        )
    if best:
        lines.append(
            f"| VAE, `{vae_flags(best)}` | test NLL **{best['test_nll_iw']:.2f}** nats "
            f"(k = {best['iw_samples']}) | "
            f"{PUBLISHED_NLL} published |"
        )
    if scores:
        g, f = scores["gan"], scores["gan_floor"]
        lines.append(
            f"| GAN, 200 epochs, averaged generator | two-sample accuracy "
            f"**{pct(g['two_sample_accuracy'])}%**, Frechet distance "
            f"**{g['frechet_distance']:.2f}**, rarest digit **{pct(g['class_min_share'])}%** | "
            f"real images {pct(f['two_sample_accuracy'])}%, {f['frechet_distance']:.2f}, "
            f"{pct(f['class_min_share'])}% |"
        )
    return "\n".join(lines) if len(lines) > 2 else "(no results yet: `make run`)"


def replace_between(text, name, body, where):
    """`text` with the part between the markers of `name` replaced by `body`."""
    start, end = f"<!-- {name}:start", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"error: {where} lacks the markers {start} ... {end}")
    head, rest = text.split(start, 1)
    marker, _ = rest.split("-->", 1)
    return f"{head}{start}{marker}-->\n{body}\n{end}{rest.split(end, 1)[1]}"


def write(out_dir, root=ROOT):
    for path, name, body in (
        ("README.md", "headline", headline(out_dir)),
        (os.path.join("docs", "results.md"), "results", results(out_dir)),
    ):
        with open(os.path.join(root, path)) as f:
            text = replace_between(f.read(), name, body, path)
        with open(os.path.join(root, path), "w") as f:
            f.write(text)
    for path, why in stale_results(out_dir):
        print(f"stale: {path} {why}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", default="images")
    write(parser.parse_args().out_dir)


if __name__ == "__main__":
    main()
