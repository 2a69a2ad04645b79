"""Tests of sample_quality.py: the Frechet distance, class coverage, the
cached digit classifier, and that the score ranks real digits above noise."""
import argparse
import os

import numpy as np
import pytest
import torch

import datasets
import sample_quality as sq


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    mean, cov = a.mean(0), np.cov(a, rowvar=False)
    assert sq.frechet_distance(mean, cov, mean, cov) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    # diagonal: |m_a - m_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    want = 5.0 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0
    got = sq.frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert got == pytest.approx(want)


def test_frechet_distance_is_symmetric_for_full_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    stats_a = a.mean(0), np.cov(a, rowvar=False)
    stats_b = b.mean(0), np.cov(b, rowvar=False)
    assert sq.frechet_distance(*stats_a, *stats_b) == pytest.approx(
        sq.frechet_distance(*stats_b, *stats_a), rel=1e-6)


def test_class_coverage():
    cover = sq.class_coverage(torch.arange(10).repeat(3))
    assert cover["class_shares"] == pytest.approx([0.1] * 10)
    assert cover["class_entropy_normalized"] == pytest.approx(1.0)
    collapsed = sq.class_coverage(torch.tensor([2, 2, 2, 7]))
    assert collapsed["class_min_share"] == 0.0
    assert collapsed["class_entropy_normalized"] < 0.3
    single = sq.class_coverage(torch.tensor([4, 4]))
    assert str(single["class_entropy_normalized"]) == "0.0"


@pytest.fixture(scope="module")
def scorer(data_dir):
    reference = datasets.load_bmnist_split(data_dir, "test").float()
    train = datasets.load_bmnist_split(data_dir, "train")[:10000].float()
    return sq.scorer_for(data_dir, reference, train)


def test_classifier_recognises_grey_and_binary_digits(scorer):
    _, summary = scorer
    info = summary["classifier"]
    assert info["trained_on"] == "mnist_train" and info["test_images"] == 10_000
    assert info["accuracy"] >= 0.98 and info["accuracy_binarized"] >= 0.97


def test_score_ranks_real_digits_far_above_noise_and_one_class(scorer, data_dir):
    scorer, summary = scorer
    assert summary["real_frechet_distance"] < 5
    assert summary["real_class_min_share"] > 0.07
    noise = scorer(torch.bernoulli(torch.full((2000, 784), 0.2)))
    assert noise["frechet_distance"] > 100 * summary["real_frechet_distance"]
    test = datasets.load_bmnist_split(data_dir, "valid").float()
    labels, _ = sq.predict(scorer.classifier, test)
    ones = scorer(test[labels == 1])
    assert ones["class_min_share"] == 0.0 and ones["class_shares"][1] > 0.9
    assert ones["frechet_distance"] > 20 * summary["real_frechet_distance"]


def test_two_sample_test_tells_apart_only_sets_that_differ(data_dir, monkeypatch):
    monkeypatch.setattr(sq, "TWO_SAMPLE_STEPS", 300)  # enough for what these sets differ in
    test = sq.unit_images(data_dir, "test")[0]  # its writers vary along the file: draw at random
    test = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))]
    real, reference = test[:2000], test[2000:4000]
    speckled = torch.maximum(real, torch.bernoulli(torch.full_like(real, 0.03)))
    torch.manual_seed(5)
    same = sq.two_sample_accuracy(real, reference)
    after = torch.rand(3)
    assert abs(same - 0.5) < 0.05
    assert sq.two_sample_accuracy(speckled, reference) > 0.95
    torch.manual_seed(5)  # seeded, and on its own random streams
    assert sq.two_sample_accuracy(real, reference) == same
    assert torch.equal(torch.rand(3), after)


def test_classifier_cache_is_written_once_and_reused(data_dir, tmp_path, monkeypatch):
    os.symlink(os.path.join(data_dir, "MNIST"), tmp_path / "MNIST")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    monkeypatch.setattr(sq, "train_classifier",
                        lambda x, y: sq.DigitClassifier().eval())
    first, info = sq.load_classifier(str(tmp_path))
    assert (tmp_path / sq.CACHE).exists()

    def no_training(x, y):
        raise AssertionError("retrained despite the cache")

    monkeypatch.setattr(sq, "train_classifier", no_training)
    again, info_again = sq.load_classifier(str(tmp_path))
    assert info_again == info
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_a_garbled_classifier_cache_is_retrained(data_dir, tmp_path, monkeypatch):
    os.symlink(os.path.join(data_dir, "MNIST"), tmp_path / "MNIST")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    trained = []
    monkeypatch.setattr(sq, "train_classifier",
                        lambda x, y: trained.append(1) or sq.DigitClassifier().eval())
    sq.load_classifier(str(tmp_path))
    saved = torch.load(tmp_path / sq.CACHE, weights_only=True)
    saved["model"]["head.weight"][0, :5] += 1.0  # bytes changed inside a valid file
    torch.save(saved, tmp_path / sq.CACHE)
    sq.load_classifier(str(tmp_path))
    assert len(trained) == 2
    saved = torch.load(tmp_path / sq.CACHE, weights_only=True)
    saved["info"]["accuracy"] = float("nan")  # the summary is covered too
    torch.save(saved, tmp_path / sq.CACHE)
    sq.load_classifier(str(tmp_path))
    assert len(trained) == 3


def test_missing_labelled_digits_is_a_data_error(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(datasets.DataError, match="t10k-images"):
        sq.load_classifier(str(tmp_path))


def test_an_unwritable_data_folder_caches_in_the_user_folder(data_dir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(os.path.join(data_dir, "MNIST"), data / "MNIST")
    (data / sq.CACHE).mkdir()  # the data folder's cache cannot be written
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    trained = []
    monkeypatch.setattr(sq, "train_classifier",
                        lambda x, y: trained.append(1) or sq.DigitClassifier().eval())
    sq.load_classifier(str(data))
    sq.load_classifier(str(data))
    assert trained == [1] and (tmp_path / "user" / "a3_generative" / sq.CACHE).is_file()


def test_building_the_classifier_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    sq.seeded(sq.DigitClassifier)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after)


def test_sample_counts_need_a_covariance_and_as_many_real_images():
    count = sq.sample_count(1000)
    assert count("0") == 0 and count(str(sq.MIN_SAMPLES)) == sq.MIN_SAMPLES
    assert count("1000") == 1000
    for text in ("1", "1001"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"0 \(skip\) or in \[129, 1000\]"):
            count(text)
    with pytest.raises(ValueError, match="at least"):
        sq.Scorer(sq.DigitClassifier(), torch.rand(500, 784))(torch.rand(5, 784))


def test_stray_pixels_counts_isolated_lit_pixels():
    images = torch.zeros(2, 1, 28, 28)
    images[0, 0, 5, 5] = 1            # alone: counted
    images[1, 0, 10, 10:13] = 1       # a short stroke: not counted
    assert sq.stray_pixels(images) == pytest.approx(0.5)
