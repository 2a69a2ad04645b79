"""The GAN's maths and models: each test states a property of the losses,
the networks, sampling or the neutral rule of the interpolation figure."""

import pytest
import torch
import torch.nn as nn

import a3_gan_template as gan

F64 = torch.float64


# ------------------------------------------------------------------- the losses
def test_the_discriminator_loss_is_minus_log_d_x_minus_log_one_minus_d_g_z():
    real = torch.tensor([-2.0, 0.0, 0.7, 3.0], dtype=F64)
    fake = torch.tensor([-1.5, 0.2, 1.0, -4.0], dtype=F64)
    want = -real.sigmoid().log().mean() - (1 - fake.sigmoid()).log().mean()
    assert torch.allclose(gan.discriminator_loss(real, fake), want)


def test_label_smoothing_moves_only_the_target_of_the_real_images():
    real = torch.tensor([-1.0, 0.5, 2.0], dtype=F64)
    fake = torch.tensor([0.3, -2.0, 1.0], dtype=F64)
    d = real.sigmoid()
    smoothed = -(0.9 * d.log() + 0.1 * (1 - d).log()).mean()  # cross-entropy to 0.9
    want = smoothed - (1 - fake.sigmoid()).log().mean()
    assert torch.allclose(gan.discriminator_loss(real, fake, real_label=0.9), want)


def test_the_generator_loss_is_the_non_saturating_minus_log_d_g_z():
    fake = torch.tensor([-2.0, 0.0, 0.7, 3.0], dtype=F64)
    assert torch.allclose(gan.generator_loss(fake), -fake.sigmoid().log().mean())


@pytest.mark.parametrize("logit", [1e4, -1e4])
def test_both_losses_are_finite_and_exact_at_extreme_logits(logit):
    real = torch.full((4,), logit, requires_grad=True)
    fake = torch.full((4,), -logit, requires_grad=True)
    loss_d, loss_g = gan.discriminator_loss(real, fake), gan.generator_loss(fake)
    (loss_d + loss_g).backward()
    # D right (logit > 0): both of its terms vanish, and G pays |logit|; D wrong: the reverse
    assert loss_d.item() == (0.0 if logit > 0 else 2e4)
    assert loss_g.item() == (1e4 if logit > 0 else 0.0)
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()


def test_the_non_saturating_gradient_stays_large_where_the_minimax_one_vanishes():
    # D rejects the fakes (D(G(z)) = sigmoid(-20) ~ 2e-9): the minimax loss
    # log(1 - D(G(z))) is flat there, -log D(G(z)) keeps a slope of -1 per image
    fake = torch.full((4,), -20.0, dtype=F64, requires_grad=True)
    (saturating,) = torch.autograd.grad((1 - fake.sigmoid()).log().mean(), fake)
    gan.generator_loss(fake).backward()
    assert (saturating.abs() < 1e-9).all()
    assert torch.allclose(fake.grad, torch.full((4,), -0.25, dtype=F64))


# ------------------------------------------------------------------- the models
def test_the_generator_draws_images_in_minus_one_to_one():
    torch.manual_seed(0)
    images = gan.Generator(latent_dim=16)(torch.randn(8, 16) * 10)
    assert images.shape == (8, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1


def test_the_discriminator_returns_one_unbounded_logit_per_image():
    torch.manual_seed(0)
    discriminator = gan.Discriminator(dropout=0.0)
    with torch.no_grad():
        discriminator.net[-1].weight.mul_(1000)  # a probability would stay in (0, 1)
        logits = discriminator(torch.rand(5, 1, 28, 28) * 2 - 1)
    assert logits.shape == (5,) and logits.abs().max() > 1


def test_dropout_zeroes_each_value_with_probability_p_and_keeps_the_mean():
    torch.manual_seed(0)
    drop, x = gan.Dropout(0.3), torch.ones(100_000)
    y = drop(x)
    assert torch.isin(y, torch.tensor([0.0, 1 / 0.7])).all()
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.005 and abs(float(y.mean()) - 1) < 0.01
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("training", [True, False])
def test_generate_samples_in_eval_mode_and_leaves_mode_and_statistics(training):
    torch.manual_seed(0)
    generator = gan.Generator(8).train(training)
    buffers = {k: v.clone() for k, v in generator.named_buffers()}
    z = torch.randn(6, 8)
    images = gan.generate(generator, z)
    assert generator.training is training and not images.requires_grad
    assert all(torch.equal(v, buffers[k]) for k, v in generator.named_buffers())
    # eval mode: BatchNorm uses its running statistics, a sample depends on its noise only
    assert torch.allclose(gan.generate(generator, z[:1]), images[:1], atol=1e-6)
    assert torch.allclose(images, generator.eval()(z), atol=1e-6)


def test_an_interpolation_runs_from_one_generated_end_to_the_other():
    torch.manual_seed(0)
    generator = gan.Generator(8)
    z = torch.randn(2, 8)
    row, ends = gan.interpolate(generator, z[0], z[1], steps=5), gan.generate(generator, z)
    assert row.shape == (7, 1, 28, 28)
    assert torch.allclose(row[0], ends[0], atol=1e-5) and torch.allclose(
        row[-1], ends[1], atol=1e-5
    )
    assert not torch.allclose(row[3], ends[0], atol=1e-2)
    midpoint = gan.generate(generator, z.mean(0, keepdim=True))
    assert torch.allclose(row[3], midpoint[0], atol=1e-5)


# ----------------------------------------------------- the interpolation's rule
class Identity(nn.Module):
    """A stand-in generator: the noise (784 values in [-1, 1]) is the image."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # generate() asks for a device

    def forward(self, z):
        return z.view(-1, 1, 28, 28)


class Reader(nn.Module):
    """A stand-in classifier: pixel 0 codes the class, pixel 1 the logit
    margin over every other class."""

    def forward(self, images):
        label, margin = (images[:, 0] * 10).round().long(), images[:, 1] * 100
        return torch.zeros(len(images), 10).scatter(1, label[:, None], margin[:, None])


def noise(classes, margins):
    z = torch.zeros(len(classes), 784)
    z[:, 0], z[:, 1] = torch.tensor(classes) / 10, torch.tensor(margins) / 100
    return z * 2 - 1  # generate's images in [-1, 1] reach the classifier in [0, 1]


def test_interpolations_join_the_clearest_sample_of_each_class_in_order_of_appearance(tmp_path):
    classes = [3, 7, 3, 1, 7, 9, 1, 0, 5, 2]
    margins = [10, 20, 30, 40, 50, 15, 45, 35, 25, 5]
    # first appearances: 3 (clearest: index 2), 7 (4), 1 (6), 9 (5), 0 (7), 5 (8); 2 is left over
    rows = gan.save_interpolation(Identity(), Reader(), noise(classes, margins), tmp_path / "i.png")
    assert rows == [
        {"noise_indices": [2, 4], "classes": [3, 7]},
        {"noise_indices": [6, 5], "classes": [1, 9]},
        {"noise_indices": [7, 8], "classes": [0, 5]},
    ]
    assert (tmp_path / "i.png").read_bytes().startswith(b"\x89PNG")


def test_with_one_class_only_its_two_clearest_samples_are_joined(tmp_path):
    rows = gan.save_interpolation(
        Identity(), Reader(), noise([4, 4, 4, 4], [10, 40, 20, 30]), tmp_path / "i.png"
    )
    assert rows == [{"noise_indices": [1, 3], "classes": [4, 4]}]
