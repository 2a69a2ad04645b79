"""The VAE's maths and model behaviour: each test states a property of the
ELBO, its terms or the estimators of log p(x) that the code must have."""
import json
import math

import pytest
import torch

import a3_vae_template as vae


# ------------------------------------------------------------- the ELBO's terms
def test_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mean = torch.tensor([[0.5, -1.0, 2.0]])
    logvar = torch.tensor([[-1.0, 0.3, 1.2]])
    z = vae.reparametrize(mean, logvar, 400_000)
    mc = (vae.log_normal(z, mean, logvar) - vae.log_standard_normal(z)).mean()
    assert vae.gaussian_kl(mean, logvar).item() == pytest.approx(mc.item(), abs=0.02)


def test_kl_is_zero_only_at_the_prior():
    assert vae.gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0
    assert vae.gaussian_kl(torch.full((1, 4), 0.1), torch.zeros(1, 4)).item() > 0
    assert vae.gaussian_kl(torch.zeros(1, 4), torch.full((1, 4), 0.1)).item() > 0


def test_bernoulli_log_likelihood_matches_direct_formula():
    torch.manual_seed(0)
    logits = torch.randn(5, 784, dtype=torch.float64) * 3
    x = torch.randint(0, 2, (5, 784)).double()
    p = torch.sigmoid(logits)
    direct = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1)
    assert torch.allclose(vae.bernoulli_log_likelihood(logits, x), direct)


def test_bernoulli_log_likelihood_extreme_logits():
    logits = torch.tensor([[-200.0, -40.0, 40.0, 200.0]] * 2, requires_grad=True)
    x = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    ll = vae.bernoulli_log_likelihood(logits, x)
    assert torch.isfinite(ll).all()
    assert ll[0].item() == pytest.approx(0.0, abs=1e-6)  # confident and right
    assert ll[1].item() == pytest.approx(-480.0, rel=1e-6)  # confident and wrong
    ll.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # d/dl [x l - softplus(l)] = x - sigmoid(l)
    assert torch.allclose(logits.grad, x - torch.sigmoid(logits.detach()))


def test_bernoulli_log_likelihood_broadcasts_samples_against_one_batch():
    torch.manual_seed(0)
    logits, x = torch.randn(3, 4, 784), torch.randint(0, 2, (4, 784)).float()
    each = torch.stack([vae.bernoulli_log_likelihood(l, x) for l in logits])
    assert torch.allclose(vae.bernoulli_log_likelihood(logits, x), each)


def test_log_normal_is_finite_for_a_tiny_variance():
    mean, logvar = torch.zeros(1, 3), torch.full((1, 3), -150.0)  # sigma = e^-75
    z = vae.reparametrize(mean, logvar)
    assert torch.isfinite(vae.log_normal(z, mean, logvar)).all()


def test_reparametrize_draws_from_the_gaussian():
    torch.manual_seed(0)
    mean, logvar = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, math.log(4.0)]])
    z = vae.reparametrize(mean, logvar, 200_000)
    assert z.shape == (200_000, 1, 2)
    assert torch.allclose(z.mean(0), mean, atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([[1.0, 2.0]]), atol=0.02)
    assert vae.reparametrize(mean, logvar).shape == mean.shape


# ------------------------------------------------------------------ the model
def test_forward_is_the_negative_average_elbo():
    torch.manual_seed(0)
    model = vae.VAE(hidden_dim=16, z_dim=3)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    torch.manual_seed(1)
    loss = model(x)
    torch.manual_seed(1)
    assert loss.item() == pytest.approx(-model.elbo(x.view(-1, 784)).mean().item())


def test_kl_warmup_scales_the_kl_gradient_but_not_the_value():
    torch.manual_seed(0)
    model = vae.VAE(hidden_dim=16, z_dim=3).double()
    x = torch.bernoulli(torch.full((8, 784), 0.3, dtype=torch.float64))

    def gradient_and_value(kl_weight, objective=None):
        model.zero_grad()
        torch.manual_seed(1)
        value = model(x, kl_weight) if objective is None else objective()
        value.backward()
        return [p.grad.clone() for p in model.parameters()], value.item()

    def warmup_objective():  # -(recon - 0.25 KL), written out
        mean, logvar = model.encoder(x)
        z = vae.reparametrize(mean, logvar)
        recon = vae.bernoulli_log_likelihood(model.decoder.logits(z), x)
        return -(recon - 0.25 * vae.gaussian_kl(mean, logvar)).mean()

    grads, value = gradient_and_value(0.25)
    want_grads, _ = gradient_and_value(None, warmup_objective)
    _, elbo_value = gradient_and_value(1.0)
    assert value == pytest.approx(elbo_value)
    for g, w in zip(grads, want_grads):
        assert torch.allclose(g, w)


def test_gradients_reach_encoder_through_the_sample():
    torch.manual_seed(0)
    model = vae.VAE(hidden_dim=16, z_dim=3)
    x = torch.randint(0, 2, (4, 784)).float()
    mean, logvar = model.encoder(x)
    z = vae.reparametrize(mean, logvar)
    # the reconstruction term alone (no KL) must reach every encoder weight
    vae.bernoulli_log_likelihood(model.decoder.logits(z), x).sum().backward()
    for p in model.encoder.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_sample_shapes_values_and_seeding():
    model = vae.VAE(hidden_dim=16, z_dim=2)
    sampled, means = model.sample(7)
    assert sampled.shape == means.shape == (7, 1, 28, 28)
    assert set(sampled.unique().tolist()) <= {0.0, 1.0}
    assert ((means >= 0) & (means <= 1)).all()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(5, g1)[0], model.sample(5, g2)[0])


def test_class_defaults_equal_the_flag_defaults():
    flags = vae.build_parser().parse_args([])
    model = vae.VAE()
    assert model.z_dim == flags.zdim
    assert model.encoder(torch.zeros(1, 784))[0].shape == (1, flags.zdim)
    hidden = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert hidden.count(flags.hidden_dim) == 4


# ------------------------------------------------------------ log p(x) estimates
@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return vae.VAE(hidden_dim=32, z_dim=4).eval(), torch.randint(0, 2, (64, 784)).float()


def test_iw_bound_above_elbo_and_tightens(small_model):
    model, x = small_model
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x) for _ in range(50)]).mean()
        iw = {k: torch.stack([vae.log_likelihood(model, x, k) for _ in range(5)]).mean()
              for k in (1, 10, 200)}
    assert iw[1].item() == pytest.approx(elbo.item(), abs=0.5)  # k = 1 is the ELBO
    assert elbo < iw[10] < iw[200]


def test_chunking_does_not_change_the_estimate(small_model, monkeypatch):
    model, x = small_model
    torch.manual_seed(1)
    whole = torch.stack([vae.log_likelihood(model, x[:8], 30) for _ in range(40)])
    monkeypatch.setattr(vae, "CHUNK_LOGITS", 7 * 8 * 784)  # chunks of 7 samples
    assert len(list(model.log_importance_weights(x[:8], 30))) == 5
    chunked = torch.stack([vae.log_likelihood(model, x[:8], 30) for _ in range(40)])
    assert chunked.mean().item() == pytest.approx(whole.mean().item(), abs=0.2)


def test_prior_weights_are_the_decoder_likelihood_of_shared_samples(small_model):
    model, x = small_model
    torch.manual_seed(2)
    (log_w,) = model.log_importance_weights(x, 5, "prior")
    torch.manual_seed(2)
    z = torch.randn(5, model.z_dim)
    logits = model.decoder.logits(z)
    direct = vae.bernoulli_log_likelihood(logits.unsqueeze(1), x)
    assert log_w.shape == (5, len(x))
    assert torch.allclose(log_w, direct, atol=1e-3)


def test_progress_is_reported_for_every_pair(small_model):
    model, x = small_model
    seen = []
    vae.log_likelihood(model, x, 100, progress=seen.append)
    assert sum(seen) == 100 * len(x)


def test_progress_lines_at_every_tenth_and_every_minute(monkeypatch, capsys):
    clock = iter([0.0, 1.0, 2.0, 70.0, 71.0])
    monkeypatch.setattr(vae.time, "perf_counter", lambda: next(clock))
    progress = vae.progress_printer(100)
    progress(5)    # 1 s: 5 %, no line
    progress(10)   # 2 s: 15 %, a line (first tenth)
    progress(1)    # 70 s: 16 %, a line (a minute)
    progress(84)   # 71 s: done
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  15% after 2 s", "  16% after 70 s", "  100% after 71 s"]


def test_manifold_grid_is_the_normal_ppf_of_evenly_spaced_points(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(vae.figures, "save_png", lambda images, *a, **k: seen.append(images))
    model = vae.VAE(hidden_dim=16, z_dim=2)
    calls = []
    decoder_forward = model.decoder.forward
    model.decoder.forward = lambda z: calls.append(z) or decoder_forward(z)
    vae.save_manifold(model, tmp_path / "m.png", n=4)
    z = calls[0]
    assert z.shape == (16, 2) and seen[0].shape == (16, 1, 28, 28)
    ppf = torch.tensor([-1.1503, -0.3186, 0.3186, 1.1503])  # norm.ppf(1/8, 3/8, ...)
    assert torch.allclose(z[:4, 0], ppf, atol=1e-4)  # z1 grows to the right
    assert torch.allclose(z[::4, 1], ppf.flip(0), atol=1e-4)  # z2 grows upwards


def test_keep_best_tests_the_epoch_with_the_best_validation_elbo(data_dir, tmp_path,
                                                                 monkeypatch):
    val_curve = iter([-100.0, -90.0, -95.0])
    epoch = iter([1, 2, 3])

    def scripted_epoch(model, data, optimizer, kl_weight=1.0, bf16=False):
        # mark every weight with the epoch (small: the model must stay finite)
        mark = next(epoch) * 1e-3
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(mark)
        optimizer.step()
        return -99.0, next(val_curve)

    monkeypatch.setattr(vae, "run_epoch", scripted_epoch)
    status = vae.main(["--data_dir", data_dir, "--out_dir", str(tmp_path), "--epochs", "3",
                       "--max_images", "500", "--iw_samples", "1", "--hidden_dim", "32",
                       "--keep_best", "--quality_samples", "0"])
    assert status == 0
    metrics = json.loads((tmp_path / "vae_z20_metrics.json").read_text())
    assert metrics["tested_epoch"] == 2 and metrics["keep_best"] is True
    state = torch.load(tmp_path / "vae_z20_model.pt", weights_only=True)
    assert all(torch.all(v == 2e-3) for v in state.values())


def test_bf16_training_changes_the_products_but_not_the_result(data_dir):
    from datasets import TensorLoader, load_bmnist_split
    train = load_bmnist_split(data_dir, "train")[:3000].float()
    valid = TensorLoader(load_bmnist_split(data_dir, "valid")[:1000].float(), 500)
    elbos = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = vae.VAE(hidden_dim=64, z_dim=5)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(3):
            train_elbo, val_elbo = vae.run_epoch(
                model, (TensorLoader(train, 100, shuffle=True), valid), optimizer, bf16=bf16)
        elbos[bf16] = train_elbo, val_elbo
    assert elbos[True][0] != elbos[False][0]  # bfloat16 products took another path
    assert elbos[True][1] == pytest.approx(elbos[False][1], abs=1.0)  # to the same ELBO
