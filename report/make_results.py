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

from report.results import from_iteration

MISSING = r"\MissingResult"


class Results:
    """Collects macros; a value of None becomes the visible marker."""

    def __init__(self):
        self.lines = []
        self.missing = []

    def add(self, name, value, source, fmt="{}"):
        if not re.fullmatch(r"[A-Za-z]+", name):
            raise ValueError(f"not a valid macro name: {name}")
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
    return (text.replace("\\", r"\textbackslash{}").replace("_", r"\_")
            .replace("%", r"\%").replace("&", r"\&").replace("#", r"\#"))


def load(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        print(f"warning: {path} cannot be read ({err}); its numbers show as ??",
              file=sys.stderr)
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


def device_name(device):
    """"cpu" -> "CPU", "cuda" or "cuda:0" -> "GPU"."""
    if device is None:
        return None
    return "GPU" if str(device).startswith("cuda") else str(device).upper()


def median(values):
    return statistics.median(values) if values else None


def percent(share):
    return 100 * share if share is not None else None


def last(values):
    return values[-1] if values else None


def vae_macros(r, m, prefix, source):
    """The macros of one VAE run (zdim 20 or 2)."""
    m = m or {}
    train, val = m.get("train_elbo") or [], m.get("val_elbo") or []
    r.add(prefix + "Epochs", m.get("epochs"), source)
    r.add(prefix + "Zdim", m.get("zdim"), source)
    r.add(prefix + "HiddenDim", m.get("hidden_dim"), source)
    r.add(prefix + "BatchSize", m.get("batch_size"), source)
    r.add(prefix + "Lr", m.get("lr"), source, "{:g}")
    r.add(prefix + "HalfEpoch", m["epochs"] // 2 if "epochs" in m else None, source)
    r.add(prefix + "TrainImages", m.get("train_images"), source, "{:,}")
    r.add(prefix + "TestElbo", m.get("test_elbo"), source, "{:.2f}")
    r.add(prefix + "TestNll", m.get("test_nll_iw"), source, "{:.2f}")
    gap = (m["test_elbo"] + m["test_nll_iw"]
           if "test_elbo" in m and "test_nll_iw" in m else None)
    # log p(x) - ELBO = KL(q || posterior), estimated: -NLL - ELBO
    r.add(prefix + "ElboGap", -gap if gap is not None else None, source, "{:.2f}")
    r.add(prefix + "IwSamples", m.get("iw_samples"), source)
    r.add(prefix + "ZeroValElbo", m.get("val_elbo_epoch0"), source, "{:.2f}")
    r.add(prefix + "FirstTrainElbo", train[0] if train else None, source, "{:.2f}")
    r.add(prefix + "FirstValElbo", val[0] if val else None, source, "{:.2f}")
    half = m.get("epochs", 0) // 2
    r.add(prefix + "HalfValElbo", val[half - 1] if 0 < half <= len(val) else None,
          source, "{:.2f}")
    r.add(prefix + "FinalTrainElbo", last(train), source, "{:.2f}")
    r.add(prefix + "FinalValElbo", last(val), source, "{:.2f}")
    best = max(val) if val else None
    r.add(prefix + "BestValElbo", best, source, "{:.2f}")
    r.add(prefix + "SecondsPerEpoch", median(m.get("seconds_per_epoch") or []),
          source, "{:.1f}")
    r.add(prefix + "Device", device_name(m.get("device")), source)
    tested = m.get("tested_epoch", m.get("epochs"))
    r.add(prefix + "TestedEpoch", tested, source)
    r.add(prefix + "TestedTrainElbo", get(train, tested - 1) if tested else None,
          source, "{:.2f}")
    r.add(prefix + "TestedValElbo", get(val, tested - 1) if tested else None,
          source, "{:.2f}")
    seconds = m.get("seconds_per_epoch")
    r.add(prefix + "TrainMinutes", sum(seconds) / 60 if seconds else None, source, "{:.0f}")
    r.add(prefix + "TestMinutes", m["test_seconds"] / 60 if "test_seconds" in m else None,
          source, "{:.0f}")
    r.add(prefix + "Fd", get(m, "sample_quality", "frechet_distance"), source, "{:.1f}")
    r.add(prefix + "MeansFd", get(m, "sample_quality", "means_frechet_distance"),
          source, "{:.1f}")
    r.add(prefix + "MinShare", percent(get(m, "sample_quality", "class_min_share")), source,
          "{:.1f}")
    r.add(prefix + "RealFd", get(m, "quality_reference", "real_frechet_distance"), source,
          "{:.2f}")
    # the two-sample test's accuracy, in percent
    r.add(prefix + "Ts", percent(get(m, "sample_quality", "two_sample_accuracy")), source,
          "{:.1f}")
    r.add(prefix + "RealTs", percent(get(m, "quality_reference", "real_two_sample_accuracy")),
          source, "{:.1f}")


def gan_iterations(m):
    """(half, end) iteration numbers of the sample grids, from the metrics
    file (only a finished run has one; grids of a run still in progress are
    not shown, so a caption never names the wrong iteration)."""
    if m and "iterations" in m:
        return m["iterations"] // 2, m["iterations"]
    return None, None


def gan_macros(r, m, source):
    half, end = gan_iterations(m)
    # The file names are always defined (a placeholder box stands in for a
    # grid that does not exist), the quoted numbers only with the metrics.
    r.lines.append(f"\\newcommand{{\\GanHalfFile}}{{gan_samples_iter{half}.png}}")
    r.lines.append(f"\\newcommand{{\\GanEndFile}}{{gan_samples_iter{end}.png}}")
    m = m or {}
    cfg = m  # the training flags are top-level keys of the metrics
    r.add("GanEpochs", m.get("n_epochs"), source)
    r.add("GanIterations", m.get("iterations"), source, "{:,}")
    r.add("GanHalfIteration", m["iterations"] // 2 if "iterations" in m else None,
          source, "{:,}")
    r.add("GanBatchSize", cfg.get("batch_size"), source)
    r.add("GanLr", cfg.get("lr"), source, "{:g}")
    r.add("GanLatentDim", cfg.get("latent_dim"), source)
    r.add("GanDropout", cfg.get("d_dropout"), source, "{:g}")
    r.add("GanRealLabel", cfg.get("real_label"), source, "{:g}")
    r.add("GanEmaDecay", cfg.get("ema_decay"), source, "{:g}")
    # With real-image target r (one-sided label smoothing) the best D outputs
    # r/2 on both real and generated images once p_g = p_data; its loss there:
    real = cfg.get("real_label")
    r.add("GanIdealD", real / 2 if real else None, source, "{:.2f}")
    r.add("GanIdealLossD", -(real * math.log(real / 2) + (1 - real) * math.log(1 - real / 2))
          - math.log(1 - real / 2) if real else None, source, "{:.2f}")
    for name, key in (("GanFinalLossD", "loss_D"), ("GanFinalDx", "D_x"),
                      ("GanFinalDGz", "D_G_z")):
        r.add(name, last(m.get(key) or []), source, "{:.2f}")
    shares = m.get("class_shares")
    r.add("GanClassSamples", m.get("images"), source, "{:,}")
    r.add("GanClassMinShare", 100 * min(shares) if shares else None, source, "{:.1f}")
    gan_quality_macros(r, m, source)
    rows = get(m, "interpolation", "rows") or []
    r.add("GanInterpRows", len(rows) or None, source)
    for i, word in enumerate(("One", "Two", "Three")):
        path = get(rows, i, "labels_along_path")
        r.add(f"GanInterpPath{word}", ", ".join(str(x) for x in path) if path else None,
              source)


def gan_quality_macros(r, m, source):
    """The sample-quality scores of the GAN over training and of real digits."""
    curve = m.get("quality_over_training") or {}
    its, fds = curve.get("iteration") or [], curve.get("frechet_distance") or []
    shares = curve.get("class_min_share") or []
    half = m["iterations"] // 2 if "iterations" in m else None
    r.add("GanFdEnd", m.get("frechet_distance"), source, "{:.1f}")
    # the first scored save point after the start, and the last iterate at the end
    r.add("GanEarlyIteration", its[1] if len(its) > 1 else None, source, "{:,}")
    # the two-sample test's accuracy (percent) at the same points
    tests = curve.get("two_sample_accuracy") or []
    r.add("GanTsEarly", percent(tests[1]) if len(tests) > 1 else None, source, "{:.1f}")
    r.add("GanTsEnd", percent(m.get("two_sample_accuracy")), source, "{:.1f}")
    # the first save point from which on every digit keeps a 5% share
    below = [i for i, share in enumerate(shares) if share < 0.05]
    settled = (below[-1] + 1 if below else 0) if shares else None
    r.add("GanAllClassesIteration", its[settled] if settled is not None
          and settled < len(its) else None, source, "{:,}")
    r.add("GanSavePoints", len(fds) or None, source)
    # the averaged generator against its last iterate, scored at the same points
    last = m.get("last_iterate_over_training") or {}
    tenth = m["iterations"] / 10 if "iterations" in m else None
    for name, values in (("", curve), ("Last", last)):
        late_fd = from_iteration(m, values.get("frechet_distance") or [], half) if half else []
        late_ts = (from_iteration(m, values.get("two_sample_accuracy") or [], half)
                   if half else [])
        rare = from_iteration(m, values.get("class_min_share") or [], tenth) if tenth else []
        r.add(f"Gan{name}FdMedianLate", median(late_fd), source, "{:.2f}")
        r.add(f"Gan{name}TsMedianLate", percent(median(late_ts)), source, "{:.1f}")
        r.add(f"Gan{name}BelowEightPct", 100 * sum(v < 0.08 for v in rare) / len(rare)
              if rare else None, source, "{:.0f}")
    ref = m.get("quality_reference") or {}
    r.add("GanRealFd", ref.get("real_frechet_distance"), source, "{:.2f}")
    below = [i for i, fd in zip(its, fds) if fd < ref.get("real_frechet_distance", 0)]
    r.add("GanFdBelowFloor", len(below) if fds else None, source)
    r.add("GanFdFirstBelowFloor", below[0] if below else None, source, "{:,}")
    r.add("GanRealTs", percent(ref.get("real_two_sample_accuracy")), source, "{:.1f}")
    chain = [("real training digits", ref.get("real_two_sample_accuracy")),
             ("the moving average", m.get("two_sample_accuracy")),
             ("its last iterate", get(last, "two_sample_accuracy", -1)),
             (f"the moving average after {its[1]:,} iterations" if len(its) > 1 else "",
              tests[1] if len(tests) > 1 else None)]
    known = None not in [v for _, v in chain]
    r.add("GanOrder", " ".join(
        (f"{'$<$' if chain[i - 1][1] < v else '$>$'} " if i else "") + f"{name} ({100 * v:.1f}%)"
        for i, (name, v) in enumerate(chain)) if known else None, source)
    r.add("GanOrderHolds", ("holds" if all(a[1] < b[1] for a, b in zip(chain, chain[1:]))
                            else "does not hold") if known else None, source)
    info = ref.get("classifier") or {}
    acc = info.get("accuracy")
    r.add("ClassifierAccuracy", 100 * acc if acc else None, source, "{:.1f}")
    acc = info.get("accuracy_binarized")
    r.add("ClassifierAccuracyBinarized", 100 * acc if acc else None, source, "{:.1f}")


def remedy_macros(r, m, source):
    """experiments/gan_remedy.py on grey-scale MNIST: the plain template
    against the defaults, mean and spread over the seeds."""
    m = m or {}
    r.add("GreyRecipeEpochs", m.get("n_epochs"), source)
    r.add("GreyRecipeSeeds", len(m["seeds"]) if "seeds" in m else None, source)
    for word, name in (("Plain", "plain template"), ("Remedy", "dropout + label smoothing")):
        run = get(m, "recipes", name) or {}
        r.add(f"Grey{word}Fd", run.get("frechet_distance_mean"), source, "{:.2f}")
        r.add(f"Grey{word}FdStd", run.get("frechet_distance_std"), source, "{:.2f}")
        r.add(f"Grey{word}Ts", percent(run.get("two_sample_accuracy_mean")), source, "{:.1f}")
        r.add(f"Grey{word}TsStd", percent(run.get("two_sample_accuracy_std")), source,
              "{:.1f}")
    r.add("GreyRecipeVerdict", recipe_verdict(m), source)


def recipe_verdict(m):
    """Which recipe the seeds favour, and how firmly: the gap between the mean
    Frechet distances in standard errors of that difference (Welch's t with
    the seeds of each recipe), which a few seeds make wide."""
    plain = get(m, "recipes", "plain template") or {}
    remedy = get(m, "recipes", "dropout + label smoothing") or {}
    try:
        gap = plain["frechet_distance_mean"] - remedy["frechet_distance_mean"]
        seeds = len(m["seeds"])
        error = math.sqrt((plain["frechet_distance_std"] ** 2
                           + remedy["frechet_distance_std"] ** 2) / seeds)
    except KeyError:
        return None
    better, worse = (("dropout and label smoothing", "the plain template") if gap > 0
                     else ("the plain template", "dropout and label smoothing"))
    t = abs(gap) / error if error else math.inf
    firmly = ("by more than three standard errors of the difference" if t > 3 else
              f"by {t:.1f} standard errors of the difference: a trend, not a firm "
              f"ranking with {seeds} seeds" if t > 1 else
              "but within one standard error of the difference: no ranking")
    return f"{better} reach a lower Fréchet distance than {worse}, {firmly}"


def early_macros(r, m, source):
    """experiments/gan_early.py: D(G(z)) over the first epoch of either recipe."""
    m = m or {}
    r.add("EarlyWindow", m.get("window"), source)
    r.add("EarlySeeds", len(m["seeds"]) if "seeds" in m else None, source)
    for word, name in (("Plain", "plain template"), ("Remedy", "dropout + label smoothing")):
        run = get(m, "recipes", name) or {}
        r.add(f"Early{word}LowestDGz", run.get("D_G_z_lowest_window"), source, "{:.3f}")


def activation_macros(r, m, source):
    """experiments/vae_activations.py: the validation ELBO after its last epoch
    of each architecture."""
    m = m or {}
    r.add("ActEpochs", m.get("epochs"), source)
    elbo = {name: get(m, "val_elbo", name, -1) for name in (
        "1 x 500 tanh (Kingma and Welling)", "2 x 512 tanh", "2 x 512 ReLU",
        "2 x 512 softplus", "2 x 512 ELU")}
    theirs, *others, ours = elbo.values()
    r.add("ActKw", theirs, source, "{:.1f}")
    r.add("ActElu", ours, source, "{:.1f}")
    # how the other two-layer networks compare: between the two, or not
    r.add("ActOthers", None if None in elbo.values() else
          "lie between" if all(theirs < v < ours for v in others) else
          "do not all lie between", source)


def noise_macros(r, m, source):
    """experiments/score_noise.py: the two-sample test's spread over seeds on
    the final GAN and real digits, and the floor-bias check."""
    m = m or {}
    r.add("NoiseSeeds", m.get("seeds"), source)
    r.add("NoiseRestarts", m.get("restarts_in_score"), source)
    for word, name in (("Avg", "averaged generator"), ("Last", "last iterate"),
                       ("Real", "real training digits")):
        runs = get(m, "sets", name, "accuracies") or []
        r.add(f"Noise{word}Min", percent(min(runs)) if runs else None, source, "{:.1f}")
        r.add(f"Noise{word}Max", percent(max(runs)) if runs else None, source, "{:.1f}")
    floor = m.get("floor_frechet_distance") or {}
    seen = [v for k, v in floor.items() if k.startswith("seen")]
    r.add("FloorSeenFdMin", min(seen) if seen else None, source, "{:.2f}")
    r.add("FloorSeenFdMax", max(seen) if seen else None, source, "{:.2f}")
    r.add("FloorUnseenFd", floor.get("unseen, last 10k"), source, "{:.2f}")
    r.add("FloorSeenImages", m.get("floor_seen_images"), source, "{:,}")


def mc_macros(r, m, source):
    """The Q1.4 experiment (vae_mc_vs_is.py): log p(x) estimated with k samples
    from the prior and from q(z|x), image-averaged, per latent size."""
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
        r.add(f"Mc{word}Gap", iw - prior if None not in (prior, iw) else None,
              source, "{:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--images", default=os.path.join(here, "..", "images"))
    parser.add_argument("--out", default=os.path.join(here, "results.tex"))
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any number is missing")
    args = parser.parse_args()

    r = Results()
    r.lines += ["% Written by report/make_results.py from images/*.json; do not edit.",
                r"\providecommand{\MissingResult}[1]{\textbf{??}}"]
    vae = {}
    for zdim, prefix in ((20, "VaeTwenty"), (2, "VaeTwo")):
        name = f"vae_z{zdim}_metrics.json"
        vae[zdim] = load(os.path.join(args.images, name)) or {}
        vae_macros(r, vae[zdim], prefix, name)
    elbos = [vae[z].get("test_elbo") for z in (20, 2)]
    r.add("VaeElboDiff", elbos[0] - elbos[1] if None not in elbos else None,
          "vae_z20_metrics.json and vae_z2_metrics.json", "{:.1f}")
    gan = load(os.path.join(args.images, "gan_metrics.json"))
    gan_macros(r, gan, "gan_metrics.json")
    mc_macros(r, load(os.path.join(args.images, "vae_mc_vs_is.json")), "vae_mc_vs_is.json")
    early_macros(r, load(os.path.join(args.images, "gan_early.json")), "gan_early.json")
    noise_macros(r, load(os.path.join(args.images, "score_noise.json")), "score_noise.json")
    activation_macros(r, load(os.path.join(args.images, "vae_activations.json")),
                      "vae_activations.json")
    remedy_macros(r, load(os.path.join(args.images, "gan_remedy_mnist.json")),
                  "gan_remedy_mnist.json")

    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(r.lines) + "\n")
    os.replace(tmp, args.out)
    # Only the macros that report.tex uses count as missing.
    with open(os.path.join(here, "report.tex")) as f:
        used = set(re.findall(r"\\([A-Za-z]+)", f.read()))
    missing = [m for m in r.missing if m[1:].split(" ")[0] in used]
    if missing:
        sources = sorted({m.split("(")[-1].rstrip(")") for m in missing})
        print(f"warning: {len(missing)} numbers show as ?? in the report; missing or "
              f"incomplete: {', '.join(sources)}", file=sys.stderr)
        if args.strict:
            return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
