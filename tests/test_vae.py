"""The VAE's maths: each test states a property of the ELBO, its terms or the
importance-weighted estimate of log p(x) that the code must have."""

import math
import os
import re

import numpy as np
import pytest
import torch
from conftest import ROOT
from scipy.stats import norm

import a3_vae_template as vae
from datasets import TensorLoader

F64 = torch.float64


def standard_normal(z):
    return vae.log_normal(z, torch.zeros_like(z), torch.ones_like(z))


# --------------------------------------------------------------- the ELBO's terms
def test_log_bernoulli_is_x_log_s_plus_one_minus_x_log_one_minus_s():
    torch.manual_seed(0)
    logits = torch.randn(5, 784, dtype=F64) * 3
    x = torch.randint(0, 2, (5, 784), dtype=F64)
    s = torch.sigmoid(logits)
    direct = (x * s.log() + (1 - x) * (1 - s).log()).sum(-1)
    assert torch.allclose(vae.log_bernoulli(logits, x), direct)


def test_log_bernoulli_is_finite_and_exact_at_extreme_logits():
    logits = torch.tensor([[-1e4, 1e4], [-1e4, 1e4]], requires_grad=True)
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    ll = vae.log_bernoulli(logits, x)
    assert ll.tolist() == [0.0, -2e4]  # confident and right; confident and wrong
    ll.sum().backward()
    assert torch.equal(logits.grad, x - torch.sigmoid(logits.detach()))  # d/dl = x - s


def test_log_normal_is_the_sum_of_scipy_log_densities():
    rng = np.random.default_rng(0)
    z, mean, std = rng.normal(size=(3, 4, 5)), rng.normal(size=(4, 5)), rng.uniform(0.1, 3, (4, 5))
    want = norm.logpdf(z, mean, std).sum(-1)
    got = vae.log_normal(*(torch.from_numpy(a) for a in (z, mean, std)))
    assert np.allclose(got.numpy(), want)


def test_kl_divergence_is_its_closed_form_and_a_monte_carlo_estimate():
    mean = torch.tensor([[0.5, -1.0, 2.0]], dtype=F64)
    std = torch.tensor([[0.6, 1.2, 1.8]], dtype=F64)
    closed = (0.5 * (mean**2 + std**2 - 1) - std.log()).sum(-1)
    assert torch.allclose(vae.kl_divergence(mean, std), closed)
    torch.manual_seed(0)
    z = mean + std * torch.randn(400_000, 3, dtype=F64)
    monte_carlo = (vae.log_normal(z, mean, std) - standard_normal(z)).mean()
    assert vae.kl_divergence(mean, std).item() == pytest.approx(monte_carlo.item(), abs=0.02)


def test_kl_divergence_is_zero_at_the_prior_and_positive_elsewhere():
    zero, one = torch.zeros(2, 4), torch.ones(2, 4)
    assert vae.kl_divergence(zero, one).tolist() == [0.0, 0.0]
    assert (vae.kl_divergence(zero + 0.1, one) > 0).all()
    assert (vae.kl_divergence(zero, one * 0.9) > 0).all()


# ------------------------------------------------------------------- the model
@pytest.fixture
def model():
    torch.manual_seed(0)
    return vae.VAE(hidden_dim=32, z_dim=4)


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.bernoulli(torch.full((16, 784), 0.3))


def test_the_elbo_is_one_reparametrised_sample_of_log_p_x_given_z_minus_the_kl(model, images):
    torch.manual_seed(2)
    elbo = model.elbo(images)
    torch.manual_seed(2)
    mean, std = model.encoder(images)
    z = mean + std * torch.randn_like(std)
    want = vae.log_bernoulli(model.decoder.logits(z), images) - vae.kl_divergence(mean, std)
    assert elbo.shape == (16,) and torch.allclose(elbo, want)
    torch.manual_seed(2)
    assert model(images.view(-1, 1, 28, 28)).item() == pytest.approx(-want.mean().item())


def test_the_reconstruction_term_alone_passes_gradients_to_the_encoder(model, images, monkeypatch):
    # without the KL, the encoder is reached only through z = mean + std * eps
    monkeypatch.setattr(vae, "kl_divergence", lambda mean, std: torch.zeros(len(mean)))
    model.elbo(images).sum().backward()
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_samples_are_seeded_bernoulli_draws_of_the_decoder_means(model):
    sampled, means = model.sample(2000, torch.Generator().manual_seed(3))
    assert sampled.shape == means.shape == (2000, 1, 28, 28)
    assert set(sampled.unique().tolist()) == {0.0, 1.0}
    assert ((means > 0) & (means < 1)).all()
    assert sampled.mean().item() == pytest.approx(means.mean().item(), abs=0.01)
    again = model.sample(2000, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], sampled) and torch.equal(again[1], means)


def test_an_eval_mode_epoch_measures_the_elbo_and_changes_no_weight(model, images):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = TensorLoader(images.view(-1, 1, 28, 28), batch_size=5)
    before = [p.clone() for p in model.parameters()]
    torch.manual_seed(4)
    elbo = vae.epoch_iter(model.eval(), data, optimizer)
    torch.manual_seed(4)
    with torch.no_grad():
        want = torch.cat([model.elbo(b.view(-1, 784)) for b in data]).mean().item()
    assert elbo == pytest.approx(want, rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not optimizer.state  # no step was taken
    vae.epoch_iter(model.train(), data, optimizer)
    assert not any(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --------------------------------------------------------- the estimate of log p(x)
def test_the_importance_weighted_estimate_is_above_the_elbo_and_tightens_with_k(model):
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(2)  # a sharp decoder: a posterior far from the untrained q(z|x)
        x = model.sample(16, torch.Generator().manual_seed(1))[0].view(-1, 784)
        torch.manual_seed(5)
        elbo = torch.stack([model.elbo(x) for _ in range(100)])
        iw = {
            k: torch.stack([model.log_likelihood(x, k) for _ in range(100)]) for k in (1, 10, 100)
        }
    noise = 4 * (elbo.var() / elbo.numel()).sqrt().item()  # 4 standard errors of a mean
    assert iw[1].mean().item() == pytest.approx(elbo.mean().item(), abs=2 * noise)  # k = 1
    assert elbo.mean() + noise < iw[10].mean() < iw[100].mean() - noise


@pytest.fixture(scope="module")
def one_dimensional():
    """A VAE with z_dim = 1 and a sharp decoder, an image it explains near
    z = 1, and that image's exact log p(x) and posterior mean and std, from
    the integral of p(x|z) p(z) over a grid of z (the rectangle rule)."""
    torch.manual_seed(0)
    model = vae.VAE(hidden_dim=16, z_dim=1).double().eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(2)
        x = torch.bernoulli(model.decoder(torch.ones(1, 1, dtype=F64)))
        z = torch.linspace(-6, 6, 4001, dtype=F64).unsqueeze(1)
        log_joint = vae.log_bernoulli(model.decoder.logits(z), x) + standard_normal(z)
        exact = (log_joint.logsumexp(0) + math.log(z[1, 0] - z[0, 0])).item()
        posterior, z = log_joint.softmax(0), z[:, 0]
        mean = (posterior * z).sum().item()
        std = math.sqrt((posterior * (z - mean) ** 2).sum().item())
    return model, x, exact, mean, std


@pytest.mark.parametrize("proposal, k, tolerance", [("encoder", 20_000, 0.1), ("fit", 1000, 0.01)])
def test_the_estimate_reaches_log_p_x_by_quadrature(one_dimensional, proposal, k, tolerance):
    model, x, exact, mean, std = one_dimensional
    assert std < 0.3  # the posterior is far narrower than the prior: a real test of q
    if proposal == "fit":  # q(z|x) set to the Gaussian of the exact posterior's moments
        model = vae.VAE(hidden_dim=16, z_dim=1).double().eval()
        model.load_state_dict(one_dimensional[0].state_dict())
        with torch.no_grad():
            model.encoder.net[-1].weight.zero_()
            model.encoder.net[-1].bias.copy_(torch.tensor([mean, math.log(std)]))
    torch.manual_seed(6)
    estimate = model.log_likelihood(x, k, chunk=7 * 784).item()  # a running logsumexp
    assert estimate == pytest.approx(exact, abs=tolerance)
    with torch.no_grad():
        assert model.elbo(x.expand(1000, -1)).mean().item() < exact


# ------------------------------------------------------------------- the code
def test_no_file_in_the_repository_uses_torch_distributions():
    pattern = re.compile(r"torch\s*\.\s*distributions|from\s+torch\s+import[^\n]*distributions")
    users = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    if pattern.search(f.read()):
                        users.append(os.path.relpath(os.path.join(folder, name), ROOT))
    assert users == []
