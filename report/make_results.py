"""Write report/results.tex: LaTeX macros with every number the report quotes.

The numbers come from the metrics files in images/, so the report always
matches the committed runs and no number is typed by hand:

    python -m report.make_results            # or: make report

A metrics file that does not exist yet (or lacks a key) is not an error: its
macros render as a bold "??" in the PDF and a warning names what is missing,
so the report builds before every run has finished. `--strict` turns the
warnings into a non-zero exit status.
"""

import argparse
import json
import math
import os
import re
import statistics
import sys

MISSING = r"\MissingResult"


class Results:
    """Collects macros; a value of None becomes the visible marker."""

    def __init__(self):
        self.lines = []
        self.missing = []

    def add(self, name, value, source, fmt="{}"):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            self.missing.append(f"\\{name} ({source})")
            text = f"{MISSING}{{{source}}}"
        else:
            text = tex_escape(fmt.format(value))
            if isinstance(value, (int, float)):
                text = text.replace(",", "{,}")  # no space after it in math mode
            if isinstance(value, (int, float)) and text.startswith("-"):
                text = r"\ensuremath{-}" + text[1:]  # a minus sign, not a hyphen
        self.lines.append(f"\\newcommand{{\\{name}}}{{{text}}}")


def tex_escape(text):
    return re.sub(r"([_%&#])", r"\\\1", text.replace("\\", r"\textbackslash{}"))


def load(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        print(f"warning: {path} cannot be read ({err}); its numbers show as ??", file=sys.stderr)
        return None


def get(d, *keys):
    """d[k1][k2]... or None when anything along the way is missing."""
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def median(values):
    return statistics.median(values) if values else None


def percent(share):
    return 100 * share if share is not None else None


def vae_macros(r, m, prefix, source, zdim):
    """The macros of one VAE run (zdim 20 or 2)."""
    m = m or {}
    train, val = m.get("train_elbo") or [], m.get("val_elbo") or []
    half = m.get("epochs", 0) // 2
    for name, epoch in (("HalfFile", half), ("EndFile", m.get("epochs"))):
        r.lines.append(f"\\newcommand{{\\{prefix}{name}}}{{vae_z{zdim}_samples_epoch{epoch}.png}}")
    for name, value, fmt in (
        ("Epochs", m.get("epochs"), "{}"),
        ("HalfEpoch", half or None, "{}"),
        ("TrainImages", m.get("train_images"), "{:,}"),
        ("TestElbo", m.get("test_elbo"), "{:.2f}"),
        ("TestNll", m.get("test_nll_iw"), "{:.2f}"),
        ("IwSamples", m.get("iw_samples"), "{}"),
        ("FirstTrainElbo", get(train, 0), "{:.2f}"),
        ("FirstValElbo", get(val, 0), "{:.2f}"),
        ("HalfValElbo", get(val, half - 1) if half else None, "{:.2f}"),
        ("FinalTrainElbo", get(train, -1), "{:.2f}"),
        ("FinalValElbo", get(val, -1), "{:.2f}"),
        ("SecondsPerEpoch", median(m.get("seconds_per_epoch")), "{:.1f}"),
    ):
        r.add(prefix + name, value, source, fmt)
    # log p(x) - ELBO = KL(q || posterior), estimated: -NLL - ELBO
    gap = -m["test_nll_iw"] - m["test_elbo"] if "test_elbo" in m else None
    r.add(prefix + "ElboGap", gap, source, "{:.2f}")
    # the first epoch after which the training ELBO stays above the validation ELBO
    above = [i for i, (t, v) in enumerate(zip(train, val)) if t <= v]
    r.add(prefix + "CrossEpoch", above[-1] + 2 if above else 1 if train else None, source)


def gan_macros(r, m, source):
    m = m or {}
    half, end = (m["iterations"] // 2, m["iterations"]) if "iterations" in m else (None, None)
    # The file names are always defined (a placeholder box stands in for a
    # grid that does not exist), the quoted numbers only with the metrics.
    r.lines.append(f"\\newcommand{{\\GanHalfFile}}{{gan_samples_iter{half}.png}}")
    r.lines.append(f"\\newcommand{{\\GanEndFile}}{{gan_samples_iter{end}.png}}")
    for name, key, fmt in (
        ("Epochs", "n_epochs", "{}"),
        ("Iterations", "iterations", "{:,}"),
        ("BatchSize", "batch_size", "{}"),
        ("Lr", "lr", "{:g}"),
        ("LatentDim", "latent_dim", "{}"),
        ("Dropout", "d_dropout", "{:g}"),
        ("RealLabel", "real_label", "{:g}"),
        ("EmaDecay", "ema_decay", "{:g}"),
    ):
        r.add("Gan" + name, m.get(key), source, fmt)
    r.add("GanHalfIteration", half, source, "{:,}")
    # With real-image target r (one-sided label smoothing) the best D outputs
    # r/2 on both real and generated images once p_g = p_data; its loss there:
    real = m.get("real_label")
    r.add("GanIdealD", real / 2 if real else None, source, "{:.2f}")
    if real:  # -[r log D + (1 - r) log(1 - D)] - log(1 - D) at D = r / 2
        ideal = -(real * math.log(real / 2) + (2 - real) * math.log(1 - real / 2))
    r.add("GanIdealLossD", ideal if real else None, source, "{:.2f}")
    for name, key in (("GanFinalLossD", "loss_D"), ("GanFinalDx", "D_x"), ("GanFinalDGz", "D_G_z")):
        r.add(name, get(m, key, -1), source, "{:.2f}")
    quality = m.get("quality") or []
    r.add("GanSavePoints", len(quality) or None, source)
    for name, pick in (("", lambda q: q), ("Last", lambda q: q["last_iterate"])):
        late = [pick(q) for q in quality if q["iteration"] >= (half or 0)]
        r.add(
            f"Gan{name}FdEnd",
            pick(quality[-1])["frechet_distance"] if quality else None,
            source,
            "{:.2f}",
        )
        r.add(
            f"Gan{name}FdMedianLate",
            median([q["frechet_distance"] for q in late]),
            source,
            "{:.2f}",
        )
        r.add(
            f"Gan{name}MinShareMedianLate",
            percent(median([q["class_min_share"] for q in late])),
            source,
            "{:.1f}",
        )
    rows = m.get("interpolation") or []
    r.add("GanInterpRows", len(rows) or None, source)
    for i, word in enumerate(("One", "Two", "Three")):
        classes = get(rows, i, "classes")
        r.add(f"GanInterp{word}", " to ".join(map(str, classes)) if classes else None, source)


def score_macros(r, m, source):
    """experiments/sample_scores.py: the final models' samples and the floors."""
    m = m or {}
    for prefix, key in (
        ("Gan", "gan"),
        ("GanReal", "gan_floor"),
        ("Vae", "vae"),
        ("VaeReal", "vae_floor"),
    ):
        s = m.get(key) or {}
        r.add(f"Score{prefix}Fd", s.get("frechet_distance"), source, "{:.2f}")
        r.add(f"Score{prefix}Ts", percent(s.get("two_sample_accuracy")), source, "{:.1f}")
        r.add(f"Score{prefix}MinShare", percent(s.get("class_min_share")), source, "{:.1f}")
    r.add("ScoreVaeMeansFd", get(m, "vae", "means_frechet_distance"), source, "{:.2f}")
    r.add("ScoreImages", get(m, "gan", "images"), source, "{:,}")
    r.add("ClassifierAccuracy", percent(get(m, "classifier", "accuracy")), source, "{:.1f}")
    r.add(
        "ClassifierAccuracyBinarized",
        percent(get(m, "classifier", "accuracy_binarized")),
        source,
        "{:.1f}",
    )


def mc_macros(r, m, source):
    """The Q1.4 experiment: log p(x) estimated with k samples from the prior and
    from q(z|x), image-averaged, per latent size."""
    m = m or {}
    r.add("McImages", m.get("n_images"), source, "{:,}")
    r.add("McRepeats", m.get("repeats"), source)
    runs = m.get("zdims") or {}
    ks = next((run.get("k") for run in runs.values() if run.get("k")), None)
    r.add("McMaxSamples", ks[-1] if ks else None, source, "{:,}")
    for zdim, word in ((2, "Two"), (5, "Five"), (10, "Ten"), (20, "Twenty")):
        run = runs.get(str(zdim)) or {}
        prior, iw = get(run, "prior", "mean", -1), get(run, "posterior", "mean", -1)
        r.add(f"Mc{word}PriorMax", prior, source, "{:.1f}")
        r.add(f"Mc{word}IwMax", iw, source, "{:.1f}")
        r.add(f"Mc{word}Gap", iw - prior if None not in (prior, iw) else None, source, "{:.1f}")


def activation_macros(r, m, source):
    """experiments/vae_activations.py: the validation ELBO after the last epoch."""
    m = m or {}
    r.add("ActEpochs", m.get("epochs"), source)
    elbo = {name: v[-1] for name, v in (m.get("val_elbo") or {}).items()}
    for macro, key in (
        ("Kw", "Kingma"),
        ("Elu", "ELU"),
        ("Tanh", "2 x 500 tanh"),
        ("Relu", "ReLU"),
        ("Softplus", "softplus"),
    ):
        r.add(f"Act{macro}", next((v for k, v in elbo.items() if key in k), None), source, "{:.1f}")


def remedy_macros(r, m, source):
    """experiments/gan_remedy.py: the plain template against the defaults."""
    m = m or {}
    r.add("RecipeEpochs", m.get("n_epochs"), source)
    r.add("RecipeSeeds", len(m["seeds"]) if "seeds" in m else None, source)
    for word, name in (("Plain", "plain template"), ("Ours", "dropout + label smoothing")):
        run = next((v for k, v in (m.get("recipes") or {}).items() if k.startswith(name)), {})
        for key, macro, scale in (
            ("frechet_distance", "Fd", 1),
            ("two_sample_accuracy", "Ts", 100),
        ):
            for stat in ("mean", "std"):
                value = run.get(f"{key}_{stat}")
                r.add(
                    f"Recipe{word}{macro}{stat.title()}",
                    value * scale if value is not None else None,
                    source,
                    "{:.1f}",
                )


def saturation_macros(r, m, source):
    """experiments/gan_saturation.py: the two generator losses from one seed."""
    m = m or {}
    r.add("SatEpochs", m.get("n_epochs"), source)
    r.add("SatWindow", m.get("window"), source)
    its = m.get("iteration") or []
    for word, key in (("Ns", "non-saturating"), ("Sat", "saturating")):
        run = next((v for k, v in (m.get("losses") or {}).items() if k.startswith(key)), {})
        dgz, grad, fd = (run.get(k) or [] for k in ("D_G_z", "grad_norm_G", "frechet_distance"))
        low = min(range(len(dgz)), key=dgz.__getitem__) if dgz else None
        r.add(f"Sat{word}LowestDGz", get(dgz, low) if dgz else None, source, "{:.3f}")
        r.add(f"Sat{word}LowestAt", get(its, low) if dgz else None, source, "{:,}")
        r.add(f"Sat{word}GradFirst", get(grad, 0), source, "{:.2f}")
        r.add(f"Sat{word}GradAtLowest", get(grad, low) if dgz else None, source, "{:.2f}")
        r.add(f"Sat{word}GradMedian", median(grad), source, "{:.2f}")
        r.add(f"Sat{word}FdFirst", get(fd, 0), source, "{:.1f}")
        r.add(f"Sat{word}FdEnd", get(fd, -1), source, "{:.1f}")


def interpolation_macros(r, m, source):
    """experiments/vae_interpolation.py: the classes of each row's ends."""
    rows = (m or {}).get("rows") or []
    r.add("VaeInterpRows", len(rows) or None, source)
    for i, word in enumerate(("One", "Two", "Three")):
        classes = get(rows, i, "classes")
        r.add(f"VaeInterp{word}", " to ".join(map(str, classes)) if classes else None, source)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--images", default=os.path.join(here, "..", "images"))
    parser.add_argument("--out", default=os.path.join(here, "results.tex"))
    parser.add_argument("--strict", action="store_true", help="exit 1 when a number is missing")
    args = parser.parse_args()

    r = Results()
    r.lines += [
        "% Written by report/make_results.py from images/*.json; do not edit.",
        r"\providecommand{\MissingResult}[1]{\textbf{??}}",
    ]
    vae = {}
    for zdim, prefix in ((20, "VaeTwenty"), (2, "VaeTwo")):
        name = f"vae_z{zdim}_metrics.json"
        vae[zdim] = load(os.path.join(args.images, name)) or {}
        vae_macros(r, vae[zdim], prefix, name, zdim)
    elbos = [vae[z].get("test_elbo") for z in (20, 2)]
    r.add("VaeElboDiff", elbos[0] - elbos[1] if None not in elbos else None, "vae_z*", "{:.1f}")
    for macros, name in (
        (gan_macros, "gan_metrics.json"),
        (score_macros, "sample_scores.json"),
        (mc_macros, "vae_mc_vs_is.json"),
        (activation_macros, "vae_activations.json"),
        (saturation_macros, "gan_saturation.json"),
        (remedy_macros, "gan_remedy_mnist.json"),
        (interpolation_macros, "vae_interpolation.json"),
    ):
        macros(r, load(os.path.join(args.images, name)), name)

    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(r.lines) + "\n")
    os.replace(tmp, args.out)
    # Only the macros that report.tex uses count as missing.
    with open(os.path.join(here, "report.tex")) as f:
        used = set(re.findall(r"\\([A-Za-z]+)", f.read()))
    missing = [m for m in r.missing if m[1:].split(" ")[0] in used]
    if missing:
        print(
            f"warning: {len(missing)} numbers show as ?? in the report: {', '.join(missing)}",
            file=sys.stderr,
        )
        if args.strict:
            return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
