"""Tests of a3_gan_template.py: losses, models, one training step, the
interpolation helper, flag checks, and end-to-end runs of the script
(outputs, missing data, resume after kill -9, Ctrl-C)."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import a3_gan_template as gan
from conftest import ROOT, run_script

SCRIPT = "a3_gan_template.py"
# 1920 images = 30 batches of 64: three epochs take a few seconds on a CPU.
SHORT_RUN = ["--dataset", "bmnist", "--max_images", "1920", "--n_epochs", "3",
             "--save_interval", "25", "--device", "cpu", "--seed", "7"]
TOTAL_ITERS = 90
TIMING_KEYS = {"seconds_per_epoch"}


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_run():
    """The script runs below get one torch thread each: on a small, shared
    CPU, several threads per process spin against each other and make a
    seconds-long run take minutes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


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
    assert stats.shape == (4,) and torch.isfinite(stats).all()
    assert 0 < stats[2] < 1 and 0 < stats[3] < 1
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


def test_pick_pair_chooses_confident_digits_of_different_classes():
    labels = torch.tensor([3, 3, 5, 1])
    confidence = torch.tensor([0.99, 0.98, 0.7, 0.9])
    assert gan.pick_pair(labels, confidence) == (0, 3)


# -------------------------------------------------------------------- flags
@pytest.mark.parametrize("flags, message", [
    (["--n_epochs", "0"], "--n_epochs"),
    (["--lr", "-1"], "--lr"),
    (["--device", "tpu"], "--device"),
    (["--dataset", "foo"], "--dataset"),
    (["--d_dropout", "1.5"], "--d_dropout"),
])
def test_bad_flags_exit_2(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gan.main([*flags, "--out_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unwritable_out_dir_exits_2(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        gan.main(["--out_dir", str(blocker / "out")])
    assert exit_info.value.code == 2
    assert "--out_dir" in capsys.readouterr().err


# ---------------------------------------------------------- end to end runs
def test_missing_labelled_test_set_is_one_clear_error(data_dir, tmp_path):
    # Training data present, the labelled MNIST test set absent: refused
    # before training, without a traceback.
    os.symlink(os.path.join(data_dir, "binarized_mnist"),
               tmp_path / "binarized_mnist")
    result = run_script(SCRIPT, *SHORT_RUN, "--data_dir", str(tmp_path),
                        "--out_dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "t10k-images" in lines[0]


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    """One uninterrupted short run, shared by the output and resume tests."""
    out = tmp_path_factory.mktemp("gan_reference")
    result = run_script(SCRIPT, *SHORT_RUN, "--data_dir", data_dir,
                        "--out_dir", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_cli_run_writes_every_output(reference_run):
    out, result = reference_run
    epoch_lines = [l for l in result.stdout.splitlines() if l.startswith("epoch")]
    assert len(epoch_lines) == 3 and "D(G(z))" in epoch_lines[0]
    for n in (0, 25, 45, 50, 75, 90):  # save_interval, halfway, end
        with Image.open(out / f"gan_samples_iter{n}.png") as img:
            assert img.size == (5 * 28 + 6 * 2, 5 * 28 + 6 * 2)
    with Image.open(out / "gan_interpolation.png") as img:
        assert img.size == (9 * 28 + 10 * 2, 28 + 2 * 2)
    for name in ("gan_losses.png", "gan_generator.pt", "gan_discriminator.pt",
                 "gan_checkpoint.pt"):
        assert (out / name).stat().st_size > 0
    assert all(name.startswith("gan_") for name in os.listdir(out))

    generator = gan.Generator(100)
    generator.load_state_dict(torch.load(out / "gan_generator.pt"))
    metrics = json.loads((out / "gan_metrics.json").read_text())
    assert metrics["dataset"] == "bmnist" and metrics["n_epochs"] == 3
    assert metrics["device"] == "cpu" and metrics["iterations"] == TOTAL_ITERS
    for key in ("loss_D", "loss_G", "D_x", "D_G_z", "seconds_per_epoch"):
        assert len(metrics[key]) == 3
    assert len(metrics["class_shares"]) == 10
    assert sum(metrics["class_shares"]) == pytest.approx(1.0)
    quality = metrics["quality_over_training"]
    assert quality["iteration"] == [0, 25, 45, 50, 75, 90]
    assert all(d > 0 for d in quality["frechet_distance"])
    assert metrics["frechet_distance"] == quality["frechet_distance"][-1]
    assert metrics["images"] == 10000
    assert 0 < metrics["quality_reference"]["real_frechet_distance"] < 10
    assert (out / "gan_quality.png").stat().st_size > 0
    pair = metrics["interpolation"]
    assert pair["labels"][0] != pair["labels"][1]
    assert all(0 < c <= 1 for c in pair["confidences"])


def test_resume_without_checkpoint_is_refused(data_dir, tmp_path):
    result = run_script(SCRIPT, *SHORT_RUN, "--data_dir", data_dir,
                        "--out_dir", str(tmp_path), "--resume")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no checkpoint" in result.stderr


def test_resume_with_other_settings_is_refused(reference_run, data_dir,
                                               tmp_path):
    out, _ = reference_run
    (tmp_path / "gan_checkpoint.pt").write_bytes(
        (out / "gan_checkpoint.pt").read_bytes())
    result = run_script(SCRIPT, *SHORT_RUN, "--latent_dim", "20",
                        "--data_dir", data_dir, "--out_dir", str(tmp_path),
                        "--resume")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "latent_dim" in result.stderr


def start(args):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, SCRIPT), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)


def wait_for_epoch_line(process):
    """Block until the script reports a finished epoch; by then the
    checkpoint of that epoch is on disk (it is written before the line)."""
    for line in process.stdout:
        if line.startswith("epoch "):
            return line
    raise AssertionError(f"no epoch finished: {process.communicate()[1]}")


def test_kill_and_resume_matches_uninterrupted_run(reference_run, data_dir,
                                                   tmp_path):
    ref, _ = reference_run
    args = [*SHORT_RUN, "--data_dir", data_dir, "--out_dir", str(tmp_path)]
    process = start(args)
    wait_for_epoch_line(process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    epoch = torch.load(tmp_path / "gan_checkpoint.pt", weights_only=False)["epoch"]
    assert 1 <= epoch < 3, "the kill came too late to test resuming"
    assert not (tmp_path / "gan_metrics.json").exists()

    result = run_script(SCRIPT, *args, "--resume")
    assert result.returncode == 0, result.stderr

    resumed = json.loads((tmp_path / "gan_metrics.json").read_text())
    expected = json.loads((ref / "gan_metrics.json").read_text())
    for key in TIMING_KEYS:
        assert len(resumed.pop(key)) == len(expected.pop(key))
    assert resumed == expected
    for name in (f"gan_samples_iter{TOTAL_ITERS}.png", "gan_interpolation.png"):
        assert (tmp_path / name).read_bytes() == (ref / name).read_bytes(), name


def test_ctrl_c_stops_with_a_resume_hint(data_dir, tmp_path):
    args = [*SHORT_RUN, "--n_epochs", "100", "--data_dir", data_dir,
            "--out_dir", str(tmp_path)]
    process = start(args)
    wait_for_epoch_line(process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = stdout.strip().splitlines()
    hint = lines[-1]
    assert not hint.startswith("epoch ") and "--resume" in hint
    held = torch.load(tmp_path / "gan_checkpoint.pt", weights_only=False)["epoch"]
    assert f"holds epoch {held}" in hint
    # wait_for_epoch_line consumed the first epoch line; the others follow,
    # then the hint alone.
    assert len(lines) == held


def test_label_smoothing_changes_only_the_real_target():
    real = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    fake = torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64)
    expected = (F.binary_cross_entropy_with_logits(real, torch.full_like(real, 0.9))
                - torch.log(1 - torch.sigmoid(fake)).mean())
    assert torch.allclose(gan.discriminator_loss(real, fake, 0.9), expected)


def test_stray_pixels_counts_isolated_lit_pixels():
    images = -torch.ones(2, 1, 28, 28)
    images[0, 0, 5, 5] = 1            # alone: counted
    images[1, 0, 10, 10:13] = 1       # a short stroke: not counted
    assert gan.stray_pixels(images) == pytest.approx(0.5)


def test_non_finite_loss_names_epoch_and_iteration():
    stats = torch.zeros(5, 4)
    gan.check_finite(stats, epoch=2, first_iteration=100)  # all finite: fine
    stats[3, 1] = float("nan")
    with pytest.raises(gan.utils.TrainingError, match="epoch 2 at iteration 104"):
        gan.check_finite(stats, epoch=2, first_iteration=100)


def test_pick_pair_survives_a_collapsed_generator():
    a, b = gan.pick_pair(torch.tensor([4, 4, 4]), torch.tensor([0.5, 0.9, 0.7]))
    assert (a, b) == (1, 2)
