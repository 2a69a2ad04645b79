"""Write report/results.tex: a LaTeX macro for every number the report quotes,
computed from the metrics files in images/, so that no number is typed by hand:

    python -m report.make_results            # or: make report

A number whose file or key is missing renders as a bold "??" and a warning
names it, so the report builds before every run has finished; `--strict`
then exits 1 (counting only the macros report.tex uses).
"""

import argparse
import json
import math
import os
import re
import sys
from statistics import median

HERE = os.path.dirname(os.path.abspath(__file__))
ABSENT = (KeyError, IndexError, StopIteration, TypeError, ValueError, ZeroDivisionError)
WORDS = ("One", "Two", "Three")


class Results:
    """The macros; one whose value cannot be computed shows the marker."""

    def __init__(self, images):
        self.images, self.missing = images, []
        self.lines = [
            "% Written by report/make_results.py from images/*.json; do not edit.",
            r"\providecommand{\MissingResult}[1]{\textbf{??}}",
        ]

    def file(self, name):
        try:
            with open(os.path.join(self.images, name)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            print(
                f"warning: {name} cannot be read ({err}); its numbers show as ??", file=sys.stderr
            )
            return {}

    def add(self, source, prefix, macros):
        """Each macro is name: (format, compute); a compute() that fails a lookup is absent."""
        for name, (fmt, compute) in macros.items():
            try:
                value = compute()
            except ABSENT:
                value = None
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                self.missing.append(f"\\{prefix}{name} ({source})")
                text = f"\\MissingResult{{{source}}}"
            else:
                text = fmt.format(value).replace("\\", r"\textbackslash{}")
                text = re.sub(r"([_%&#])", r"\\\1", text)
                if isinstance(value, (int, float)):  # math mode: no space after a comma,
                    text = text.replace(",", "{,}")  # and a minus sign, not a hyphen
                    text = r"\ensuremath{-}" + text[1:] if text.startswith("-") else text
            self.lines.append(f"\\newcommand{{\\{prefix}{name}}}{{{text}}}")

    def name(self, macro, text):
        self.lines.append(f"\\newcommand{{\\{macro}}}{{{text}}}")


def interpolation(rows):
    """The classes at the ends of each of three interpolation rows."""
    pick = lambda i: lambda: " to ".join(map(str, rows[i]["classes"]))  # noqa: E731
    return {"InterpRows": ("{}", lambda: len(rows) or None)} | {
        f"Interp{word}": ("{}", pick(i)) for i, word in enumerate(WORDS)
    }


def vae(r, zdim, prefix):
    source = f"vae_z{zdim}_metrics.json"
    m = r.file(source)
    train, val, half = m.get("train_elbo", []), m.get("val_elbo", []), m.get("epochs", 0) // 2
    r.name(prefix + "HalfFile", f"vae_z{zdim}_samples_epoch{half}.png")
    r.name(prefix + "EndFile", f"vae_z{zdim}_samples_epoch{m.get('epochs')}.png")
    # the first epoch after which the training ELBO stays above the validation ELBO
    below = [i for i, (t, v) in enumerate(zip(train, val)) if t <= v]
    macros = {
        "Epochs": ("{}", lambda: m["epochs"]),
        "HalfEpoch": ("{}", lambda: half or None),
        "TrainImages": ("{:,}", lambda: m["train_images"]),
        "TestElbo": ("{:.2f}", lambda: m["test_elbo"]),
        "TestNll": ("{:.2f}", lambda: m["test_nll_iw"]),
        "IwSamples": ("{}", lambda: m["iw_samples"]),
        "FirstTrainElbo": ("{:.2f}", lambda: train[0]),
        "FirstValElbo": ("{:.2f}", lambda: val[0]),
        "HalfValElbo": ("{:.2f}", lambda: val[half - 1] if half else None),
        "FinalTrainElbo": ("{:.2f}", lambda: train[-1]),
        "FinalValElbo": ("{:.2f}", lambda: val[-1]),
        "SecondsPerEpoch": ("{:.1f}", lambda: median(m["seconds_per_epoch"])),
        # log p(x) - ELBO = KL(q || posterior), estimated: -NLL - ELBO
        "ElboGap": ("{:.2f}", lambda: -m["test_nll_iw"] - m["test_elbo"]),
        "CrossEpoch": ("{}", lambda: (below[-1] + 2 if below else 1) if train else None),
    }
    r.add(source, prefix, macros)
    return m


def gan(r, source="gan_metrics.json"):
    m = r.file(source)
    half, q, real = m.get("iterations", 0) // 2 or None, m.get("quality", []), m.get("real_label")
    r.name("GanHalfFile", f"gan_samples_iter{half}.png")  # a placeholder box stands
    r.name("GanEndFile", f"gan_samples_iter{m.get('iterations')}.png")  # in for a missing grid
    key = lambda k: lambda: m[k]  # noqa: E731
    late = [s for s in q if s["iteration"] >= (half or 0)]
    macros = {
        "Epochs": ("{}", key("n_epochs")),
        "Iterations": ("{:,}", key("iterations")),
        "BatchSize": ("{}", key("batch_size")),
        "Lr": ("{:g}", key("lr")),
        "LatentDim": ("{}", key("latent_dim")),
        "Dropout": ("{:g}", key("d_dropout")),
        "RealLabel": ("{:g}", key("real_label")),
        "EmaDecay": ("{:g}", key("ema_decay")),
        "HalfIteration": ("{:,}", lambda: half),
        # With real-image target r (one-sided label smoothing) the best D outputs r/2 on both
        # kinds once p_g = p_data, where its loss is -[r log D + (1-r) log(1-D)] - log(1-D).
        "IdealD": ("{:.2f}", lambda: real / 2),
        "IdealLossD": (
            "{:.2f}",
            lambda: -real * math.log(real / 2) - (2 - real) * math.log(1 - real / 2),
        ),
        "FinalLossD": ("{:.2f}", lambda: m["loss_D"][-1]),
        "FinalDx": ("{:.2f}", lambda: m["D_x"][-1]),
        "FinalDGz": ("{:.2f}", lambda: m["D_G_z"][-1]),
        "SavePoints": ("{}", lambda: len(q) or None),
    }
    for name, pick in (("", lambda s: s), ("Last", lambda s: s["last_iterate"])):
        macros[f"{name}FdEnd"] = ("{:.2f}", lambda p=pick: p(q[-1])["frechet_distance"])
        fd = lambda p=pick: median(p(s)["frechet_distance"] for s in late)  # noqa: E731
        share = lambda p=pick: 100 * median(p(s)["class_min_share"] for s in late)  # noqa: E731
        macros |= {
            f"{name}FdMedianLate": ("{:.2f}", fd),
            f"{name}MinShareMedianLate": ("{:.1f}", share),
        }
    r.add(source, "Gan", macros | interpolation(m.get("interpolation", [])))


def scores(r, source="sample_scores.json"):
    """experiments/sample_scores.py: the final models' samples and the floors."""
    m = r.file(source)
    macros = {
        "VaeMeansFd": ("{:.2f}", lambda: m["vae"]["means_frechet_distance"]),
        "Images": ("{:,}", lambda: m["gan"]["images"]),
    }
    for prefix, run in (
        ("Gan", "gan"),
        ("GanReal", "gan_floor"),
        ("Vae", "vae"),
        ("VaeReal", "vae_floor"),
    ):
        for name, key, scale, fmt in (
            ("Fd", "frechet_distance", 1, "{:.2f}"),
            ("Ts", "two_sample_accuracy", 100, "{:.1f}"),
            ("MinShare", "class_min_share", 100, "{:.1f}"),
        ):
            macros[prefix + name] = (fmt, lambda run=run, key=key, s=scale: s * m[run][key])
    r.add(source, "Score", macros)
    classifier = lambda key: ("{:.1f}", lambda: 100 * m["classifier"][key])  # noqa: E731
    accuracy = {
        "Accuracy": classifier("accuracy"),
        "AccuracyBinarized": classifier("accuracy_binarized"),
    }
    r.add(source, "Classifier", accuracy)


def mc(r, source="vae_mc_vs_is.json"):
    """Q1.4: log p(x) estimated with k samples from the prior and from q(z|x)."""
    m = r.file(source)
    runs = m.get("zdims", {})
    macros = {
        "Images": ("{:,}", lambda: m["n_images"]),
        "Repeats": ("{}", lambda: m["repeats"]),
        "MaxSamples": ("{:,}", lambda: next(run["k"][-1] for run in runs.values())),
    }
    for zdim, word in ((2, "Two"), (5, "Five"), (10, "Ten"), (20, "Twenty")):
        end = lambda kind, z=str(zdim): runs[z][kind]["mean"][-1]  # noqa: E731
        macros[f"{word}PriorMax"] = ("{:.1f}", lambda end=end: end("prior"))
        macros[f"{word}IwMax"] = ("{:.1f}", lambda end=end: end("posterior"))
        macros[f"{word}Gap"] = ("{:.1f}", lambda end=end: end("posterior") - end("prior"))
    r.add(source, "Mc", macros)


def activations(r, source="vae_activations.json"):
    """The validation ELBO after the last epoch, by the name of each network."""
    m = r.file(source)
    elbo = {name: v[-1] for name, v in m.get("val_elbo", {}).items()}
    named = lambda part: ("{:.1f}", lambda: next(v for k, v in elbo.items() if part in k))  # noqa: E731
    macros = {"Epochs": ("{}", lambda: m["epochs"])}
    for macro, part in (
        ("Kw", "Kingma"),
        ("Elu", "ELU"),
        ("Tanh", "2 x 500 tanh"),
        ("Relu", "ReLU"),
        ("Softplus", "softplus"),
    ):
        macros[macro] = named(part)
    r.add(source, "Act", macros)


def remedy(r, source="gan_remedy_mnist.json"):
    """The plain template against our recipe, mean and std over the seeds."""
    m = r.file(source)
    recipes = m.get("recipes", {})
    macros = {"Epochs": ("{}", lambda: m["n_epochs"]), "Seeds": ("{}", lambda: len(m["seeds"]))}
    for word, start in (("Plain", "plain template"), ("Ours", "dropout + label smoothing")):
        run = lambda s=start: next(v for k, v in recipes.items() if k.startswith(s))  # noqa: E731
        for macro, key, scale in (
            ("Fd", "frechet_distance", 1),
            ("Ts", "two_sample_accuracy", 100),
        ):
            for stat in ("mean", "std"):
                value = lambda run=run, k=f"{key}_{stat}", s=scale: s * run()[k]  # noqa: E731
                macros[f"{word}{macro}{stat.title()}"] = ("{:.1f}", value)
    r.add(source, "Recipe", macros)


def saturation(r, source="gan_saturation.json"):
    """The two generator losses from one seed: D(G(z)) at its lowest, gradients, distances."""
    m = r.file(source)
    its = m.get("iteration", [])
    macros = {"Epochs": ("{}", lambda: m["n_epochs"]), "Window": ("{}", lambda: m["window"])}
    for word, start in (("Ns", "non-saturating"), ("Sat", "saturating")):
        run = next((v for k, v in m.get("losses", {}).items() if k.startswith(start)), {})
        dgz, grad, fd = (run.get(k, []) for k in ("D_G_z", "grad_norm_G", "frechet_distance"))
        low = lambda d=dgz: min(range(len(d)), key=d.__getitem__)  # noqa: E731
        macros |= {
            f"{word}LowestDGz": ("{:.3f}", lambda d=dgz, low=low: d[low()]),
            f"{word}LowestAt": ("{:,}", lambda low=low: its[low()]),
            f"{word}GradFirst": ("{:.2f}", lambda g=grad: g[0]),
            f"{word}GradAtLowest": ("{:.2f}", lambda g=grad, low=low: g[low()]),
            f"{word}GradMedian": ("{:.2f}", lambda g=grad: median(g)),
            f"{word}FdFirst": ("{:.1f}", lambda f=fd: f[0]),
            f"{word}FdEnd": ("{:.1f}", lambda f=fd: f[-1]),
        }
    r.add(source, "Sat", macros)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default=os.path.join(HERE, "..", "images"))
    parser.add_argument("--out", default=os.path.join(HERE, "results.tex"))
    parser.add_argument("--strict", action="store_true", help="exit 1 when a number is missing")
    args = parser.parse_args()

    r = Results(args.images)
    z20, z2 = vae(r, 20, "VaeTwenty"), vae(r, 2, "VaeTwo")
    r.add("vae_z*", "Vae", {"ElboDiff": ("{:.1f}", lambda: z20["test_elbo"] - z2["test_elbo"])})
    for macros in (gan, scores, mc, activations, saturation, remedy):
        macros(r)
    source = "vae_interpolation.json"
    r.add(source, "Vae", interpolation(r.file(source).get("rows", [])))

    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(r.lines) + "\n")
    os.replace(tmp, args.out)
    with open(os.path.join(HERE, "report.tex")) as f:
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
