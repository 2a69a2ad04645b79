"""How good are generated digits? Shared by the VAE and GAN scripts.

A small MLP classifier of MNIST digits supplies two numbers for any set of
generated images:

- the Frechet distance between the Gaussians fitted to its penultimate-layer
  features of the generated images and of held-out real images (the recipe of
  the FID, with a digit classifier in place of Inception): 0 for identical
  feature statistics, larger when samples look wrong or lack variety;
- class coverage: the share of each predicted digit, which exposes a
  generator that has dropped some classes.

The classifier is trained once on labelled grey-scale MNIST (the 60k training
images when the data folder has them, otherwise the 10k test images) and its
weights are cached in the data folder; a read-only folder only costs the
retraining (about ten seconds) on every run.
"""
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import datasets

FEATURES = 128
BATCH = 1000
HELD_OUT = 1000  # test images kept out of training when the test set trains it


class DigitClassifier(nn.Module):
    """784 -> 512 -> 128 -> 10; `features` gives the 128 ReLU activations."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(784, 512), nn.ReLU(),
                                      nn.Linear(512, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, images):
        return self.head(self.features(images.flatten(1)))


def labelled_digits(data_dir):
    """Training and check images in [0, 1] with labels, and their source.

    The grey-scale training set when it is in data_dir (checked on the test
    set); otherwise the test set, of which the last HELD_OUT images are kept
    for the check.
    """
    x_test, y_test = datasets.load_mnist_test(data_dir)
    try:
        from torchvision.datasets import MNIST

        train = MNIST(data_dir, train=True, download=False)
    except (RuntimeError, OSError):
        return (x_test[:-HELD_OUT], y_test[:-HELD_OUT],
                x_test[-HELD_OUT:], y_test[-HELD_OUT:], "mnist_test")
    x_train = train.data.view(len(train.data), -1).float() / 255
    return x_train, train.targets, x_test, y_test, "mnist_train"


def train_classifier(images, labels, steps=1500, seed=0):
    """Adam on cross-entropy; half of each batch is binarized at random
    (pixels drawn from Bernoulli(intensity)), so that the classifier knows
    binary digits, which is what models of binarized MNIST produce, as well as
    grey ones. Uses its own RNG: the caller's random stream is untouched."""
    rng = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = torch.randint(len(images), (128,), generator=rng)
        x = images[idx]
        x[64:] = torch.bernoulli(x[64:], generator=rng)
        loss = F.cross_entropy(model(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, images, labels):
    return float((model(images).argmax(1) == labels).float().mean())


def load_classifier(data_dir):
    """The cached classifier and a summary of it; trained and cached when the
    cache is missing or unreadable."""
    x_train, y_train, x_check, y_check, source = labelled_digits(data_dir)
    cache = os.path.join(data_dir, f"digit_classifier_{source}.pt")
    model = DigitClassifier()
    try:
        saved = torch.load(cache, weights_only=True)
        model.load_state_dict(saved["model"])
        return model.eval(), saved["info"]
    except Exception:  # noqa: BLE001 - any unreadable cache is rebuilt
        pass
    model = train_classifier(x_train, y_train)
    binary = torch.bernoulli(x_check, generator=torch.Generator().manual_seed(0))
    info = {"trained_on": source, "check_images": len(x_check),
            "accuracy": accuracy(model, x_check, y_check),
            "accuracy_binarized": accuracy(model, binary, y_check)}
    tmp = f"{cache}.tmp{os.getpid()}"
    try:
        torch.save({"model": model.state_dict(), "info": info}, tmp)
        os.replace(tmp, cache)
    except OSError:  # read-only data folder: retrain next time
        if os.path.exists(tmp):
            os.remove(tmp)
    return model, info


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


def class_coverage(labels):
    """Share of each digit among predicted labels, the smallest share, and the
    entropy of the shares divided by log 10 (1 = all digits equally often)."""
    shares = torch.bincount(labels, minlength=10).double() / len(labels)
    nonzero = shares[shares > 0]
    entropy = -(nonzero * nonzero.log()).sum() / math.log(10)
    return {"class_shares": shares.tolist(),
            "class_entropy_normalized": float(entropy) + 0.0,  # no -0.0
            "class_min_share": float(shares.min())}


class Scorer:
    """Scores images in [0, 1] against `reference`, held-out real images."""

    def __init__(self, classifier, reference):
        self.classifier = classifier
        self.reference = feature_stats(classifier, reference)

    def __call__(self, images):
        labels, _ = predict(self.classifier, images)
        return {"frechet_distance": frechet_distance(
                    *feature_stats(self.classifier, images), *self.reference),
                "images": len(images), **class_coverage(labels)}


def scorer_for(data_dir, reference, real_check):
    """A Scorer and a summary of its classifier, including the score of
    `real_check` (real images other than the reference): the distance that
    a perfect model would reach with this many samples."""
    classifier, info = load_classifier(data_dir)
    scorer = Scorer(classifier, reference)
    real = scorer(real_check)
    return scorer, {"classifier": info, "real_frechet_distance": real["frechet_distance"],
                    "real_class_min_share": real["class_min_share"]}
