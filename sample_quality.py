"""How good are generated digits? Shared by the VAE and GAN scripts.

A small convolutional classifier of MNIST digits, trained once on the 60k
grey-scale training images and cached, gives for a set of images the Frechet
distance of its penultimate-layer features to those of held-out real images
(the FID's recipe with a digit classifier in place of Inception) and the
share of each predicted digit (class coverage), and the accuracy with which
a fresh network learns to tell the images from real digits (a classifier
two-sample test): a trained GAN's digits come as close to the held-out ones
on the features as real training digits do, but not on this test.
"""
import hashlib
import json
import math
import os
import statistics

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import datasets
import figures
import utils

FEATURES = 128
MIN_SAMPLES = FEATURES + 1  # fewer images give a singular feature covariance
BATCH = 1000  # images per classifier call: bounds the memory of scoring
# The recipe: 3000 Adam steps of 128 images, cosine decay, half of each batch
# binarized, one thread. Part of the cache's name, so that a new recipe retrains.
STEPS, STEP_BATCH, LR, SEED = 3000, 128, 2e-3, 0
CACHE = f"digit_cnn_s{STEPS}_b{STEP_BATCH}_seed{SEED}_t1.pt"
# The two-sample test's budget: each restart takes a few seconds on one core
# whatever the number of images, since the test set, not the training, grows
# with them. One restart's accuracy depends on its seed (by how much:
# experiments/score_noise.py); the runs report the median of three.
TWO_SAMPLE_STEPS, TWO_SAMPLE_LR, TWO_SAMPLE_RESTARTS = 1000, 1e-3, 3


def sample_count(most):
    """argparse type of --quality_samples: 0 (skip scoring), or enough images
    for a non-singular feature covariance and at most `most`, the real
    training images that give the score's floor."""
    def parse(text):
        value = utils.nonneg_int(text)
        if value and not MIN_SAMPLES <= value <= most:
            raise utils.argparse.ArgumentTypeError(
                f"must be 0 (skip) or in [{MIN_SAMPLES}, {most}], got {text}")
        return value
    parse.__name__ = "int"
    return parse


class DigitClassifier(nn.Module):
    """Two 3x3 convolutions of stride 2 (16 and 32 channels, 28 -> 14 -> 7),
    then 128 units and the 10 classes; `features` gives the 128 ReLU
    activations. About 0.45 M multiply-adds an image: 10,000 images score in
    about a second on one core."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, images):
        return self.head(self.features(images.flatten(1)))


def unit_images(data_dir, split):
    """Grey-scale MNIST images of a split as floats in [0, 1], shape (N, 784),
    and their labels."""
    images, labels = datasets.load_mnist(data_dir, split)
    return images.view(len(images), -1).float() / 255, labels


def train_classifier(images, labels):
    """Cross-entropy. Half of each batch is binarized at random (pixels drawn
    from Bernoulli(intensity)), so that it knows binary digits, which models
    of binarized MNIST produce, as well as grey ones."""
    rng = torch.Generator().manual_seed(SEED)
    half = STEP_BATCH // 2

    def batch_loss(model):
        idx = torch.randint(len(images), (STEP_BATCH,), generator=rng)
        x = images[idx]
        x[half:] = torch.bernoulli(x[half:], generator=rng)
        return F.cross_entropy(model(x), labels[idx])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights whatever the machine's thread count
    try:
        return fit(seeded(DigitClassifier), batch_loss, STEPS, LR).eval()
    finally:
        torch.set_num_threads(threads)


def fit(model, batch_loss, steps, lr):
    """Adam whose step size decays to zero along a cosine: the weights end
    settled rather than at one noisy iterate."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    with torch.enable_grad():  # callers may score under no_grad
        for _ in range(steps):
            loss = batch_loss(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model


def seeded(build, seed=SEED):
    """build(), its initial weights drawn from their own seed: building leaves
    the caller's random stream untouched, so a training run's trajectory does
    not depend on whether it scores samples."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@torch.no_grad()
def accuracy(model, images, labels):
    return float((model(images).argmax(1) == labels).float().mean())


def cache_paths(data_dir):
    """Where the classifier is cached: the data folder, else (a read-only
    data folder) the user's cache folder, $XDG_CACHE_HOME or ~/.cache."""
    user = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [os.path.join(data_dir, CACHE), os.path.join(user, "a3_generative", CACHE)]


def load_classifier(data_dir):
    """The cached classifier and its accuracy on the 10k test images (grey
    and binarized); trained (about a minute) and cached when no usable cache
    is found."""
    model = seeded(DigitClassifier)
    for cache in cache_paths(data_dir):
        try:
            saved = torch.load(cache, weights_only=True) if os.path.isfile(cache) else {}
            if saved["sha256"] != weights_checksum(saved["model"], saved["info"]):
                raise ValueError("garbled cache")
            model.load_state_dict(saved["model"])
            return model.eval(), saved["info"]
        except Exception:  # noqa: BLE001 - any unusable cache is rebuilt
            pass
    x_test, y_test = unit_images(data_dir, "test")
    model = train_classifier(*unit_images(data_dir, "train"))
    binary = torch.bernoulli(x_test, generator=torch.Generator().manual_seed(SEED))
    info = {"trained_on": "mnist_train", "test_images": len(x_test),
            "accuracy": accuracy(model, x_test, y_test),
            "accuracy_binarized": accuracy(model, binary, y_test)}
    saved = {"model": model.state_dict(), "info": info,
             "sha256": weights_checksum(model.state_dict(), info)}
    for cache in cache_paths(data_dir):
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            utils.save_torch(saved, cache)
            break
        except (OSError, utils.RunError):
            pass
    return model, info


def weights_checksum(state, info):
    """SHA-256 of a state_dict's names and bytes and of the summary: a cache
    whose bytes were garbled is retrained instead of silently giving other
    scores."""
    digest = hashlib.sha256(json.dumps(info, sort_keys=True).encode())
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def predict(model, images):
    """Predicted digit and its probability for images in [0, 1]."""
    probs = torch.cat([F.softmax(model(b.cpu().float()), dim=1)
                       for b in images.flatten(1).split(BATCH)])
    confidence, label = probs.max(dim=1)
    return label, confidence


@torch.no_grad()
def feature_stats(model, images):
    """Mean and covariance (float64 numpy) of the classifier features."""
    feats = torch.cat([model.features(b.cpu().float())
                       for b in images.flatten(1).split(BATCH)]).double().numpy()
    return feats.mean(0), np.cov(feats, rowvar=False)


def _sqrt_psd(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean_a, cov_a, mean_b, cov_b):
    """Squared 2-Wasserstein distance between two Gaussians:

        |m_a - m_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a^1/2 C_b C_a^1/2)^1/2)

    The symmetric form keeps every matrix square root that of a symmetric
    positive semi-definite matrix, computed from its eigenvalues.
    """
    root_a = _sqrt_psd(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_cross = np.sqrt(np.clip(cross, 0, None)).sum()
    distance = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * trace_cross)
    return float(max(distance, 0.0))


def two_sample_accuracy(images, reference):
    """A classifier two-sample test (Lopez-Paz & Oquab, 2017): the median
    accuracy of TWO_SAMPLE_RESTARTS tests, each with its own seed. 0.5: no
    difference found; 1: always told apart. Seeded and on its own random
    streams: the same images give the same accuracy, and a training run's
    trajectory does not depend on scoring."""
    ours, theirs = images.flatten(1).cpu().float(), reference.flatten(1).cpu().float()
    return statistics.median(two_sample_test(ours, theirs, SEED + restart)
                             for restart in range(TWO_SAMPLE_RESTARTS))


def two_sample_test(ours, theirs, seed):
    """Both sets cut at random into halves of n = min(sizes) / 2 images; a
    fresh network of the classifier's convolutions learns to tell the first
    halves apart; its accuracy on the second halves."""
    rng = torch.Generator().manual_seed(seed)
    n = min(len(ours), len(theirs)) // 2
    ours = ours[torch.randperm(len(ours), generator=rng)[:2 * n]]
    theirs = theirs[torch.randperm(len(theirs), generator=rng)[:2 * n]]
    is_ours = torch.cat([torch.ones(n), torch.zeros(n)])
    train, test = torch.cat([ours[:n], theirs[:n]]), torch.cat([ours[n:], theirs[n:]])

    def batch_loss(model):
        idx = torch.randint(2 * n, (STEP_BATCH,), generator=rng)
        return F.binary_cross_entropy_with_logits(model(train[idx]).squeeze(1), is_ours[idx])

    model = fit(seeded(lambda: nn.Sequential(DigitClassifier().features,
                                             nn.Linear(FEATURES, 1)), seed),
                batch_loss, TWO_SAMPLE_STEPS, TWO_SAMPLE_LR)
    with torch.no_grad():
        said_ours = torch.cat([model(b).squeeze(1) > 0 for b in test.split(BATCH)])
    return float((said_ours == is_ours.bool()).float().mean())


def class_coverage(labels):
    """Share of each digit among predicted labels, the smallest share, and the
    entropy of the shares divided by log 10 (1 = all digits equally often)."""
    shares = torch.bincount(labels, minlength=10).double() / len(labels)
    nonzero = shares[shares > 0]
    entropy = -(nonzero * nonzero.log()).sum() / math.log(10)
    return {"class_shares": shares.tolist(),
            "class_entropy_normalized": float(entropy) + 0.0,  # no -0.0
            "class_min_share": float(shares.min())}


def stray_pixels(images):
    """Mean number per image of lit pixels (> half of the range) with no lit
    neighbour among their 8: the speckle that clean strokes lack."""
    lit = (images.detach().cpu().float() > 0.5).float()
    ring = torch.ones(1, 1, 3, 3)
    ring[0, 0, 1, 1] = 0
    alone = (lit == 1) & (F.conv2d(lit, ring, padding=1) == 0)
    return float(alone.sum((1, 2, 3)).float().mean())


class Scorer:
    """Scores images in [0, 1] against `reference`, held-out real images
    (about 25 s a call on one core, nearly all of it the two-sample test's
    three trainings)."""

    def __init__(self, classifier, reference):
        self.classifier = classifier
        self.reference = reference
        self.reference_stats = feature_stats(classifier, reference)

    def __call__(self, images):
        if len(images) < MIN_SAMPLES:
            raise ValueError(f"scoring needs at least {MIN_SAMPLES} images")
        labels, _ = predict(self.classifier, images)
        return {"frechet_distance": self.frechet_distance(images),
                "images": len(images), **class_coverage(labels),
                "two_sample_accuracy": two_sample_accuracy(images, self.reference)}

    def frechet_distance(self, images):
        return frechet_distance(*feature_stats(self.classifier, images), *self.reference_stats)


def scorer_for(data_dir, reference, real):
    """A Scorer against `reference`, and a summary of its classifier with the
    score of `real` (real images of the same kind and number as the samples
    to score, none of them in the reference): the floor a perfect model
    would reach."""
    classifier, info = load_classifier(data_dir)
    scorer = Scorer(classifier, reference)
    floor = scorer(real)
    return scorer, {"classifier": info, "real_frechet_distance": floor["frechet_distance"],
                    "real_class_min_share": floor["class_min_share"],
                    "real_two_sample_accuracy": floor["two_sample_accuracy"],
                    "reference_images": len(reference), "real_images": len(real)}


PANELS = (  # score, axis label, the floor's key in the summary
    ("frechet_distance", "Frechet distance", "real_frechet_distance"),
    ("two_sample_accuracy", "two-sample test accuracy", "real_two_sample_accuracy"),
    ("class_min_share", "share of the rarest digit", "real_class_min_share"))


def plot_quality(quality, summary, path):
    """Each score over training, of the generator and, where scored, of its
    last iterate, against the floor of real training images."""
    x = [q["iteration"] for q in quality]
    panels = [panel for panel in PANELS if panel[0] in quality[-1]]
    fig = Figure(figsize=(5.5, 1.2 + 1.8 * len(panels)))  # printed about this size
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (key, label, floor) in zip(axes, panels):
        if key in quality[-1].get("last_iterate", {}):
            ax.plot(x, [q["last_iterate"][key] for q in quality], color="tab:orange",
                    lw=0.8, alpha=0.8, label="last iterate")
        ax.plot(x, [q[key] for q in quality], color="tab:blue", label=(
            "moving average of G" if "last_iterate" in quality[-1] else "generator"))
        ax.axhline(summary[floor], color="k", ls="--", label="real training images")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[-1].set_xlabel("iteration")
    axes[-1].xaxis.set_major_locator(MaxNLocator(5))
    axes[0].set_title(f"{quality[-1]['images']:,} samples per point against held-out digits",
                      fontsize="medium")
    figures.save_figure(fig, path)
