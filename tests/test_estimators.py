"""Question 1.4: the two Monte-Carlo estimators of log p(x), checked against
the exact value, which numerical quadrature gives when z is one-dimensional."""
import json
import math
import os

import pytest
import torch

import a3_vae_template as vae
import experiments.vae_mc_vs_is as mc
from conftest import run_script


@pytest.fixture(scope="module")
def toy():
    """A random VAE with z_dim = 1, an image it explains well near z = 1, and
    the exact log p(x) of that image."""
    torch.manual_seed(0)
    model = vae.VAE(hidden_dim=16, z_dim=1).double().eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(2)  # a sharper decoder: a posterior narrower than the prior
        means = model.decoder(torch.ones(1, 1, dtype=torch.float64))
        x = (torch.rand(1, vae.PIXELS, dtype=torch.float64) < means).double()
        # log of the integral of p(x|z) p(z) dz, by the rectangle rule on a grid
        # fine enough that the error is far below the tolerances used here
        z = torch.linspace(-8, 8, 8001, dtype=torch.float64).unsqueeze(1)
        log_joint = (vae.bernoulli_log_likelihood(model.decoder.logits(z), x)
                     + vae.log_standard_normal(z))
        exact = (torch.logsumexp(log_joint, 0) + math.log(z[1, 0] - z[0, 0])).item()
    return model, x, exact


def nested(proposal):
    """The experiment's estimator: all log-weights, then the nested estimate."""
    return lambda m, x, k: mc.nested_estimates(
        torch.cat(list(m.log_importance_weights(x, k, proposal))), [k])[0]


ESTIMATES = {
    "prior_mc": lambda m, x, k: vae.log_likelihood(m, x, k, "prior"),
    "iw": lambda m, x, k: vae.log_likelihood(m, x, k),
    "nested_prior": nested("prior"),
    "nested_iw": nested("posterior"),
}


@pytest.mark.parametrize("name", ESTIMATES)
def test_many_samples_reach_the_exact_value(toy, name):
    model, x, exact = toy
    torch.manual_seed(1)
    with torch.no_grad():
        estimate = ESTIMATES[name](model, x, 20_000).item()
    assert estimate == pytest.approx(exact, abs=0.1)


@pytest.mark.parametrize("name", ["prior_mc", "iw"])
def test_few_samples_fall_below_on_average(toy, name):
    """Jensen: E[log of a mean of weights] <= log E[weight] = log p(x)."""
    model, x, exact = toy
    torch.manual_seed(2)
    with torch.no_grad():
        estimates = ESTIMATES[name](model, x.expand(2000, -1), 2)
    # the mean falls about 5 nats short; its standard error is about 0.25
    assert estimates.mean().item() < exact - 2


def test_nested_estimates_equal_separate_ones():
    torch.manual_seed(3)
    log_w = torch.randn(1000, 4, dtype=torch.float64) * 30
    ks = mc.sample_counts(1000)
    separate = torch.stack([torch.logsumexp(log_w[:k], 0) - math.log(k) for k in ks])
    assert torch.allclose(mc.nested_estimates(log_w, ks), separate)


def test_sample_counts_are_log_spaced_and_end_at_the_maximum():
    assert mc.sample_counts(10_000) == [1, 3, 10, 30, 100, 300, 1000, 3000, 10_000]
    assert mc.sample_counts(50) == [1, 3, 10, 30, 50]
    assert mc.sample_counts(1) == [1]


# --------------------------------------------------------------- the script
def test_script_end_to_end(data_dir, tmp_path):
    out = str(tmp_path)
    for zdim in ("2", "3"):
        trained = run_script("a3_vae_template.py", "--data_dir", data_dir,
                             "--out_dir", out, "--epochs", "1", "--max_images", "2000",
                             "--iw_samples", "1", "--hidden_dim", "32", "--zdim", zdim,
                             "--quality_samples", "0")
        assert trained.returncode == 0, trained.stderr
    result = run_script("experiments.vae_mc_vs_is", "--data_dir", data_dir, "--out_dir", out,
                        "--zdims", "2", "3", "--max_samples", "30", "--n_images", "10",
                        "--repeats", "2", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert os.path.getsize(tmp_path / "vae_mc_vs_is.png") > 0
    saved = json.loads((tmp_path / "vae_mc_vs_is.json").read_text())
    assert saved["n_images"] == 10 and saved["repeats"] == 2
    assert set(saved["zdims"]) == {"2", "3"}
    for res in saved["zdims"].values():
        assert res["k"] == [1, 3, 10, 30]
        assert math.isfinite(res["elbo"])
        for name in ("prior", "posterior"):
            assert len(res[name]["mean"]) == len(res[name]["std"]) == 4
            assert all(s >= 0 for s in res[name]["std"])
        # the point of the question: sampling from q(z|x) does better
        assert res["posterior"]["mean"][-1] > res["prior"]["mean"][-1]


def test_missing_model_names_the_training_command(tmp_path):
    result = run_script("experiments.vae_mc_vs_is", "--data_dir", str(tmp_path), "--out_dir",
                        str(tmp_path), "--zdims", "7")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "python a3_vae_template.py --zdim 7" in result.stderr


# ------------------------------------------------------ the experiments' bad input
def test_a_file_that_is_not_a_vae_is_refused_in_one_line(data_dir, tmp_path):
    (tmp_path / "vae_z2_model.pt").write_bytes(b"")
    result = run_script("experiments.vae_mc_vs_is", "--data_dir", data_dir,
                        "--out_dir", str(tmp_path), "--zdims", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is not the weights of a VAE with zdim 2" in result.stderr


def test_few_samples_still_plot(data_dir, tmp_path):
    trained = run_script("a3_vae_template.py", "--data_dir", data_dir, "--out_dir", tmp_path,
                         "--epochs", "1", "--max_images", "500", "--iw_samples", "1",
                         "--hidden_dim", "16", "--zdim", "2", "--quality_samples", "0")
    assert trained.returncode == 0, trained.stderr
    result = run_script("experiments.vae_mc_vs_is", "--data_dir", data_dir, "--out_dir",
                        tmp_path, "--zdims", "2", "--max_samples", "3", "--n_images", "5",
                        "--repeats", "1", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "vae_mc_vs_is.png").stat().st_size > 0


def test_recipe_comparison_reports_a_failed_run_in_one_line(data_dir, tmp_path):
    os.symlink(os.path.join(data_dir, "binarized_mnist"), tmp_path / "binarized_mnist")
    result = run_script("experiments.gan_remedy", "--data_dir", tmp_path, "--seeds", "0",
                        "--n_epochs", "1", "--out", tmp_path / "r.json")  # no MNIST/raw
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: the training run with seed 0")
    assert "could not be downloaded" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_recipe_comparison_refuses_repeated_seeds(tmp_path):
    result = run_script("experiments.gan_remedy", "--seeds", "0", "0",
                        "--out", tmp_path / "r.json")
    assert result.returncode == 2 and "--seeds must be distinct" in result.stderr
