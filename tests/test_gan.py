"""The GAN's losses and models: each test states a property of the
objective, the networks, one training step or the interpolation."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import a3_gan_template as gan


# ------------------------------------------------------------------- losses
def test_discriminator_loss_matches_formula():
    real = torch.tensor([-2.0, 0.0, 0.7, 3.0], dtype=torch.float64)
    fake = torch.tensor([-1.5, 0.2, 1.0, -4.0], dtype=torch.float64)
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected = -torch.log(d_real).mean() - torch.log(1 - d_fake).mean()
    assert torch.allclose(gan.discriminator_loss(real, fake), expected)


def test_generator_loss_is_non_saturating_formula():
    fake = torch.tensor([-2.0, 0.0, 0.7, 3.0], dtype=torch.float64)
    expected = -torch.log(torch.sigmoid(fake)).mean()
    assert torch.allclose(gan.generator_loss(fake), expected)


@pytest.mark.parametrize("real_logit, fake_logit, want_d", [
    (40.0, -40.0, 0.0),   # D certain and right: loss ~ 0
    (-40.0, 40.0, 80.0),  # D certain and wrong: -log(sigmoid(-40)) ~ 40, twice
])
def test_losses_finite_for_saturated_discriminator(real_logit, fake_logit, want_d):
    real = torch.full((4,), real_logit, requires_grad=True)
    fake = torch.full((4,), fake_logit, requires_grad=True)
    loss_d = gan.discriminator_loss(real, fake)
    loss_g = gan.generator_loss(fake)
    (loss_d + loss_g).backward()
    assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
    assert loss_d.item() == pytest.approx(want_d, abs=1e-4)
    assert loss_g.item() == pytest.approx(max(-fake_logit, 0.0), abs=1e-4)
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()


def test_generator_gradient_does_not_vanish_when_d_rejects_fakes():
    # The reason for the non-saturating loss: at D(G(z)) ~ 0, the gradient
    # wrt the logit stays about -1/B instead of going to 0.
    fake = torch.full((4,), -40.0, requires_grad=True)
    gan.generator_loss(fake).backward()
    assert torch.allclose(fake.grad, torch.full((4,), -0.25))


# ------------------------------------------------------------------- models
def test_generator_shape_and_range():
    torch.manual_seed(0)
    images = gan.Generator(latent_dim=16)(torch.randn(8, 16) * 10)
    assert images.shape == (8, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1


def test_discriminator_returns_one_logit_per_image():
    torch.manual_seed(0)
    d = gan.Discriminator(dropout=0.3)
    assert d(torch.rand(5, 1, 28, 28) * 2 - 1).shape == (5,)
    assert d(torch.rand(5, 784)).shape == (5,)


def test_train_step_updates_both_networks():
    torch.manual_seed(0)
    generator, discriminator = gan.Generator(8), gan.Discriminator(0.3)
    before = [p.clone() for p in (*generator.parameters(),
                                  *discriminator.parameters())]
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3,
                             betas=(0.5, 0.999))
    imgs = torch.randint(0, 2, (16, 1, 28, 28)).float() * 2 - 1
    stats = gan.train_step(imgs, discriminator, generator, opt_g, opt_d, 8)
    assert set(stats) == set(gan.CURVES)
    assert all(v.shape == () and torch.isfinite(v) and not v.requires_grad
               for v in stats.values())
    assert 0 < stats["D_x"] < 1 and 0 < stats["D_G_z"] < 1
    n_g = len(list(generator.parameters()))
    after = [*generator.parameters(), *discriminator.parameters()]
    changed = [not torch.equal(a, b) for a, b in zip(before, after)]
    assert all(changed[:n_g]), "some generator parameters did not change"
    assert all(changed[n_g:]), "some discriminator parameters did not change"


def test_interpolation_has_nine_images_ending_at_the_endpoints():
    torch.manual_seed(0)
    generator = gan.Generator(8)
    z = torch.randn(2, 8)
    row = gan.interpolate(generator, z[0], z[1])
    ends = gan.generate(generator, z)
    assert row.shape == (9, 1, 28, 28)
    assert torch.allclose(row[0], ends[0], atol=1e-5)
    assert torch.allclose(row[-1], ends[1], atol=1e-5)
    assert not torch.allclose(row[4], ends[0], atol=1e-3)




def test_averaged_generator_is_a_moving_average_of_weights_and_statistics():
    torch.manual_seed(0)
    generator = gan.Generator(8)
    averaged = gan.averaged_generator(generator, decay=0.9)
    states = []
    for _ in range(3):  # three "training steps", each followed by an update
        with torch.no_grad():
            for p in generator.parameters():
                p.add_(torch.randn_like(p))
        generator.train()(torch.randn(16, 8))  # moves the BatchNorm statistics
        averaged.update_parameters(generator)
        states.append({k: v.clone() for k, v in generator.state_dict().items()})
    d = 0.9 ** gan.EMA_EVERY  # an update stands for EMA_EVERY steps
    for name, value in averaged.module.state_dict().items():
        if value.is_floating_point():
            # the first update copies; each later one is avg <- d avg + (1 - d) G
            want = d * (d * states[0][name] + (1 - d) * states[1][name]) + (1 - d) * states[2][name]
            assert torch.allclose(value, want, atol=1e-6), name


def test_decay_zero_samples_the_last_iterate_exactly():
    torch.manual_seed(0)
    generator = gan.Generator(8)
    averaged = gan.averaged_generator(generator, decay=0.0)
    for _ in range(2):
        with torch.no_grad():
            for p in generator.parameters():
                p.mul_(1.5)
        averaged.update_parameters(generator)
    z = torch.randn(4, 8)
    assert torch.equal(gan.generate(averaged.module, z), gan.generate(generator, z))


def test_label_smoothing_changes_only_the_real_target():
    real = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    fake = torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64)
    expected = (F.binary_cross_entropy_with_logits(real, torch.full_like(real, 0.9))
                - torch.log(1 - torch.sigmoid(fake)).mean())
    assert torch.allclose(gan.discriminator_loss(real, fake, 0.9), expected)


def test_class_defaults_equal_the_flag_defaults():
    flags = gan.build_parser().parse_args([])
    dropouts = {m.p for m in gan.Discriminator().modules() if isinstance(m, nn.Dropout)}
    assert dropouts == {flags.d_dropout}
    assert gan.Generator()(torch.randn(2, flags.latent_dim)).shape == (2, 1, 28, 28)


class Brightness(nn.Module):
    """A stand-in generator: uniform images whose grey level is tanh(z[0])."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # generate() asks for a device

    def forward(self, z):
        return torch.tanh(z[:, :1]).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)


class LevelClassifier(nn.Module):
    """A stand-in digit classifier: class c for grey levels near c / 9."""

    def forward(self, images):
        level = images.flatten(1).mean(1, keepdim=True)
        return -2000 * (level - torch.arange(10) / 9).pow(2)


def test_interpolations_join_the_clearest_digit_of_each_class_in_order_of_appearance(tmp_path):
    torch.manual_seed(0)
    noise = torch.atanh(torch.rand(300, 4) * 1.98 - 0.99)  # grey levels spread over (0, 1)
    info = gan.save_interpolation(Brightness(), LevelClassifier(), noise,
                                  tmp_path / "rows.png")
    levels = gan.to_unit(gan.generate(Brightness(), noise)).mean(1)
    labels = (levels * 9).round().long().tolist()  # LevelClassifier's label
    # the classes in the order their first sample appears, paired up; each
    # class's clearest sample is the one nearest its level c / 9
    order = list(dict.fromkeys(labels))
    clearest = {c: min((i for i in range(len(noise)) if labels[i] == c),
                       key=lambda i: abs(levels[i] - c / 9)) for c in order}
    assert info["steps"] == 7 and len(info["rows"]) == gan.INTERPOLATIONS
    for k, row in enumerate(info["rows"]):
        a, b = order[2 * k], order[2 * k + 1]
        assert row["noise_indices"] == [clearest[a], clearest[b]]
        path = row["labels_along_path"]
        assert len(path) == 9 and row["different_classes"] and (path[0], path[-1]) == (a, b)
        # brightness is monotone along the line, so the labels are too
        assert path == sorted(path) or path == sorted(path, reverse=True)
        assert 0 <= row["blend_frames"] <= 7
    assert (tmp_path / "rows.png").stat().st_size > 0
