"""What a user sees from both scripts: outputs, bad input, resume after
kill -9, Ctrl-C, divergence, a hostile checkpoint, earlier results, a second
run on the same files, a full disk. The two scripts share one run harness,
so most tests run once per script. Each test named in docs/harness.md's
bad-input table is that table's row."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import a3_gan_template as gan
import a3_vae_template as vae
from conftest import ROOT, run_script, start_script

SCRIPTS = {
    "vae": {"module": vae, "file": "a3_vae_template.py", "name": "vae_z20",
            "fast": ["--max_images", "2000", "--batch_size", "100", "--hidden_dim", "64",
                     "--iw_samples", "2", "--quality_samples", "0", "--seed", "3"],
            "epochs": "--epochs"},
    "gan": {"module": gan, "file": "a3_gan_template.py", "name": "gan",
            "fast": ["--max_images", "1920", "--save_interval", "25", "--quality_samples",
                     "0", "--seed", "7"],
            "epochs": "--n_epochs"},
}


@pytest.fixture(params=SCRIPTS)
def script(request):
    return SCRIPTS[request.param]


def flags(script, data_dir, out, epochs=3, *extra):
    return [*script["fast"], script["epochs"], str(epochs), "--data_dir", data_dir,
            "--out_dir", str(out), *extra]


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def checkpoint_epochs(script, out):
    ckpt = torch.load(out / f"{script['name']}_checkpoint.pt", weights_only=True)
    return ckpt["epochs_done"]


def wait_for_line(process, prefix):
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line {prefix!r}: {process.communicate()[1]}")


# ------------------------------------------------------------------ outputs
def test_vae_run_writes_every_output(data_dir, tmp_path):
    result = run_script(SCRIPTS["vae"]["file"], *flags(SCRIPTS["vae"], data_dir, tmp_path, 2),
                        "--zdim", "2", "--max_images", "60000", "--quality_samples", "200")
    assert result.returncode == 0, result.stderr
    assert set(os.listdir(tmp_path)) == {
        "vae_z2_elbo.png", "vae_z2_manifold.png", "vae_z2_model.pt", "vae_z2_metrics.json",
        "vae_z2_checkpoint.pt", "vae_z2_run.lock",
        *(f"vae_z2_samples_epoch{e}.png" for e in (0, 1, 2))}
    metrics = json.loads((tmp_path / "vae_z2_metrics.json").read_text())
    assert metrics["train_images"] == 50_000  # --max_images beyond the data
    assert len(metrics["train_elbo"]) == len(metrics["val_elbo"]) == 2
    assert metrics["train_elbo"][1] > metrics["train_elbo"][0]  # it learns
    # before any update: a decoder near p = 1/2 costs 784 ln 2 = 543 nats, plus a small KL
    assert -560 < metrics["val_elbo_epoch0"] < -543
    # binarized MNIST: a model beats 784 ln 2 = 543 nats only by learning
    assert -250 < metrics["test_elbo"] < -100
    assert metrics["test_nll_iw"] < -metrics["test_elbo"] + 1
    assert metrics["code"]["files"] == ["a3_vae_template.py", "datasets/__init__.py",
                                        "datasets/bmnist.py", "datasets/mnist.py",
                                        "figures.py", "sample_quality.py", "utils.py"]
    quality = metrics["sample_quality"]
    assert quality["images"] == 200 and len(quality["class_shares"]) == 10
    assert quality["frechet_distance"] > metrics["quality_reference"]["real_frechet_distance"]
    assert "epoch 2/2  train_elbo " in result.stdout


def test_gan_run_writes_every_output(data_dir, tmp_path):
    result = run_script(SCRIPTS["gan"]["file"], *flags(SCRIPTS["gan"], data_dir, tmp_path),
                        "--quality_samples", "200", "--quality_interval", "50")
    assert result.returncode == 0, result.stderr
    saves = (0, 25, 45, 50, 75, 90)  # every save_interval, halfway, the end
    assert set(os.listdir(tmp_path)) == {
        "gan_losses.png", "gan_quality.png", "gan_interpolation.png", "gan_generator.pt",
        "gan_discriminator.pt", "gan_metrics.json", "gan_checkpoint.pt", "gan_run.lock",
        *(f"gan_samples_iter{i}.png" for i in saves)}
    metrics = json.loads((tmp_path / "gan_metrics.json").read_text())
    assert metrics["dataset"] == "mnist" and metrics["iterations"] == 90
    assert all(len(metrics[k]) == 3 for k in (*gan.CURVES, "seconds_per_epoch"))
    # scored: the first, every quality_interval, halfway and the last save point
    assert metrics["quality_over_training"]["iteration"] == [0, 45, 50, 90]
    assert metrics["images"] == 200
    # 3 epochs of a GAN: the two-sample test tells its digits from real ones
    assert metrics["two_sample_accuracy"] > metrics["quality_reference"]["real_two_sample_accuracy"]
    assert len(metrics["last_iterate_over_training"]["two_sample_accuracy"]) == 4
    rows = metrics["interpolation"]["rows"]  # fewer when few class pairs are clear
    assert 1 <= len(rows) <= gan.INTERPOLATIONS
    assert all(len(row["labels_along_path"]) == 9 for row in rows)
    assert "epoch 3/3  loss_D " in result.stdout


def test_scoring_does_not_change_the_training_trajectory(data_dir, tmp_path):
    curves = []
    for quality in ("0", "200"):
        out = tmp_path / quality
        result = run_script(SCRIPTS["vae"]["file"],
                            *flags(SCRIPTS["vae"], data_dir, out, 2, "--quality_samples", quality))
        assert result.returncode == 0, result.stderr
        curves.append(json.loads((out / "vae_z20_metrics.json").read_text())["train_elbo"])
    assert curves[0] == curves[1]


# ---------------------------------------------------------------- bad input
BAD_FLAGS = [
    ("both", ["--lr", "0"], "--lr: must be > 0.0, got 0"),
    ("both", ["--lr", "nan"], "--lr: must be > 0.0, got nan"),
    ("both", ["--seed", str(2 ** 32)], "--seed: must be in [0, 4294967295]"),
    ("both", ["--quality_samples", "1"], "must be 0 (skip) or in [129, "),
    ("both", ["--quality_samples", "100000"], "must be 0 (skip) or in [129, "),
    ("both", ["--device", "tpu"], "'tpu' is not one of auto, cpu, cuda"),
    ("both", ["--resume", "--overwrite"], "not allowed with argument"),
    ("both", ["--over"], "unrecognized arguments: --over"),
    ("vae", ["--epochs", "-1"], "--epochs: must be >= 1, got -1"),
    ("vae", ["--zdim", "0"], "--zdim: must be >= 1, got 0"),
    ("vae", ["--iw_samples", "0"], "--iw_samples: must be >= 1, got 0"),
    ("vae", ["--hidden_dim", "abc"], "'abc' is not a valid int"),
    ("vae", ["--zdim", "1" + "0" * 20], "--zdim: must be below 2**63"),
    ("gan", ["--batch_size", "1"], "--batch_size: must be >= 2, got 1"),
    ("gan", ["--d_dropout", "1"], "--d_dropout: must be in [0, 1)"),
    ("gan", ["--real_label", "0.4"], "--real_label: must be in (0.5, 1]"),
    ("gan", ["--ema_decay", "1"], "--ema_decay: must be in [0, 1)"),
    ("gan", ["--ema_decay", "nan"], "--ema_decay: must be in [0, 1)"),
    ("gan", ["--dataset", "foo"], "invalid choice: 'foo'"),
]


@pytest.mark.parametrize("which, bad, message", [
    (w, b, m) for which, b, m in BAD_FLAGS for w in (("vae", "gan") if which == "both" else (which,))])
def test_bad_flags_exit_2_before_any_work(which, bad, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        SCRIPTS[which]["module"].main([*bad, "--out_dir", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("which, size, lower", [
    ("vae", ["--hidden_dim", "10000000"], "--hidden_dim, --zdim or --batch_size"),
    ("gan", ["--latent_dim", "100000000000"], "--quality_samples or --latent_dim")])
def test_sizes_beyond_memory_are_one_line_naming_the_flags(which, size, lower, data_dir,
                                                           tmp_path, capsys):
    status = SCRIPTS[which]["module"].main(flags(SCRIPTS[which], data_dir, tmp_path, 1, *size))
    assert one_error_line(status, capsys) == f"error: out of memory; lower {lower}\n"


def test_help_shows_the_defaults(script, capsys):
    with pytest.raises(SystemExit):
        script["module"].main(["--help"])
    assert "(default: 0.9)" in capsys.readouterr().out or script["name"] != "gan"


def test_out_dir_under_a_file_is_one_error_line(script, data_dir, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    status = script["module"].main(flags(script, data_dir, tmp_path / "a_file" / "out"))
    assert "a_file/out: Not a directory" in one_error_line(status, capsys)


def one_error_line(status, capsys):
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    return err


def test_missing_data_without_network_is_one_clear_error(script, tmp_path, monkeypatch,
                                                         capsys):
    from torchvision.datasets import MNIST
    monkeypatch.setattr(sys.modules["datasets.bmnist"], "URL", "http://127.0.0.1:9/")
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    for data_dir in (tmp_path / "empty", "/proc/no/such/folder"):  # the latter: unwritable
        status = script["module"].main(["--data_dir", str(data_dir),
                                        "--out_dir", str(tmp_path / "out")])
        err = one_error_line(status, capsys)
        assert "could not be downloaded" in err or "download from" in err
    assert not os.path.exists(tmp_path / "out" / f"{script['name']}_checkpoint.pt")


def test_data_dir_that_is_a_file_is_one_clear_error(script, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    status = script["module"].main(["--data_dir", str(tmp_path / "f"),
                                    "--out_dir", str(tmp_path / "out")])
    assert "is a file, not a folder" in one_error_line(status, capsys)


# ------------------------------------------------------------ resume, Ctrl-C
def outputs_without_timing(script, out):
    metrics = json.loads((out / f"{script['name']}_metrics.json").read_text())
    for key in ("seconds_per_epoch", "test_seconds", "code"):
        metrics.pop(key, None)
    return metrics


def test_kill_9_and_resume_matches_the_uninterrupted_run(script, data_dir, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_script(script["file"], *flags(script, data_dir, full)).returncode == 0
    process = start_script(script["file"], *flags(script, data_dir, cut))
    wait_for_line(process, "epoch 1/3")  # the checkpoint is written before the line
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert checkpoint_epochs(script, cut) in (1, 2), "the kill came too late"
    assert not (cut / f"{script['name']}_metrics.json").exists()
    resumed = run_script(script["file"], *flags(script, data_dir, cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert outputs_without_timing(script, cut) == outputs_without_timing(script, full)
    last = "samples_epoch3.png" if script["name"] != "gan" else "samples_iter90.png"
    for name in (last, "checkpoint.pt"):
        name = f"{script['name']}_{name}"
        if name.endswith(".png"):
            assert (cut / name).read_bytes() == (full / name).read_bytes(), name


def test_ctrl_c_in_training_stops_with_the_resume_command(script, data_dir, tmp_path):
    process = start_script(script["file"], *flags(script, data_dir, tmp_path, 100))
    wait_for_line(process, "epoch 1/100")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    held = checkpoint_epochs(script, tmp_path)
    assert last_line(err).startswith(f"interrupted: {tmp_path}/{script['name']}_checkpoint.pt "
                                     f"holds {held} finished epochs; resume with: ")
    assert last_line(err).endswith(" --resume")


def test_ctrl_c_at_start_up_has_nothing_to_resume(script, data_dir, tmp_path):
    # all images: the first epoch takes seconds, so the signal lands before its end
    process = start_script(script["file"], *flags(script, data_dir, tmp_path),
                           "--max_images", "0")
    lock = tmp_path / f"{script['name']}_run.lock"
    deadline = time.time() + 60
    while not lock.exists() and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert last_line(err) == "interrupted: no epoch was finished; nothing to resume", err


def test_sigterm_in_training_stops_with_the_resume_command(script, data_dir, tmp_path):
    process = start_script(script["file"], *flags(script, data_dir, tmp_path, 100))
    wait_for_line(process, "epoch 1/100")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in err
    assert "finished epochs; resume with:" in last_line(err)


def test_ctrl_c_during_a_long_evaluation_keeps_the_trained_epochs(data_dir, tmp_path):
    script = SCRIPTS["vae"]
    process = start_script(script["file"], *flags(script, data_dir, tmp_path, 2),
                           "--iw_samples", "1000000000000")  # would never end
    line = wait_for_line(process, "test evaluation:")
    assert "x 1,000,000,000,000 importance samples" in line
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err
    assert "holds 2 finished epochs; resume with:" in last_line(err)
    assert "--iw_samples 1000000000000 --resume" in last_line(err)
    resumed = run_script(script["file"], *flags(script, data_dir, tmp_path, 2), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 2" in resumed.stdout and "epoch 1/2" not in resumed.stdout


def test_ctrl_c_while_writing_outputs_gives_the_resume_command(data_dir, tmp_path,
                                                               monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(gan, "write_outputs", interrupted)
    argv = flags(SCRIPTS["gan"], data_dir, tmp_path, 1)
    assert gan.main(argv) == 130
    hint = last_line(capsys.readouterr().err)
    assert "holds 1 finished epochs; resume with:" in hint and hint.endswith("--resume")


def test_resume_without_a_checkpoint_is_refused(script, data_dir, tmp_path, capsys):
    status = script["module"].main(flags(script, data_dir, tmp_path, 1, "--resume"))
    assert "--resume: no checkpoint file at" in one_error_line(status, capsys)


def test_resume_with_other_settings_names_them(script, data_dir, tmp_path, capsys):
    assert script["module"].main(flags(script, data_dir, tmp_path, 1)) == 0
    capsys.readouterr()
    status = script["module"].main(flags(script, data_dir, tmp_path, 1, "--lr", "0.5",
                                         "--resume"))
    assert "lr: checkpoint" in one_error_line(status, capsys)


# ------------------------------------------------------- hostile checkpoints
def test_a_checkpoint_with_a_code_payload_is_refused_and_nothing_runs(script, data_dir,
                                                                       tmp_path, capsys):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    assert script["module"].main(flags(script, data_dir, tmp_path, 1)) == 0
    capsys.readouterr()
    path = tmp_path / f"{script['name']}_checkpoint.pt"
    torch.save({**torch.load(path, weights_only=True), "extra": Payload()}, path)
    status = script["module"].main(flags(script, data_dir, tmp_path, 2, "--resume"))
    assert "holds pickled objects, not only tensors" in one_error_line(status, capsys)
    assert not marker.exists()


def test_keep_best_without_a_kept_epoch_is_refused(data_dir, tmp_path, capsys):
    argv = flags(SCRIPTS["vae"], data_dir, tmp_path, 2, "--keep_best")
    assert vae.main(argv) == 0
    capsys.readouterr()
    path = tmp_path / "vae_z20_checkpoint.pt"
    saved = torch.load(path, weights_only=True)
    saved["state"]["best"] = None
    torch.save(saved, path)
    status = vae.main(flags(SCRIPTS["vae"], data_dir, tmp_path, 2, "--keep_best", "--resume"))
    assert "does not fit this script and these flags (at checkpoint.state.best)" in (
        one_error_line(status, capsys))


# ----------------------------------------------------- divergence and NaN
def test_gan_divergence_stops_with_the_last_good_checkpoint(data_dir, tmp_path, capsys):
    status = gan.main(flags(SCRIPTS["gan"], data_dir, tmp_path, 3, "--lr", "1e6"))
    assert "became non-finite or beyond" in one_error_line(status, capsys)
    assert not (tmp_path / "gan_metrics.json").exists()


def test_a_long_healthy_gan_epoch_is_not_mistaken_for_divergence(data_dir, tmp_path):
    # over 1000 steps: Adam's step count passes the loss bound, and must not count
    args = flags(SCRIPTS["gan"], data_dir, tmp_path, 1, "--max_images", "2100",
                 "--batch_size", "2", "--save_interval", "100000")
    assert gan.main(args) == 0


def test_gan_divergence_before_a_save_point_is_named_as_such(data_dir, tmp_path, capsys):
    status = gan.main(flags(SCRIPTS["gan"], data_dir, tmp_path, 1, "--lr", "1e10"))
    err = one_error_line(status, capsys)
    assert "became non-finite" in err and "in epoch 1, by iteration 15" in err  # halfway
    assert "a smaller --lr may help" in err


def test_vae_divergence_stops_with_the_last_good_checkpoint(data_dir, tmp_path, capsys):
    status = vae.main(flags(SCRIPTS["vae"], data_dir, tmp_path, 3, "--lr", "1e6"))
    assert "the ELBO became non-finite" in one_error_line(status, capsys)
    assert not (tmp_path / "vae_z20_metrics.json").exists()


def test_nan_in_the_test_evaluation_keeps_the_trained_epochs(data_dir, tmp_path,
                                                            monkeypatch, capsys):
    monkeypatch.setattr(vae, "log_likelihood",
                        lambda model, x, k, **kw: torch.full((len(x),), float("nan")))
    status = vae.main(flags(SCRIPTS["vae"], data_dir, tmp_path, 2))
    assert "the test NLL became non-finite in the test evaluation" in one_error_line(
        status, capsys)
    assert checkpoint_epochs(SCRIPTS["vae"], tmp_path) == 2
    assert not (tmp_path / "vae_z20_metrics.json").exists()


# ------------------------------------------------------------ shared out_dir
def test_a_rerun_without_resume_does_not_destroy_finished_epochs(script, data_dir, tmp_path,
                                                                capsys):
    assert script["module"].main(flags(script, data_dir, tmp_path, 1)) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    status = script["module"].main(flags(script, data_dir, tmp_path, 1))
    assert ("_checkpoint.pt holds an earlier run: add --resume to continue it, --overwrite "
            "to replace its files, or use another --out_dir") in one_error_line(status, capsys)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    (tmp_path / f"{script['name']}_samples_mine.png").write_text("mine")
    assert script["module"].main(flags(script, data_dir, tmp_path, 1, "--overwrite")) == 0
    assert (tmp_path / f"{script['name']}_samples_mine.png").read_text() == "mine"


def test_a_default_run_from_the_root_keeps_the_committed_results(script, data_dir):
    metrics = os.path.join(ROOT, "images", f"{script['name']}_metrics.json")
    before = os.stat(metrics).st_mtime_ns, open(metrics, "rb").read()
    result = run_script(script["file"], script["epochs"], "1", "--data_dir", data_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last_line(result.stderr) == (
        f"error: images/{script['name']}_metrics.json holds an earlier run: add --resume to "
        "continue it, --overwrite to replace its files, or use another --out_dir")
    assert (os.stat(metrics).st_mtime_ns, open(metrics, "rb").read()) == before


def test_a_second_run_on_the_same_files_is_refused_while_the_first_lives(script, data_dir,
                                                                        tmp_path):
    first = start_script(script["file"], *flags(script, data_dir, tmp_path, 100))
    wait_for_line(first, "epoch 1/100")
    second = run_script(script["file"], *flags(script, data_dir, tmp_path, 100, "--resume"))
    assert second.returncode == 1 and "another run is writing" in second.stderr
    first.send_signal(signal.SIGKILL)  # its lock dies with it
    first.communicate()
    (tmp_path / f".{script['name']}_checkpoint.pt.x1y2.tmp").write_bytes(b"half")
    third = run_script(script["file"], *flags(script, data_dir, tmp_path, 2, "--overwrite"))
    assert third.returncode == 0, third.stderr
    assert not list(tmp_path.glob(".*.tmp"))  # a killed write's leftovers are cleared


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs where the test may mount one (as root on Linux)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0
    yield disk if mounted else None
    if mounted:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_line_naming_the_file(data_dir, tiny_disk, tmp_path, monkeypatch,
                                                 capsys):
    if tiny_disk is None:  # no tmpfs here: a writer that fails as a full disk does
        import errno
        import io

        class FullDisk(io.FileIO):
            def write(self, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(vae.utils, "open", lambda fd, mode: FullDisk(fd, "wb"), raising=False)
    out = tiny_disk or tmp_path
    status = vae.main(flags(SCRIPTS["vae"], data_dir, out, 2))
    err = one_error_line(status, capsys)
    assert err.startswith(f"error: cannot write {out}/vae_z20_")
    assert err.strip().endswith(": No space left on device")
    assert not list(out.glob(".*.tmp"))


def test_a_failed_write_after_training_gives_the_resume_command(data_dir, tmp_path, capsys):
    (tmp_path / "vae_z20_elbo.png").mkdir()  # the plot's path is taken by a folder
    status = vae.main(flags(SCRIPTS["vae"], data_dir, tmp_path, 2))
    err = one_error_line(status, capsys)
    assert err.startswith(f"error: cannot write {tmp_path}/vae_z20_elbo.png: Is a directory; "
                          f"{tmp_path}/vae_z20_checkpoint.pt holds 2 finished epochs; resume "
                          "with: ")
    assert err.rstrip().endswith(" --resume")
