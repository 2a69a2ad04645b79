"""Write the generated parts of the documentation from the metrics files in
images/ and the scripts' argument parsers (the headline results in README.md,
every result in docs/results.md, the flag tables in docs/flags.md), and name
every metrics file whose producing code has changed since its run:

    python -m report.results            # or: make results

Standard library only at import time (report/make_results.py imports it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def from_iteration(gan, values, first):
    """The values of a curve over the GAN's save points (quality_over_training
    or last_iterate_over_training) at iteration `first` and after."""
    iterations = (gan.get("quality_over_training") or {}).get("iteration") or []
    return [v for i, v in zip(iterations, values) if i >= first]


def quality_section(gan, vae):
    """Frechet distances (classifier features of the samples vs held-out test
    images of the same kind) and two-sample test accuracies: the GAN over
    training, the VAE, and the floor of as many real training images for
    each."""
    lines = ["| samples | Frechet distance | two-sample accuracy (%) | rarest digit (%) |",
             "|---|---|---|---|"]

    def floor(m, kind):
        ref = m["quality_reference"]
        lines.append(f"| real training images ({kind}) | {ref['real_frechet_distance']:.2f} | "
                     f"{100 * ref['real_two_sample_accuracy']:.1f} | "
                     f"{100 * ref['real_class_min_share']:.1f} |")

    curve = (gan or {}).get("quality_over_training")
    if curve:
        floor(gan, "grey-scale" if gan.get("dataset") == "mnist" else "binarized")
        steps = len(curve["iteration"]) - 1
        for i in sorted({0, steps // 10, steps // 2, steps}):
            lines.append(f"| GAN, iteration {curve['iteration'][i]:,} | "
                         f"{curve['frechet_distance'][i]:.1f} | "
                         f"{100 * curve['two_sample_accuracy'][i]:.1f} | "
                         f"{100 * curve['class_min_share'][i]:.1f} |")
        best = min(range(steps + 1), key=curve["frechet_distance"].__getitem__)
        lines.append(f"| GAN, best save point (iteration {curve['iteration'][best]:,}) | "
                     f"{curve['frechet_distance'][best]:.1f} | "
                     f"{100 * curve['two_sample_accuracy'][best]:.1f} | "
                     f"{100 * curve['class_min_share'][best]:.1f} |")
        last = gan.get("last_iterate_over_training")
        for name, values in (("moving average of G", curve), ("last iterate", last or {})):
            if values:
                late = [statistics.median(from_iteration(gan, values[key], gan["iterations"] // 2))
                        for key in ("frechet_distance", "two_sample_accuracy", "class_min_share")]
                lines.append(f"| GAN, {name}: median of the second half's save points | "
                             f"{late[0]:.2f} | {100 * late[1]:.1f} | {100 * late[2]:.1f} |")
    if vae:
        floor(vae[0], "binarized")
    for m in vae:
        q = m["sample_quality"]
        lines.append(f"| VAE `{vae_flags(m)}`, binary samples | "
                     f"{q['frechet_distance']:.1f} | {100 * q['two_sample_accuracy']:.1f} | "
                     f"{100 * q['class_min_share']:.1f} |")
        lines.append(f"| VAE `{vae_flags(m)}`, Bernoulli means | "
                     f"{q['means_frechet_distance']:.1f} | - | - |")
    return lines if len(lines) > 2 else []


def noise_section(m):
    """experiments/score_noise.py: how much one two-sample test moves with its
    seed, and the floor's distance under a classifier that never saw it."""
    sets = "; ".join(f"{name} {min(r['accuracies']):.1%} to {max(r['accuracies']):.1%} "
                     f"(standard deviation {100 * r['std']:.1f} points, score {r['score']:.1%})"
                     for name, r in m["sets"].items())
    floor = ", ".join(f"{name} {fd:.2f}" for name, fd in m["floor_frechet_distance"].items())
    return [f"The two-sample test with {m['seeds']} seeds on the final GAN "
            f"(`experiments/score_noise.py`; the score is the median of the first "
            f"{m['restarts_in_score']}): {sets}. Frechet distance to the test digits of "
            f"training digits under a classifier trained on the first "
            f"{m['floor_seen_images']:,}: {floor}."]


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
    """experiments/gan_remedy.py: the recipes, mean +- std over the seeds."""
    lines = [f"GAN recipes on `--dataset {m['dataset']}` (`experiments/gan_remedy.py`, "
             f"{m['n_epochs']} epochs each, seeds {', '.join(map(str, m['seeds']))}; "
             "mean +- std over the seeds):", "",
             "| recipe | flags | Frechet distance | two-sample accuracy (%) | rarest digit (%) "
             "| stray pixels per image |",
             "|---|---|---|---|---|---|"]
    for name, r in m["recipes"].items():
        lines.append(
            f"| {name} | `{r['flags']}` | {r['frechet_distance_mean']:.2f} +- "
            f"{r['frechet_distance_std']:.2f} | {100 * r['two_sample_accuracy_mean']:.1f} +- "
            f"{100 * r['two_sample_accuracy_std']:.1f} | {100 * r['class_min_share_mean']:.1f} "
            f"+- {100 * r['class_min_share_std']:.1f} | {r['stray_pixels_per_image_mean']:.2f} |")
    ref = m["quality_reference"]
    lines.append(f"| real training images | | {ref['real_frechet_distance']:.2f} | "
                 f"{100 * ref['real_two_sample_accuracy']:.1f} | "
                 f"{100 * ref['real_class_min_share']:.1f} | |")
    return lines


def threads(m):
    return f"{m['threads']} thread" + ("s" if m["threads"] != 1 else "")


def bench_section(out_dir):
    """The benchmarks: each training pass against the cost of its matrix
    products, and the GAN script against the common recipe."""
    lines = []
    for model in ("vae", "gan"):
        m = load(out_dir, f"bench_{model}.json")
        if not m or "ratio_peak" not in m:
            continue
        line = (f"- {model.upper()} training pass on {m['device']} "
                f"({m.get('cpu_capability', 'cpu')}, {threads(m)}, {m['images']:,} images): "
                f"{m['train_seconds']:.2f} s, **{m['ratio_peak']:.2f}x** the time of its "
                f"matrix products at the measured peak of {m['peak_gflops']:.0f} GFLOP/s "
                f"and {m['ratio_same_shapes']:.2f}x the products replayed alone")
        if m.get("slowest_products"):
            line += ("; the products that lose the most time against that peak, replayed "
                     "alone: " + ", ".join(
                         f"{p['op']} {' by '.join('x'.join(map(str, s)) for s in p['shapes'][-2:])}"
                         f" at {p['gflops']:.0f} GFLOP/s" for p in m["slowest_products"][:3]))
        if "speedup_vs_recipe" in m:
            line += (f"; the whole script, one epoch, **{m['speedup_vs_recipe']:.2f}x** as "
                     f"fast as the common recipe (`bench/recipe_gan.py`, median of "
                     f"{m['pairs']} alternating pairs)")
        lines.append(line + ".")
    m = load(out_dir, "bench_step.json")
    if m:
        q = m["bf16_quality"]
        lines += [
            f"- GAN step ({m['cpu_capability']}, one thread): "
            f"{m['gan_step_ms']['this step']:.1f} ms against "
            f"{m['gan_step_ms']['earlier step']:.1f} ms for the earlier step (two D passes, "
            f"D's weight gradients in G's backward, the average updated every step): "
            f"**{m['gan_step_speedup']:.2f}x** (`bench/bench_step.py`).",
            f"- bf16 autocast on this CPU (bf16 instructions: "
            f"{', '.join(m.get('bf16_instructions') or ['none'])}): a GAN step "
            f"{m['gan_bf16_ms']['bf16']:.1f} ms against "
            f"{m['gan_bf16_ms']['float32']:.1f} ms in float32, a VAE step "
            f"{m['vae_bf16_ms']['bf16']:.1f} ms against {m['vae_bf16_ms']['float32']:.1f} ms; "
            f"after {q['epochs']} epoch(s) ({len(q['seeds'])} seeds) the GAN's Frechet "
            f"distance {q['bf16']['gan_frechet_distance_mean']:.1f} against "
            f"{q['float32']['gan_frechet_distance_mean']:.1f}, the VAE's validation ELBO "
            f"{q['bf16']['vae_val_elbo_mean']:.2f} against "
            f"{q['float32']['vae_val_elbo_mean']:.2f} nats."]
        c = m.get("gan_compiled_ms")
        if c:
            lines.append(f"- The GAN step compiled whole by `torch.compile`: "
                         f"{c['torch.compile']:.1f} ms against {c['eager']:.1f} ms in eager "
                         f"mode, **{c['eager'] / c['torch.compile']:.2f}x** (best of 3 "
                         f"alternating rounds, the compiling round left out).")
    m = load(out_dir, "gan_rescore.json")
    if m:
        def group(name, runs):
            fds = ", ".join(f"{r['frechet_distance']:.2f}" for r in runs)
            tests = ", ".join(f"{r['two_sample_accuracy']:.1%}" for r in runs)
            shares = ", ".join(f"{r['class_min_share']:.1%}" for r in runs)
            return (f"{name} (commit {runs[0]['commit'][:7]}): Frechet distance {fds}, "
                    f"two-sample accuracy {tests}, rarest digit {shares}")
        runs = next(iter(m["groups"].values()))["runs"]
        lines.append(f"- The GAN at an equal budget ({runs[0]['n_epochs']} epochs, seeds "
                     f"{', '.join(str(r['seed']) for r in runs)}), rescored on today's "
                     f"score (`experiments/gan_rescore.py`): "
                     + "; ".join(group(name, g["runs"]) for name, g in m["groups"].items())
                     + f"; real training images "
                     f"{m['quality_reference']['real_frechet_distance']:.2f} and "
                     f"{m['quality_reference']['real_two_sample_accuracy']:.1%}.")
    return lines


def run_time(vae, gan, bench):
    """How long `make run` took: the epochs and test evaluations of its runs,
    as their metrics files record them, and the GAN's epoch on a quiet core
    as the benchmark measures it."""
    vae = [m for m in vae if m]
    if not vae and not gan:
        return []
    minutes = sum((sum(m["seconds_per_epoch"]) + m.get("test_seconds", 0)) / 60 for m in vae)
    text = (f"- `make run`'s committed runs, each timed on the machine that ran it: the "
            f"{len(vae)} VAE runs took {minutes:.0f} min of training and test evaluation")
    if gan:
        gan_minutes = sum(gan["seconds_per_epoch"]) / 60
        text += (f", the GAN {gan_minutes:.0f} min (with its quality scoring): "
                 f"{minutes + gan_minutes:.0f} min one after the other, plus the few minutes "
                 "of question 1.4's experiment; here they ran side by side, one per core, "
                 "each on one thread")
    lines = [text + "."]
    if gan and bench and "train_seconds" in bench:
        quiet = bench["train_seconds"] * 60_000 / bench["images"]
        lines.append(f"- A GAN training pass over the 60,000 grey-scale images takes "
                     f"{quiet:.1f} s on one core of the benchmark's machine (single-thread "
                     f"peak {bench['peak_gflops']:.0f} GFLOP/s; from `bench_gan.json`, without "
                     "the quality scoring of the save points).")
    return lines


def changed(files, commit, until=()):
    """Which of `files` differ between `commit` and `until` (a commit, or the
    working tree by default); None when git does not know the commit."""
    done = subprocess.run(["git", "-C", ROOT, "diff", "--name-only", commit, *until, "--",
                           *files], capture_output=True, text=True)
    return None if done.returncode else done.stdout.split()


def stale_results(out_dir):
    """Metrics files whose producing code (the script and the project modules
    it imported, as recorded in the file) differs now from the commit they
    were produced with, or that record no commit; with the reason. A record
    of report/same_outputs.py (images/code_equivalence.json: the code of its
    commit gives the very outputs of the code of its base) bridges a change:
    a run from code equal to the base's is current while the files it
    imported are as in the record's commit, if the record compared runs
    importing every file that changed."""
    same = load(os.path.join(ROOT, "images"), "code_equivalence.json")
    stale = []
    for folder, _, names in sorted(os.walk(out_dir)):
        for name in sorted(n for n in names if n.endswith(".json")
                           and not n.startswith(("bench_", "code_equivalence"))):
            path = os.path.join(folder, name)
            code = (load(folder, name) or {}).get("code") or {}
            if not code.get("commit"):
                stale.append((path, "records no code version"))
            elif code.get("uncommitted_changes"):
                stale.append((path, "was produced from uncommitted code"))
            else:
                files = changed(code["files"], code["commit"])
                if files and same and set(files) <= set(same["files"]) \
                        and changed(code["files"], code["commit"], [same["base"]]) == [] \
                        and changed(code["files"], same["commit"]) == []:
                    files = []  # the same outputs, from code recorded as equivalent
                if files is None or files:
                    stale.append((path, f"code changed since {code['commit'][:8]}: "
                                        f"{', '.join(files or ['unknown commit'])}"))
    return stale


def flags_table(parser):
    """A markdown table of a parser's flags, defaults and help texts."""
    lines = ["| flag | default | meaning |", "|---|---|---|"]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        default = "" if action.default is None or action.default is False else f"`{action.default}`"
        meaning = (action.help or "").replace("|", "\\|")
        if action.choices:
            meaning = f"one of {', '.join(map(str, action.choices))}; {meaning}".rstrip("; ")
        lines.append(f"| `{action.option_strings[0]}` | {default} | {meaning} |")
    return lines


def flags_sections():
    """The flag tables of both scripts (imported here: they need torch)."""
    import a3_gan_template
    import a3_vae_template
    return {"vae": flags_table(a3_vae_template.build_parser()),
            "gan": flags_table(a3_gan_template.build_parser())}


def results(out_dir):
    lines = []
    names = [f"vae_z{z}_metrics.json" for z in (20, 2, 5, 10)] + [
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
                  "10,000 samples and of 10,000 held-out real digits of the same kind "
                  "(`sample_quality.py`; lower is better):", ""] + quality + [""]
    noise = load(out_dir, "score_noise.json")
    if noise:
        lines += noise_section(noise) + [""]
    for dataset in ("mnist", "bmnist"):
        remedy = load(out_dir, f"gan_remedy_{dataset}.json")
        if remedy:
            lines += remedy_section(remedy) + [""]
    lines += bench_section(out_dir) + [""]
    lines += run_time(runs[:4], gan, load(out_dir, "bench_gan.json")) + [""]
    stale = stale_results(out_dir)
    if stale:
        lines += ["**Stale results** (to be rerun with the current code):", ""]
        lines += [f"- `{os.path.relpath(path, out_dir)}` {why}" for path, why in stale]
    return "\n".join(lines).strip()


def headline(out_dir):
    """The few numbers README.md leads with."""
    lines = ["| model | result | reference |", "|---|---|---|"]
    z20, best = load(out_dir, "vae_z20_metrics.json"), load(out_dir, os.path.join(
        BEST_DIR, f"vae_z{BEST_ZDIM}_metrics.json"))
    gan = load(out_dir, "gan_metrics.json")
    if z20:
        lines.append(f"| VAE, `--zdim 20`, {z20['epochs']} epochs | test ELBO "
                     f"**{z20['test_elbo']:.2f}**, NLL **{z20['test_nll_iw']:.2f}** nats "
                     f"(k = {z20['iw_samples']}) | |")
    if best:
        lines.append(f"| VAE, `{vae_flags(best)}` | test NLL **{best['test_nll_iw']:.2f}** "
                     f"nats (k = {best['iw_samples']}) | {PUBLISHED_NLL} published |")
    if gan and "frechet_distance" in gan:
        ref = gan["quality_reference"]
        lines.append(f"| GAN, {gan['n_epochs']} epochs, averaged generator | two-sample "
                     f"accuracy **{100 * gan['two_sample_accuracy']:.1f}%**, Frechet distance "
                     f"**{gan['frechet_distance']:.2f}**, rarest digit "
                     f"**{100 * gan['class_min_share']:.1f}%** | real images "
                     f"{100 * ref['real_two_sample_accuracy']:.1f}%, "
                     f"{ref['real_frechet_distance']:.2f}, "
                     f"{100 * ref['real_class_min_share']:.1f}% |")
    return "\n".join(lines) if len(lines) > 2 else "(no results yet: `make run`)"


def replace_between(text, name, body, where):
    """`text` with the part between the markers of `name` replaced by `body`."""
    start, end = f"<!-- {name}:start", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"error: {where} lacks the markers {start} ... {end}")
    head, rest = text.split(start, 1)
    marker, _ = rest.split("-->", 1)
    return f"{head}{start}{marker}-->\n{body}\n{end}{rest.split(end, 1)[1]}"


def write_sections(path, sections):
    """Replace each generated section of the file at `path` (name -> text)."""
    with open(path) as f:
        text = f.read()
    for name, body in sections.items():
        text = replace_between(text, name, body, path)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write(out_dir, root=ROOT, flags=None):
    """Every generated section of the documentation under `root`."""
    write_sections(os.path.join(root, "README.md"), {"headline": headline(out_dir)})
    write_sections(os.path.join(root, "docs", "results.md"), {"results": results(out_dir)})
    if flags:
        write_sections(os.path.join(root, "docs", "flags.md"),
                       {f"flags:{name}": "\n".join(table) for name, table in flags.items()})
    for path, why in stale_results(out_dir):
        print(f"stale: {path} {why}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", default="images")
    args = parser.parse_args()
    write(args.out_dir, flags=flags_sections())


if __name__ == "__main__":
    main()
