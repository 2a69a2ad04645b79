"""The scores of generated digits: the committed digit classifier and the
Frechet distance of its features."""

import numpy as np
import pytest
import scipy.linalg
import torch

import sample_quality as sq


def test_the_committed_classifier_loads_as_plain_tensors_and_reads_mnist(data_dir):
    saved = torch.load(sq.CLASSIFIER, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in saved["model"].values())
    model, info = sq.load_classifier()
    images, labels = sq.unit_images(data_dir, "test")
    accuracy = (sq.predict(model, images)[0] == labels).double().mean().item()
    assert accuracy >= 0.97
    assert accuracy == pytest.approx(info["accuracy"], abs=0.002)  # as recorded at training


def random_stats(rng, n):
    a, b = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    return rng.normal(size=n), a @ a.T, rng.normal(size=n), b @ b.T / n


def test_the_frechet_distance_of_a_set_to_itself_is_zero():
    mean, cov, _, _ = random_stats(np.random.default_rng(0), 20)
    assert sq.frechet_distance(mean, cov, mean, cov) == pytest.approx(0, abs=1e-8 * np.trace(cov))


@pytest.mark.parametrize("seed", [1, 2])
def test_the_frechet_distance_is_its_formula_with_scipys_matrix_square_root(seed):
    # |m_a - m_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^1/2), C_a and C_b not commuting
    mean_a, cov_a, mean_b, cov_b = random_stats(np.random.default_rng(seed), 8)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    want = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root)
    assert sq.frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(want, rel=1e-8)
    assert sq.frechet_distance(mean_b, cov_b, mean_a, cov_a) == pytest.approx(want, rel=1e-8)


def test_real_digits_score_far_better_than_noise_and_than_one_class(data_dir):
    images, labels = sq.unit_images(data_dir, "test")
    order = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))
    images, labels = images[order], labels[order]  # the file's writers change along it
    scorer = sq.Scorer(images[:5000], sq.load_classifier()[0])
    real, noise = scorer(images[5000:]), scorer(torch.rand(5000, 784))
    ones = scorer(images[5000:][labels[5000:] == 1])
    assert real["frechet_distance"] * 100 < noise["frechet_distance"]
    assert real["frechet_distance"] * 10 < ones["frechet_distance"]
    assert real["class_min_share"] > 0.07 and real["class_entropy_normalized"] > 0.99
    assert ones["class_shares"][1] > 0.98 and ones["class_min_share"] == 0.0
    with pytest.raises(sq.utils.RunError, match="the images to score are not finite"):
        scorer(torch.full((500, 784), float("nan")))  # a diverged generator's
