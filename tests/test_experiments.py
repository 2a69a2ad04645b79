"""The studies behind the report's answers to questions 1.12 and 2.4, on
small inputs: what they train and what they record."""
import math

import torch
import torch.nn as nn

import experiments.gan_early as early
import experiments.score_noise as noise
import experiments.vae_activations as act
import sample_quality as sq
from experiments.gan_remedy import RECIPES


def test_first_epoch_records_a_mean_per_window_of_the_recipe_it_is_given():
    images = torch.rand(64 * 30, 1, 28, 28) * 2 - 1  # 30 steps of the default batch
    curves = early.first_epoch(images, RECIPES["plain template"], seed=0)
    windows = math.ceil(30 / early.WINDOW)
    assert len(curves["D_x"]) == len(curves["D_G_z"]) == windows
    assert all(0 < v < 1 for v in curves["D_x"] + curves["D_G_z"])
    # the epoch mean weighs every step once; the windows' mean weighs the short last one more
    steps = [early.WINDOW, 30 - early.WINDOW]
    by_window = sum(n * v for n, v in zip(steps, curves["D_G_z"])) / 30
    assert math.isclose(curves["D_G_z_epoch_mean"], by_window, abs_tol=1e-4)


def test_the_same_seed_gives_the_same_first_epoch():
    images = torch.rand(64 * 3, 1, 28, 28) * 2 - 1
    flags = RECIPES["dropout + label smoothing"]
    assert early.first_epoch(images, flags, 1) == early.first_epoch(images, flags, 1)


def test_the_kingma_welling_variant_has_one_hidden_layer_of_500_tanh_units():
    model = act.variant(*act.VARIANTS["1 x 500 tanh (Kingma and Welling)"])
    for net, sizes in ((model.encoder.net, (784, 500, 40)), (model.decoder.net, (20, 500, 784))):
        linear = [m for m in net if isinstance(m, nn.Linear)]
        assert [linear[0].in_features] + [m.out_features for m in linear] == list(sizes)
        assert sum(isinstance(m, nn.Tanh) for m in net) == 1
        assert not any(isinstance(m, nn.ELU) for m in net)
    loss = model((torch.rand(8, 784) < 0.5).float())
    assert torch.isfinite(loss)


def test_every_two_layer_variant_keeps_the_scripts_shape_with_its_activation():
    for name, (depth, width, activation) in act.VARIANTS.items():
        if depth != 2:
            continue
        net = act.variant(depth, width, activation).encoder.net
        assert sum(isinstance(m, nn.Linear) for m in net) == 3
        assert sum(isinstance(m, activation) for m in net) == 2, name


def test_the_noise_study_scores_its_first_restarts_as_the_score_does(monkeypatch):
    monkeypatch.setattr(sq, "TWO_SAMPLE_STEPS", 20)
    monkeypatch.setattr(noise, "SEEDS", 4)
    ours, theirs = torch.rand(300, 784), torch.rand(300, 784)
    study = noise.restarts(ours, theirs)
    assert len(study["accuracies"]) == 4 and len(set(study["accuracies"])) > 1
    assert study["score"] == sq.two_sample_accuracy(ours, theirs)
    assert study["std"] > 0
