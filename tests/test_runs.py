"""What a user sees from both scripts, which share one run harness: every
output of a run, bad flags, earlier results, --overwrite, interrupts and
--resume, hostile or unfitting checkpoints, divergence, missing data and
failed writes. Runs are tiny; most tests run once per script."""

import contextlib
import errno
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from conftest import ROOT, command, run_script, start_script

import a3_gan_template as gan
import a3_vae_template as vae
import utils

EPOCHS = 6
NO_FILE = os.strerror(errno.ENOENT)
SCRIPTS = {
    "vae": {
        "module": vae,
        "file": "a3_vae_template.py",
        "name": "vae_z2",
        "epochs": "--epochs",
        "flags": ["--zdim", "2", "--max_images", "256", "--iw_samples", "2", "--seed", "3"],
        "epoch_line": "[Epoch ",
    },
    "gan": {
        "module": gan,
        "file": "a3_gan_template.py",
        "name": "gan",
        "epochs": "--n_epochs",
        "flags": ["--max_images", "640", "--save_interval", "25", "--quality_samples", "200"]
        + ["--quality_interval", "20", "--seed", "7"],
        "epoch_line": "epoch ",
    },
}


@pytest.fixture(scope="module", params=SCRIPTS)
def script(request):
    return SCRIPTS[request.param]


def flags(script, data_dir, out, *extra):
    where = ["--data_dir", str(data_dir), "--out_dir", str(out)]
    return [*script["flags"], script["epochs"], str(EPOCHS), *where, *extra]


@pytest.fixture(scope="module")
def finished(script, data_dir, tmp_path_factory):
    """An uninterrupted run, started at once and awaited on first use, so that
    it runs beside the first test that asks for it; returns its out_dir and stdout."""
    out = tmp_path_factory.mktemp(f"finished_{script['name']}")
    process, done = start_script(script["file"], *flags(script, data_dir, out)), []

    def wait():
        if not done:
            stdout, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, stderr
            done.append((out, stdout))
        return done[0]

    yield wait
    process.kill()
    process.communicate()


@pytest.fixture
def copied(finished, tmp_path):
    """A copy of the finished run's out_dir, for a test to run into."""
    return shutil.copytree(finished()[0], tmp_path / "out")


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def one_line(status, capsys):
    """The single stderr line of a run that ended with status 1."""
    err = capsys.readouterr().err
    assert status == 1 and len(err.splitlines()) == 1, err
    return err.rstrip("\n")


def metrics(out, name):
    return json.loads((out / f"{name}_metrics.json").read_text())


# ---------------------------------------------------------------- interrupts, resume
def wait_for_line(process, prefix):
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line {prefix!r}: {process.communicate()[1]}")


def results(out, name):
    """Metrics without the timing and code keys, every figure, the model's weights."""
    kept = metrics(out, name)
    for key in ("code", "seconds_per_epoch", "test_seconds"):
        kept.pop(key, None)
    weights = f"{name}_{'model' if name != 'gan' else 'generator'}.pt"
    model = torch.load(out / weights, weights_only=True)
    return kept, {p.name: p.read_bytes() for p in out.glob("*.png")}, model


def test_interrupted_runs_resume_to_exactly_the_uninterrupted_result(
    script, finished, data_dir, tmp_path
):
    checkpoint = tmp_path / f"{script['name']}_checkpoint.pt"
    resume = command(script["file"], *flags(script, data_dir, tmp_path), "--resume")
    argv = command(script["file"], *flags(script, data_dir, tmp_path))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL):
        process = start_script(argv)
        wait_for_line(process, script["epoch_line"])  # printed once the epoch is saved
        process.send_signal(sig)
        _, err = process.communicate(timeout=300)
        held = torch.load(checkpoint, weights_only=True)["epochs_done"]
        assert 0 < held < EPOCHS, "the signal came too late"
        if sig == signal.SIGKILL:
            assert process.returncode == -signal.SIGKILL
        else:
            assert process.returncode == 128 + sig, err
            assert err == (
                f"interrupted; {checkpoint} holds {held} epochs, "
                f"resume with: {shlex.join(resume)}\n"
            )
        argv = resume
    final = run_script(resume)
    assert final.returncode == 0, final.stderr
    ours, theirs = results(tmp_path, script["name"]), results(finished()[0], script["name"])
    assert ours[0] == theirs[0] and ours[1] == theirs[1]
    assert ours[2].keys() == theirs[2].keys()
    assert all(torch.equal(ours[2][k], theirs[2][k]) for k in ours[2])


# ---------------------------------------------------------------- outputs
@pytest.mark.parametrize("script", ["vae"], indirect=True)
def test_a_vae_run_writes_every_output_with_sane_metrics(script, finished):
    out, stdout = finished()
    grids = [f"vae_z2_samples_epoch{e}.png" for e in (0, EPOCHS // 2, EPOCHS)]
    outputs = ["checkpoint.pt", "metrics.json", "model.pt", "elbo.png", "manifold.png"]
    assert set(os.listdir(out)) == {*grids, *(f"vae_z2_{name}" for name in outputs)}
    m = metrics(out, "vae_z2")
    assert (m["epochs"], m["zdim"], m["iw_samples"], m["train_images"]) == (EPOCHS, 2, 2, 256)
    assert len(m["train_elbo"]) == len(m["val_elbo"]) == len(m["seconds_per_epoch"]) == EPOCHS
    assert m["train_elbo"][-1] > m["train_elbo"][0] and m["val_elbo"][-1] > m["val_elbo"][0]
    assert m["val_elbo"][-1] > -784 * np.log(2)  # better than a fair coin per pixel
    assert m["test_elbo"] < -m["test_nll_iw"] + 1  # the IW bound is above the ELBO
    assert abs(m["test_elbo"] - m["val_elbo"][-1]) < 10  # validation and test agree
    assert set(m["code"]) == {"commit", "changed"}  # the code the run was made with
    model = vae.VAE(z_dim=2)
    model.load_state_dict(torch.load(out / "vae_z2_model.pt", weights_only=True))
    assert f"test NLL (k = 2): {m['test_nll_iw']:.2f}" in stdout


@pytest.mark.parametrize("script", ["gan"], indirect=True)
def test_a_gan_run_writes_every_output_with_sane_metrics(script, finished):
    out, _ = finished()
    grids = [f"gan_samples_iter{i}.png" for i in (0, 25, 30, 50, 60)]  # every 25, half, end
    outputs = ["losses.png", "quality.png", "interpolation.png", "generator.pt"]
    outputs += ["discriminator.pt", "metrics.json", "checkpoint.pt"]
    assert set(os.listdir(out)) == {*grids, *(f"gan_{name}" for name in outputs)}
    m = metrics(out, "gan")
    assert m["iterations"] == EPOCHS * 640 // 64
    assert all(len(m[key]) == EPOCHS for key in (*gan.CURVES, "seconds_per_epoch"))
    assert all(0 < d < 1 for d in m["D_x"] + m["D_G_z"])
    assert [q["iteration"] for q in m["quality"]] == [0, 20, 30, 40, 60]  # every 20, half, end
    for q in m["quality"]:
        for score in (q, q["last_iterate"]):
            assert score["images"] == 200 and score["frechet_distance"] > 0
            assert sum(score["class_shares"]) == pytest.approx(1)
    assert 1 <= len(m["interpolation"]) <= 3
    for row in m["interpolation"]:
        assert len(set(row["noise_indices"])) == 2 and all(0 <= c < 10 for c in row["classes"])
    for name, model in (("generator", gan.Generator()), ("discriminator", gan.Discriminator())):
        model.load_state_dict(torch.load(out / f"gan_{name}.pt", weights_only=True))


# ---------------------------------------------------------------- flags
def help_text(module, capsys):
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_every_flag_with_its_default(script, capsys):
    text = help_text(script["module"], capsys)
    for action in script["module"].build_parser()._actions:
        if action.help and action.dest != "help":
            assert f"{action.help} (default: {action.default})" in text, action.dest


BAD_FLAGS = [
    ("both", ["--seed", str(2**32)], "argument --seed: must be in [0, "),
    ("both", ["--max_images", "-1"], "argument --max_images: must be in [0, "),
    ("vae", ["--zdim", "1000000000"], "argument --zdim: must be in [1, 1000000], got 1000000000"),
    ("gan", ["--n_epochs", "1000001"], "argument --n_epochs: must be in [1, 1000000], got 1000001"),
    ("both", ["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ("both", ["--resume", "--overwrite"], "argument --overwrite: not allowed with argument"),
    ("both", ["--over"], "unrecognized arguments: --over"),
    ("vae", ["--epochs", "0"], "argument --epochs: must be in [1, "),
    ("vae", ["--zdim", "abc"], "argument --zdim: invalid int value: 'abc'"),
    ("vae", ["--iw_samples", "0"], "argument --iw_samples: must be in [1, "),
    ("gan", ["--lr", "nan"], "argument --lr: must be in [1e-08, 1], got nan"),
    ("gan", ["--lr", "0"], "argument --lr: must be in [1e-08, 1], got 0"),
    ("gan", ["--d_dropout", "1"], "argument --d_dropout: must be in [0, 0.9], got 1"),
    ("gan", ["--batch_size", "1"], "argument --batch_size: must be in [2, "),
    ("gan", ["--real_label", "0.4"], "argument --real_label: must be in [0.5, 1], got 0.4"),
    ("gan", ["--ema_decay", "1"], "argument --ema_decay: must be in [0, 0.9999], got 1"),
    ("gan", ["--quality_samples", "128"], "argument --quality_samples: must be in [129, 60000]"),
]


@pytest.mark.parametrize(
    "which, bad, message",
    [(w, b, m) for which, b, m in BAD_FLAGS for w in ("vae", "gan") if which in ("both", w)],
)
def test_a_bad_flag_exits_2_with_a_message_before_any_work(which, bad, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        SCRIPTS[which]["module"].main([*bad, "--out_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("usage: ") and message in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- earlier results
def test_a_second_run_into_the_same_out_dir_is_refused(script, copied, data_dir, capsys):
    before = files(copied)
    status = script["module"].main(flags(script, data_dir, copied))
    assert one_line(status, capsys) == (
        f"error: {copied} holds an earlier run's {script['name']}_* files: add --resume to "
        "continue it, --overwrite to replace it, or use another --out_dir"
    )
    assert files(copied) == before


def test_a_default_run_from_a_clone_keeps_the_committed_results(
    script, data_dir, tmp_path, monkeypatch, capsys
):
    # the committed images/ (not the working tree's, which long runs may be writing)
    # in the current folder: a default run from the root of a clone
    name = "vae_z20" if script["module"] is vae else "gan"
    committed = f"images/{name}_metrics.json"
    text = subprocess.run(
        ["git", "-C", ROOT, "show", f"HEAD:{committed}"], capture_output=True, check=True
    ).stdout
    (tmp_path / "images").mkdir()
    (tmp_path / committed).write_bytes(text)
    cheap = ["--iw_samples", "1"] if name != "gan" else ["--quality_interval", "0"]
    monkeypatch.chdir(tmp_path)
    argv = [script["epochs"], "1", "--max_images", "128", "--data_dir", data_dir, *cheap]
    status = script["module"].main(argv)
    assert one_line(status, capsys).startswith(f"error: images holds an earlier run's {name}_*")
    assert files(tmp_path / "images") == {f"{name}_metrics.json": text}


def test_overwrite_deletes_the_runs_own_files_and_only_once_the_data_is_read(
    script, copied, data_dir, tmp_path, monkeypatch, capsys
):
    name = script["name"]
    for other in (f"{name}_samples_mine.png", f"{name}0_metrics.json", "notes.txt"):
        (copied / other).write_text("not the run's")
    before = files(copied)
    (tmp_path / "a_file").write_text("")
    status = script["module"].main(flags(script, tmp_path / "a_file", copied, "--overwrite"))
    assert one_line(status, capsys).endswith("a_file is a file, not a folder")
    assert files(copied) == before

    def stop(*args):  # the run ends at its first epoch: what --overwrite deleted stays away
        raise utils.RunError("stopped by the test")

    monkeypatch.setattr(script["module"], "run_epoch" if name != "gan" else "train", stop)
    status = script["module"].main(flags(script, data_dir, copied, "--overwrite"))
    assert one_line(status, capsys) == "error: stopped by the test"
    new = {f"{name}_samples_epoch0.png"} if name != "gan" else set()  # drawn before epoch 1
    kept = {k for k, v in before.items() if v == b"not the run's"}
    assert set(os.listdir(copied)) == kept | new and len(kept) == 3


# ---------------------------------------------------------------- resume
def test_a_command_line_run_that_has_ended_ignores_late_signals(
    script, data_dir, tmp_path, monkeypatch
):
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)}
    argv = [script["file"], *flags(script, data_dir, tmp_path, "--resume")]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        assert script["module"].main() == 1  # no checkpoint to resume; the process exits next
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in saved)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert script["module"].main(argv[1:]) == 1  # imported: the caller's handlers are back
    assert {s: signal.getsignal(s) for s in saved} == saved


def test_an_interrupt_before_the_first_epoch_has_nothing_to_resume(
    script, data_dir, tmp_path, monkeypatch, capsys
):
    start = utils.Run.start

    def start_then_interrupt(run, outputs):  # a real Ctrl-C, once the run holds its files
        start(run, outputs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(60)  # ended by the signal

    monkeypatch.setattr(utils.Run, "start", start_then_interrupt)
    status = script["module"].main(flags(script, data_dir, tmp_path))
    err = capsys.readouterr().err
    assert status == 130 and len(err.splitlines()) == 1, err
    assert err.startswith("interrupted") and err.endswith("; nothing to resume\n")
    assert "resume with" not in err and not os.listdir(tmp_path)


def test_resume_without_a_checkpoint_is_refused(script, data_dir, tmp_path, capsys):
    with contextlib.redirect_stdout(io.StringIO()):  # as a notebook's stdout, no reconfigure()
        status = script["module"].main(flags(script, data_dir, tmp_path, "--resume"))
    line = one_line(status, capsys)
    path = tmp_path / f"{script['name']}_checkpoint.pt"
    assert line == f"error: --resume: cannot resume from {path} (FileNotFoundError: {NO_FILE})"


def test_resume_with_other_flags_is_refused_naming_them(script, copied, data_dir, capsys):
    other = ["--epochs", "7", "--iw_samples", "3"]
    if script["module"] is gan:
        other = ["--lr", "0.001", "--batch_size", "32"]
    status = script["module"].main(flags(script, data_dir, copied, *other, "--resume"))
    named = "epochs, iw_samples" if script["module"] is vae else "batch_size, lr"
    named = f"it was written with other {named}"
    line = one_line(status, capsys)
    path = copied / f"{script['name']}_checkpoint.pt"
    assert line == f"error: --resume: cannot resume from {path} (ValueError: {named})"


# ---------------------------------------------------------------- hostile checkpoints
def test_a_checkpoint_with_a_pickled_object_is_refused_without_running_it(
    script, copied, data_dir, tmp_path, capsys
):
    marker = tmp_path / "ran"

    class Payload:  # unpickled, it would run a shell command
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = copied / f"{script['name']}_checkpoint.pt"
    saved = torch.load(path, weights_only=True)
    saved["state"]["extra"] = Payload()
    torch.save(saved, path)
    status = script["module"].main(flags(script, data_dir, copied, "--resume"))
    line = one_line(status, capsys)
    assert line.startswith(f"error: --resume: cannot resume from {path} (UnpicklingError: Weights")
    assert not marker.exists()


@pytest.mark.parametrize("part", ["weights", "adam_moments"])
def test_a_checkpoint_whose_tensors_do_not_fit_is_refused(script, copied, data_dir, part, capsys):
    path = copied / f"{script['name']}_checkpoint.pt"
    saved = torch.load(path, weights_only=True)
    model, optimizer = (
        ("model", "optimizer") if script["module"] is vae else ("generator", "optimizer_G")
    )
    if part == "weights":  # as another --zdim or --latent_dim writes them
        weights = saved["state"][model]
        weights[next(iter(weights))] = torch.zeros(3, 3)
    else:  # fused Adam would step on memory beyond them
        saved["state"][optimizer]["state"][0]["exp_avg"] = torch.zeros(3)
    torch.save(saved, path)
    status = script["module"].main(flags(script, data_dir, copied, "--resume"))
    line = one_line(status, capsys)
    assert line.startswith(f"error: --resume: cannot resume from {path} (")
    reason = "Error(s) in loading state_dict" if part == "weights" else f"moments of {optimizer}"
    assert reason in line


# ---------------------------------------------------------------- divergence
@pytest.mark.parametrize("script", ["gan"], indirect=True)
def test_a_diverging_gan_stops_with_one_line(script, data_dir, tmp_path, capsys):
    status = gan.main(flags(script, data_dir, tmp_path, "--lr", "1", "--quality_interval", "0"))
    assert one_line(status, capsys).startswith("error: training diverged ")
    assert not (tmp_path / "gan_metrics.json").exists()


@pytest.mark.parametrize("script", ["vae"], indirect=True)
def test_a_vae_whose_weights_turn_nan_stops_with_one_line_keeping_its_epochs(
    script, data_dir, tmp_path, monkeypatch, capsys
):
    calls, run_epoch = [], vae.run_epoch

    def poisoned(model, data, optimizer):
        if calls:  # the second epoch starts from NaN weights
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        calls.append(1)
        return run_epoch(model, data, optimizer)

    monkeypatch.setattr(vae, "run_epoch", poisoned)
    status = vae.main(flags(script, data_dir, tmp_path))
    line = one_line(status, capsys)
    assert line.startswith("error: training diverged in an epoch (losses non-finite or beyond")
    resume = shlex.join([sys.executable, vae.__file__])  # the script, though imported
    assert f"; {tmp_path}/vae_z2_checkpoint.pt holds 1 epochs, resume with: {resume} " in line
    assert not (tmp_path / "vae_z2_metrics.json").exists()


# ---------------------------------------------------------------- data, devices, disks
def test_missing_data_without_network_is_one_clear_error(script, tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("the network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    status = script["module"].main(["--data_dir", str(tmp_path), "--out_dir", str(tmp_path / "o")])
    line = one_line(status, capsys)
    if script["module"] is vae:
        assert line.startswith(f"error: binarized MNIST is not in {tmp_path}/binarized_mnist")
        assert "the network is unreachable" in line
    else:
        assert f"not in {tmp_path}/MNIST/raw, and could not be downloaded" in line
    assert not (tmp_path / "o").exists()


def test_a_data_dir_that_is_a_file_is_one_clear_error(script, tmp_path, capsys):
    (tmp_path / "f").write_text("")
    status = script["module"].main(["--data_dir", str(tmp_path / "f"), "--out_dir", str(tmp_path)])
    assert one_line(status, capsys) == f"error: --data_dir {tmp_path}/f is a file, not a folder"


def test_device_cuda_without_cuda_is_refused_by_the_flags(script, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit:
        script["module"].main(["--device", "cuda"])
    assert exit.value.code == 2
    assert "argument --device: invalid choice: 'cuda'" in capsys.readouterr().err


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    utils.save_json({"old": 1}, path)
    with pytest.raises(utils.RunError, match="NaN or infinite"):
        utils.save_json({"elbo": float("nan")}, path)

    class FullDisk(io.FileIO):
        def write(self, data):
            super().write(data[:5])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(utils, "open", lambda name, mode: FullDisk(name, "wb"), raising=False)
    with pytest.raises(utils.RunError) as error:
        utils.save_json({"new": 2}, path)
    monkeypatch.undo()
    assert str(error.value) == f"cannot write {path}: No space left on device"
    (tmp_path / "folder").mkdir()  # a rename onto a folder fails after a full write
    with pytest.raises(utils.RunError, match="cannot write .*folder: Is a directory"):
        utils.write_atomic(tmp_path / "folder", b"data")
    assert json.loads(path.read_text()) == {"old": 1}
    assert sorted(os.listdir(tmp_path)) == ["folder", "m.json"]  # no temporary file left
