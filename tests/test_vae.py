import gzip
import importlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import a3_vae_template as vae
from conftest import ROOT, run_script
from datasets import DataError, bmnist, load_bmnist_split
from datasets.bmnist import parse_amat

bmnist_module = importlib.import_module("datasets.bmnist")  # not the function


# ------------------------------------------------------------------ the maths
def test_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mean = torch.tensor([[0.5, -1.0, 2.0]])
    logvar = torch.tensor([[-1.0, 0.3, 1.2]])
    z = vae.reparametrize(mean.expand(400_000, 3), logvar.expand(400_000, 3))
    mc = (vae.log_normal(z, mean, logvar) - vae.log_standard_normal(z)).mean()
    assert vae.gaussian_kl(mean, logvar).item() == pytest.approx(mc.item(), abs=0.02)


def test_kl_is_zero_only_at_the_prior():
    assert vae.gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0
    assert vae.gaussian_kl(torch.full((1, 4), 0.1), torch.zeros(1, 4)).item() > 0


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


def test_gradients_reach_encoder_through_the_sample():
    torch.manual_seed(0)
    model = vae.VAE(hidden_dim=16, z_dim=3)
    x = torch.randint(0, 2, (4, 1, 28, 28)).float()
    model(x).backward()
    for p in model.encoder.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    # the reconstruction term alone (no KL) must also reach the encoder
    model.zero_grad()
    mean, logvar = model.encoder(x.view(-1, 784))
    z = vae.reparametrize(mean, logvar)
    vae.bernoulli_log_likelihood(model.decoder.logits(z), x.view(-1, 784)).sum().backward()
    assert model.encoder.net[0].weight.grad.abs().sum() > 0


def test_sample_shapes_and_values():
    model = vae.VAE(hidden_dim=16, z_dim=2)
    sampled, means = model.sample(7)
    assert sampled.shape == means.shape == (7, 1, 28, 28)
    assert set(sampled.unique().tolist()) <= {0.0, 1.0}
    assert ((means >= 0) & (means <= 1)).all()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(5, g1)[0], model.sample(5, g2)[0])


def test_iw_bound_above_elbo_and_tightens():
    torch.manual_seed(0)
    model = vae.VAE(hidden_dim=32, z_dim=4)
    x = torch.randint(0, 2, (64, 784)).float()
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x) for _ in range(50)]).mean()
        iw = {k: torch.stack([model.log_likelihood_iw(x, k) for _ in range(5)]).mean()
              for k in (1, 10, 200)}
    assert iw[1].item() == pytest.approx(elbo.item(), abs=0.5)  # k = 1 is the ELBO
    assert elbo < iw[10] < iw[200]


def test_iw_chunking_does_not_change_the_estimate():
    model = vae.VAE(hidden_dim=16, z_dim=3)
    x = torch.randint(0, 2, (8, 784)).float()
    torch.manual_seed(1)
    whole = torch.stack([model.log_likelihood_iw(x, 30, chunk=30) for _ in range(20)])
    chunked = torch.stack([model.log_likelihood_iw(x, 30, chunk=7) for _ in range(20)])
    assert chunked.shape == whole.shape == (20, 8)
    assert chunked.mean().item() == pytest.approx(whole.mean().item(), abs=0.2)


# ------------------------------------------------------------------ the data
def amat(rows, cols=784):
    return ("\n".join(" ".join("1" if (r + c) % 3 == 0 else "0" for c in range(cols))
                      for r in range(rows)) + "\n").encode()


def test_parse_amat_valid():
    data = parse_amat(amat(3), 3, "x")
    assert data.shape == (3, 784) and data.dtype == torch.uint8
    assert data[0, 0] == 1 and data[0, 1] == 0


@pytest.mark.parametrize("raw, message", [
    (amat(3)[:-500], r"image 3 has \d+ values"),  # truncated last line
    (amat(2), "2 images, expected 3"),           # missing rows
    (amat(3, cols=783), "783 values"),           # short rows
    (amat(3).replace(b"1", b"2", 1), "unexpected characters"),
    (amat(3).replace(b"1 0", b"10", 1), "single 0/1 digits"),
    (b"", "no image data"),
])
def test_parse_amat_rejects_malformed(raw, message):
    with pytest.raises(DataError, match=message):
        parse_amat(raw, 3, "x")


def test_truncated_gzip_is_reported(tmp_path):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    good = gzip.compress(amat(10))
    (folder / "binarized_mnist_valid.amat.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_bmnist_split(str(tmp_path), "valid", download=False)


def test_missing_data_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(bmnist_module, "URL", "http://127.0.0.1:9/")
    with pytest.raises(DataError) as err:
        load_bmnist_split(str(tmp_path), "train", download=True)
    message = str(err.value)
    assert "binarized_mnist_train.amat" in message and "127.0.0.1:9" in message
    assert str(tmp_path) in message
    assert not list((tmp_path / "binarized_mnist").glob("*"))  # nothing half-written


def test_real_data_and_corrupt_cache(data_dir, tmp_path):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    shutil.copy(os.path.join(data_dir, "binarized_mnist", "binarized_mnist_valid.amat.gz"),
                folder)
    first = load_bmnist_split(str(tmp_path), "valid", download=False)
    assert first.shape == (10_000, 784)
    assert first.float().mean().item() == pytest.approx(0.1311, abs=1e-4)
    cache = folder / "binarized_mnist_valid.pt"
    assert cache.exists()
    cache.write_bytes(cache.read_bytes()[:1000])  # a truncated cache is rebuilt
    assert torch.equal(load_bmnist_split(str(tmp_path), "valid", download=False), first)


def test_bmnist_loaders(data_dir):
    train, val, test = bmnist(data_dir, batch_size=100)
    assert (len(train), len(val), len(test)) == (500, 100, 100)
    batch = next(iter(train))
    assert batch.shape == (100, 1, 28, 28) and batch.dtype == torch.float32
    assert set(batch.unique().tolist()) == {0.0, 1.0}
    torch.manual_seed(0)
    a = next(iter(train))
    torch.manual_seed(0)
    assert torch.equal(a, next(iter(train)))          # seeded shuffling
    assert not torch.equal(a, next(iter(train)))      # a new order each epoch
    assert torch.equal(next(iter(val)), next(iter(val)))  # no shuffling


# ------------------------------------------------------------------ the CLI
FAST = ["--max_images", "3000", "--iw_samples", "2", "--batch_size", "100"]


def test_cli_end_to_end(data_dir, tmp_path):
    out = tmp_path / "out"
    result = run_script("a3_vae_template.py", "--data_dir", data_dir, "--out_dir",
                        str(out), "--epochs", "2", "--zdim", "2", *FAST)
    assert result.returncode == 0, result.stderr
    names = {"vae_z2_elbo.png", "vae_z2_manifold.png", "vae_z2.pt",
             "vae_z2_metrics.json", "vae_z2_checkpoint.pt"} | {
        f"vae_z2_samples_epoch{e}.png" for e in (0, 1, 2)}
    assert names <= set(os.listdir(out))
    metrics = json.loads((out / "vae_z2_metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["zdim"] == 2
    assert len(metrics["train_elbo"]) == len(metrics["val_elbo"]) == 2
    assert len(metrics["seconds_per_epoch"]) == 2
    assert metrics["train_elbo"][1] > metrics["train_elbo"][0]  # it learns
    # binarized MNIST: any model beats 784 ln 2 = 543 nats only by learning
    assert -300 < metrics["test_elbo"] < -100
    assert metrics["test_nll_iw"] < -metrics["test_elbo"] + 1
    assert metrics["iw_samples"] == 2 and metrics["device"] == "cpu"
    assert "[Epoch 2/2]" in result.stdout
    state = torch.load(out / "vae_z2.pt", weights_only=True)
    assert state["encoder.net.0.weight"].shape == (512, 784)
    quality = metrics["sample_quality"]
    assert quality["images"] == 10000 and len(quality["class_shares"]) == 10
    real = metrics["quality_reference"]["real_frechet_distance"]
    assert quality["frechet_distance"] > real > 0
    assert quality["means_frechet_distance"] > 0
    assert "sample quality: Frechet distance" in result.stdout


def test_quality_score_needs_the_labelled_test_set_unless_skipped(data_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(os.path.join(data_dir, "binarized_mnist"), data / "binarized_mnist")
    flags = ["--data_dir", str(data), "--out_dir", str(tmp_path), "--epochs", "1",
             "--max_images", "500", "--iw_samples", "1", "--hidden_dim", "32"]
    result = run_script("a3_vae_template.py", *flags)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "t10k-images" in result.stderr
    assert not (tmp_path / "vae_z20_checkpoint.pt").exists()  # refused up front
    result = run_script("a3_vae_template.py", *flags, "--quality_samples", "0")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "vae_z20_metrics.json").read_text())
    assert "sample_quality" not in metrics


def test_kl_warmup_changes_the_loss_but_not_the_reported_elbo():
    torch.manual_seed(0)
    model = vae.VAE(hidden_dim=16, z_dim=3).eval()
    x = torch.bernoulli(torch.full((8, 784), 0.3))
    torch.manual_seed(1)
    recon, kl = model.elbo_terms(x)
    torch.manual_seed(1)
    assert torch.allclose(model(x, kl_weight=0.25), -(recon - 0.25 * kl).mean())
    elbos = []
    for weight in (0.25, 1.0):
        torch.manual_seed(2)
        elbos.append(vae.epoch_iter(model, [x], None, kl_weight=weight))
    assert elbos[0] == pytest.approx(elbos[1])
    torch.manual_seed(2)
    assert elbos[1] == pytest.approx(model.elbo(x).mean().item())


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "-1"], "--epochs: must be >= 1"),
    (["--zdim", "0"], "--zdim: must be >= 1"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--lr", "nan"], "--lr: must be > 0"),
    (["--batch_size", "0"], "--batch_size: must be >= 1"),
    (["--iw_samples", "0"], "--iw_samples: must be >= 1"),
    (["--hidden_dim", "abc"], "'abc' is not a valid int"),
    (["--out_dir", "/proc/version/x"], "--out_dir /proc/version/x: cannot write"),
])
def test_bad_flags_exit_2(flags, message, tmp_path):
    result = run_script("a3_vae_template.py", "--out_dir", str(tmp_path), *flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_exits_with_one_message(tmp_path):
    env_free = ["--data_dir", str(tmp_path / "nowhere"), "--out_dir", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-c", "import sys, datasets, a3_vae_template as v;"
         "sys.modules['datasets.bmnist'].URL = 'http://127.0.0.1:9/';"
         "v.main(sys.argv[1:])", *env_free],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: binarized MNIST is not in")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "vae_z20_checkpoint.pt").exists()


# -------------------------------------------------- checkpoints and resume
def _metrics_without_timing(out):
    metrics = json.loads((out / "vae_z20_metrics.json").read_text())
    metrics.pop("seconds_per_epoch")
    metrics.pop("test_seconds")
    return metrics


def test_kill_and_resume_matches_uninterrupted_run(data_dir, tmp_path):
    flags = ["--data_dir", data_dir, "--epochs", "6", "--max_images", "10000",
             "--iw_samples", "3", "--hidden_dim", "64"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_script("a3_vae_template.py", *flags, "--out_dir", str(full)).returncode == 0

    proc = subprocess.Popen([sys.executable, "a3_vae_template.py", *flags, "--out_dir",
                             str(cut)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # the checkpoint is written right after this line
        if line.startswith("[Epoch 2/6]"):
            break
    ckpt = cut / "vae_z20_checkpoint.pt"
    deadline = time.time() + 60
    while time.time() < deadline:
        if len(torch.load(ckpt, weights_only=False)["history"]["train_elbo"]) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert not (cut / "vae_z20_metrics.json").exists()

    resumed = run_script("a3_vae_template.py", *flags, "--out_dir", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout
    assert _metrics_without_timing(cut) == _metrics_without_timing(full)
    for epoch in (3, 6):
        name = f"vae_z20_samples_epoch{epoch}.png"
        assert (cut / name).read_bytes() == (full / name).read_bytes()


def test_resume_without_checkpoint(tmp_path):
    result = run_script("a3_vae_template.py", "--out_dir", str(tmp_path), "--resume",
                        "--data_dir", os.environ.get("DATA_DIR", "./data"))
    assert result.returncode == 1
    assert "--resume: no checkpoint at" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_refuses_other_configuration(data_dir, tmp_path):
    flags = ["--data_dir", data_dir, "--out_dir", str(tmp_path), "--epochs", "1",
             "--max_images", "500", "--iw_samples", "1", "--hidden_dim", "32"]
    assert run_script("a3_vae_template.py", *flags, "--zdim", "20").returncode == 0
    os.rename(tmp_path / "vae_z20_checkpoint.pt", tmp_path / "vae_z5_checkpoint.pt")
    result = run_script("a3_vae_template.py", *flags, "--zdim", "5", "--resume")
    assert result.returncode == 1
    assert "zdim: checkpoint 20 vs now 5" in result.stderr
    (tmp_path / "vae_z5_checkpoint.pt").write_bytes(b"not a checkpoint")
    result = run_script("a3_vae_template.py", *flags, "--zdim", "5", "--resume")
    assert result.returncode == 1 and "not a readable checkpoint" in result.stderr


def test_sigint_stops_cleanly_with_resume_hint(data_dir, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "a3_vae_template.py", "--data_dir", data_dir, "--out_dir",
         str(tmp_path), "--epochs", "50", "--max_images", "5000", "--hidden_dim", "64"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("[Epoch 1/50]"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and "holds epoch" in last
    assert last.endswith("--resume")
    assert "Traceback" not in err
    assert not (tmp_path / "vae_z20_metrics.json").exists()


def test_non_finite_loss_stops_and_keeps_last_checkpoint(data_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    elbo_terms = vae.VAE.elbo_terms

    def poisoned(self, x):
        calls["n"] += 1
        recon, kl = elbo_terms(self, x)
        return (recon * math.nan, kl) if calls["n"] == 108 else (recon, kl)

    monkeypatch.setattr(vae.VAE, "elbo_terms", poisoned)
    argv = ["--data_dir", data_dir, "--out_dir", str(tmp_path), "--epochs", "3",
            "--max_images", "500", "--batch_size", "100", "--hidden_dim", "32"]
    with pytest.raises(SystemExit) as stop:
        vae.main(argv)
    # 5 training + 100 validation batches make epoch 1; call 108 is in epoch 2
    assert "in epoch 2, iteration 3" in str(stop.value.code)
    ckpt = torch.load(tmp_path / "vae_z20_checkpoint.pt", weights_only=False)
    assert len(ckpt["history"]["train_elbo"]) == 1
    assert not (tmp_path / "vae_z20_metrics.json").exists()


# the scripted epochs take no optimizer step, which torch warns about
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_keep_best_tests_the_epoch_with_the_best_validation_elbo(data_dir, tmp_path,
                                                                  monkeypatch):
    val_curve = iter([-100.0, -90.0, -95.0])

    def scripted_epoch(model, data, optimizer, stop=None, epoch=0, kl_weight=1.0):
        # mark the weights with the epoch so that the tested ones are known
        with torch.no_grad():
            model.decoder.net[-1].bias.fill_(epoch)
        return -99.0, next(val_curve)

    monkeypatch.setattr(vae, "run_epoch", scripted_epoch)
    vae.main(["--data_dir", data_dir, "--out_dir", str(tmp_path), "--epochs", "3",
              "--max_images", "500", "--iw_samples", "1", "--hidden_dim", "32",
              "--keep_best", "--quality_samples", "0"])
    metrics = json.loads((tmp_path / "vae_z20_metrics.json").read_text())
    assert metrics["tested_epoch"] == 2 and metrics["keep_best"] is True
    state = torch.load(tmp_path / "vae_z20.pt", weights_only=True)
    assert torch.all(state["decoder.net.4.bias"] == 2)
