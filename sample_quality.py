"""How good are generated digits? The lab's scores, one call from the GAN's loop.

A small convolutional digit classifier, trained once on the 60k grey-scale
MNIST training images and committed as digit_classifier.pt, gives for a set
of images in [0, 1]:
- the Frechet distance of its 128 penultimate features to those of held-out
  real digits (the FID's recipe with a digit classifier for Inception);
- the share of each predicted digit (class coverage);
- optionally, a classifier two-sample test (Lopez-Paz & Oquab, 2017): the
  accuracy with which a fresh network learns to tell the images from real ones.

Retrain the committed classifier with:

    python sample_quality.py --data_dir ../shared/datasets
"""

import argparse
import math
import os
import statistics

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import figures
import utils
from datasets import load_mnist

CLASSIFIER = os.path.join(utils.ROOT, "digit_classifier.pt")
FEATURES = 128
BATCH = 1000  # images per classifier call: bounds the memory of scoring
STEPS, STEP_BATCH, LR, SEED = 3000, 128, 2e-3, 0  # the classifier's recipe
TWO_SAMPLE_STEPS, TWO_SAMPLE_LR, TWO_SAMPLE_RESTARTS = 1000, 1e-3, 3


class DigitClassifier(nn.Module):
    """Two 3x3 convolutions of stride 2 (16 and 32 channels), 128 ReLU
    features, 10 logits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, images):
        return self.head(self.features(images.flatten(1)))


def fit(model, batch_loss, steps, lr):
    """Adam with a cosine decay to zero: the weights end settled."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    with torch.enable_grad():
        for _ in range(steps):
            loss = batch_loss(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def seeded(build, seed):
    """build() with its initial weights from `seed`, on its own random stream:
    scoring never moves a training run's random numbers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def unit_images(data_dir, split):
    images, labels = load_mnist(data_dir, split)
    return images.flatten(1).float() / 255, labels


def train_classifier(data_dir):
    """Cross-entropy on grey-scale MNIST; half of each batch binarized at
    random, so that binary digits (the VAE's) are read as well as grey ones."""
    images, labels = unit_images(data_dir, "train")
    rng = torch.Generator().manual_seed(SEED)

    def batch_loss(model):
        idx = torch.randint(len(images), (STEP_BATCH,), generator=rng)
        x = images[idx]
        x[STEP_BATCH // 2 :] = torch.bernoulli(x[STEP_BATCH // 2 :], generator=rng)
        return F.cross_entropy(model(x), labels[idx])

    model = fit(seeded(DigitClassifier, SEED), batch_loss, STEPS, LR)
    x_test, y_test = unit_images(data_dir, "test")
    binary = torch.bernoulli(x_test, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        info = {
            "accuracy": float((model(x_test).argmax(1) == y_test).float().mean()),
            "accuracy_binarized": float((model(binary).argmax(1) == y_test).float().mean()),
        }
    return model, info


def load_classifier(path=CLASSIFIER):
    """The committed classifier (float16 weights, read as float32) and its test accuracy."""
    if not os.path.isfile(path):
        raise utils.RunError(f"{path} is missing: train it with python sample_quality.py")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = DigitClassifier()
    model.load_state_dict({k: v.float() for k, v in saved["model"].items()})
    return model.eval(), saved["info"]


@torch.no_grad()
def predict(model, images):
    """Predicted digit and its probability for images in [0, 1]."""
    probs = torch.cat(
        [F.softmax(model(b.float()), 1) for b in images.cpu().flatten(1).split(BATCH)]
    )
    confidence, label = probs.max(1)
    return label, confidence


@torch.no_grad()
def feature_stats(model, images):
    """Mean and covariance (float64) of the classifier's features."""
    batches = images.cpu().flatten(1).split(BATCH)
    feats = torch.cat([model.features(b.float()) for b in batches]).double().numpy()
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mean_a, cov_a, mean_b, cov_b):
    """|m_a - m_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a^1/2 C_b C_a^1/2)^1/2): the
    symmetric form takes every square root of a symmetric PSD matrix."""
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    return float(max(distance, 0.0))


def two_sample_test(ours, theirs, seed):
    """Both sets cut into halves of n = min(sizes) / 2; a fresh network learns
    to tell the first halves apart; its accuracy on the second halves."""
    rng = torch.Generator().manual_seed(seed)
    n = min(len(ours), len(theirs)) // 2
    ours = ours[torch.randperm(len(ours), generator=rng)[: 2 * n]]
    theirs = theirs[torch.randperm(len(theirs), generator=rng)[: 2 * n]]
    is_ours = torch.cat([torch.ones(n), torch.zeros(n)])
    train, test = torch.cat([ours[:n], theirs[:n]]), torch.cat([ours[n:], theirs[n:]])

    def batch_loss(model):
        idx = torch.randint(2 * n, (STEP_BATCH,), generator=rng)
        return F.binary_cross_entropy_with_logits(model(train[idx]).squeeze(1), is_ours[idx])

    build = lambda: nn.Sequential(DigitClassifier().features, nn.Linear(FEATURES, 1))  # noqa: E731
    model = fit(seeded(build, seed), batch_loss, TWO_SAMPLE_STEPS, TWO_SAMPLE_LR)
    with torch.no_grad():
        said_ours = torch.cat([model(b).squeeze(1) > 0 for b in test.split(BATCH)])
    return float((said_ours == is_ours.bool()).float().mean())


class Scorer:
    """Scores images in [0, 1] against held-out real images `reference`."""

    def __init__(self, reference, classifier=None):
        self.classifier = classifier or load_classifier()[0]
        self.reference = reference.cpu().flatten(1).float()
        self.reference_stats = feature_stats(self.classifier, self.reference)

    def __call__(self, images, two_sample=False):
        """Frechet distance and class coverage (about a second for 10,000
        images on one core); with two_sample, the median accuracy of three
        seeded two-sample tests (about 25 s more)."""
        images = images.cpu().flatten(1).float()
        if not bool(images.isfinite().all()):  # a diverged generator, before a save point saw it
            raise utils.RunError("training diverged: the images to score are not finite")
        if len(images) <= FEATURES:  # fewer give a singular feature covariance
            raise utils.RunError(f"scoring needs more than {FEATURES} images, got {len(images)}")
        stats = feature_stats(self.classifier, images)
        shares = torch.bincount(predict(self.classifier, images)[0], minlength=10).double()
        shares = shares / len(images)
        entropy = -(shares * shares.clamp_min(1e-300).log()).sum() / math.log(10)
        score = {
            "images": len(images),
            "frechet_distance": frechet_distance(*stats, *self.reference_stats),
            "class_shares": shares.tolist(),
            "class_min_share": float(shares.min()),
            "class_entropy_normalized": float(entropy),
        }
        if two_sample:
            tests = [
                two_sample_test(images, self.reference, SEED + r)
                for r in range(TWO_SAMPLE_RESTARTS)
            ]
            score["two_sample_accuracy"] = statistics.median(tests)
        return score


def plot(quality, path):
    """The GAN's scores over training: its moving average against its last
    iterate, from the first save point after the start (the untrained G's
    distance, hundreds of times larger, would flatten the rest)."""
    quality = [q for q in quality if q["iteration"] > 0] or quality
    x = [q["iteration"] / 1000 for q in quality]
    panels = [
        (
            label,
            {
                "moving average": [q[key] for q in quality],
                "last iterate": [q["last_iterate"][key] for q in quality],
            },
        )
        for key, label in (
            ("frechet_distance", "Frechet distance"),
            ("class_min_share", "rarest digit's share"),
        )
    ]
    figures.save_curves(
        path, panels, "iteration (thousands)", f"{quality[-1]['images']:,} samples a point", x=x
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train the digit classifier the scores use.")
    parser.add_argument("--data_dir", default="./data", help="folder holding MNIST/raw/")
    parser.add_argument("--out", default=CLASSIFIER, help="where to write the weights")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the same weights on every machine
    model, info = train_classifier(args.data_dir)
    half = {k: v.half() for k, v in model.state_dict().items()}
    utils.save_torch({"model": half, "info": info}, args.out)
    print(f"wrote {args.out}: test accuracy {info['accuracy']:.4f}")


if __name__ == "__main__":
    main()
