"""The run harness: flag types, atomic writes and their errors, RNG state,
the checkpoint's load checks, progress lines."""
import argparse
import errno
import io
import json
import math
import os
import random
import stat

import numpy as np
import pytest
import torch

import utils


def test_number_flags():
    assert utils.positive_int("3") == 3
    assert utils.nonneg_int("0") == 0
    assert utils.positive_float("1e-4") == pytest.approx(1e-4)
    assert utils.seed(str(2 ** 32 - 1)) == 2 ** 32 - 1
    for check, text in ((utils.positive_int, "0"), (utils.positive_int, "1.5"),
                        (utils.nonneg_int, "-1"), (utils.positive_float, "0"),
                        (utils.positive_float, "inf"), (utils.positive_float, "nan"),
                        (utils.seed, str(2 ** 32)), (utils.number(float, 0, 1, high_open=True), "1"),
                        (utils.positive_int, "1" + "0" * 400)):  # beyond any float
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)


def test_save_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.json"
    utils.save_json({"elbo": -90.0}, path)
    with pytest.raises(utils.RunError, match="NaN or infinite"):
        utils.save_json({"elbo": math.nan}, path)
    assert json.loads(path.read_text()) == {"elbo": -90.0}
    assert os.listdir(tmp_path) == ["m.json"]  # no temporary file left behind


def test_save_png_refuses_non_finite_images(tmp_path):
    image = torch.zeros(1, 28, 28)
    image[0, 3, 3] = math.inf
    with pytest.raises(utils.RunError):
        utils.save_png(image, tmp_path / "x.png")
    assert not os.listdir(tmp_path)


def test_save_png_upscales_without_changing_pixels(tmp_path):
    from PIL import Image
    images = torch.rand(2, 1, 5, 5)
    utils.save_png(images, tmp_path / "a.png", nrow=2, padding=0)
    utils.save_png(images, tmp_path / "b.png", upscale=3, nrow=2, padding=0)
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert b.size == (3 * a.size[0], 3 * a.size[1])
        small, big = torch.from_numpy(np.array(a)), torch.from_numpy(np.array(b))
    assert torch.equal(big[::3, ::3], small) and torch.equal(big[2::3, 2::3], small)


def test_atomic_files_follow_the_umask(tmp_path):
    utils.save_torch({"a": 1}, tmp_path / "c.pt")
    mode = stat.S_IMODE(os.stat(tmp_path / "c.pt").st_mode)
    assert mode == 0o666 & ~utils._umask()


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    utils.save_json({"old": 1}, path)

    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(utils.os, "fdopen", lambda fd, mode: FullDisk(fd, "wb"))
    with pytest.raises(utils.RunError) as err:
        utils.save_json({"new": 2}, path)
    assert str(err.value) == f"cannot write {path}: No space left on device"
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_rng_state_round_trip_through_a_safe_load(tmp_path):
    utils.seed_everything(1)
    utils.save_torch(utils.rng_state(), tmp_path / "rng.pt")
    first = (torch.rand(3), random.random(), __import__("numpy").random.rand())
    utils.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), first[0])
    assert random.random() == first[1]
    assert __import__("numpy").random.rand() == first[2]


def test_check_finite_names_what_is_wrong():
    utils.check_finite({"a": torch.ones(3)}, "here", bound=10)
    with pytest.raises(utils.RunError, match="b became non-finite in epoch 3"):
        utils.check_finite({"a": torch.ones(3), "b": torch.tensor([math.nan])}, "in epoch 3")
    with pytest.raises(utils.RunError, match="a became non-finite or beyond 10"):
        utils.check_finite({"a": torch.tensor([11.0])}, "here", bound=10)


def test_progress_lines_at_every_tenth_and_every_minute(monkeypatch, capsys):
    clock = iter([0.0, 1.0, 2.0, 70.0, 71.0])
    monkeypatch.setattr(utils.time, "perf_counter", lambda: next(clock))
    progress = utils.progress_printer(100)
    progress(5)    # 1 s: 5 %, no line
    progress(10)   # 2 s: 15 %, a line (first tenth)
    progress(1)    # 70 s: 16 %, a line (a minute)
    progress(84)   # 71 s: done
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  15% after 2 s", "  16% after 70 s", "  100% after 71 s"]


# ------------------------------------------------------------------- Run
def make_run(tmp_path, config=None, **flags):
    args = argparse.Namespace(out_dir=str(tmp_path), resume=False, overwrite=False, **flags)
    return utils.Run(args, "m", config or {"lr": 1.0}, "script.py", [])


def test_checkpoint_round_trip_restores_state_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    run = make_run(tmp_path)
    torch.manual_seed(0)
    run.save(2, {"model": model, "history": {"loss": [1.0, 0.5]}})
    expected = torch.rand(2)
    fresh = torch.nn.Linear(3, 2)
    state = {"model": fresh, "history": {"loss": []}}
    assert run.load(state) == 2
    assert state["history"] == {"loss": [1.0, 0.5]}
    assert torch.equal(fresh.weight, model.weight)
    assert torch.equal(torch.rand(2), expected)  # the RNG resumes where it was


@pytest.mark.parametrize("change, message", [
    (lambda s: {"model": torch.nn.Linear(3, 2)}, "not a checkpoint this script wrote"),
    (lambda s: {**s, "model": torch.nn.Linear(4, 2)}, "not a checkpoint this script wrote"),
    (lambda s: {**s, "history": [1.0]}, "not a checkpoint this script wrote"),
])
def test_checkpoints_that_differ_from_what_the_script_writes_are_refused(tmp_path, change,
                                                                          message):
    run = make_run(tmp_path)
    state = {"model": torch.nn.Linear(3, 2), "history": {"loss": [1.0]}}
    run.save(1, state)
    with pytest.raises(utils.RunError, match=message):
        run.load(change(dict(state)))


def trained_state():
    """A model, its Adam state after one step, a cosine schedule, a curve."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 5)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler,
            "history": {"loss": [0.5]}, "best": None,
            "curves": torch.zeros(0, 4, dtype=torch.float64)}


def tampered(saved, change):
    change(saved["state"])
    return saved


@pytest.mark.parametrize("change", [
    # an Adam moment of another shape: torch loads it, then corrupts memory
    lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)),
    lambda s: s["optimizer"]["state"][0].update(exp_avg_sq=torch.full((2, 3), math.nan)),
    lambda s: s["scheduler"].update(T_max=0),  # would divide by zero
    lambda s: s["history"].update(loss=["a"]),
    lambda s: s["history"].update(loss=[0.5, 0.4]),  # more values than finished epochs
    lambda s: s["history"].update(loss=[math.nan]),
    lambda s: s.update(best="hello"),
    lambda s: s.update(curves=torch.zeros(3, 5, dtype=torch.float64)),
    lambda s: s["model"].update(weight=torch.full((2, 3), math.inf)),
    lambda s: s["model"].update(weight=torch.zeros(2, 3, dtype=torch.complex64)),
    lambda s: s["optimizer"]["state"][0].pop("exp_avg"),
    lambda s: s["optimizer"]["param_groups"][0].update(lr="oops"),
    lambda s: s["optimizer"]["param_groups"][0].update(lr=math.nan),
    lambda s: s["optimizer"]["param_groups"][0].update(betas=(0.9,)),
    lambda s: s["scheduler"].update(last_epoch="x"),
    lambda s: s["history"].update(loss=[{"a": 1.0}]),
], ids=["adam-shape", "adam-nan", "schedule", "history-type", "history-length",
        "history-nan", "best", "curves-shape", "weights-inf", "weights-complex",
        "adam-missing-moment", "lr-text", "lr-nan", "betas", "schedule-type", "history-dict"])
def test_checkpoints_with_tampered_contents_are_refused(tmp_path, change):
    run = make_run(tmp_path)
    run.save(1, trained_state())
    saved = torch.load(run.checkpoint, weights_only=True)
    change(saved["state"])
    torch.save(saved, run.checkpoint)
    with pytest.raises(utils.RunError, match="not a checkpoint this script wrote"):
        run.load(trained_state())


def test_a_faithful_checkpoint_of_a_trained_state_loads(tmp_path):
    run = make_run(tmp_path)
    run.save(1, trained_state())
    assert run.load(trained_state()) == 1


def test_checkpoint_of_other_settings_names_them(tmp_path):
    make_run(tmp_path, {"zdim": 20, "lr": 1.0}).save(1, {})
    with pytest.raises(utils.RunError, match="zdim: checkpoint 20 vs now 2"):
        make_run(tmp_path, {"zdim": 2, "lr": 1.0}).load({})


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    run = make_run(tmp_path)
    run.save(1, {})
    torch.save({**torch.load(run.checkpoint, weights_only=True), "extra": Payload()},
               run.checkpoint)
    with pytest.raises(utils.RunError, match="holds pickled objects, not only tensors"):
        run.load({})
    assert run.epochs_done() is None  # unreadable, and again nothing ran
    assert not marker.exists()


def test_the_lock_file_is_never_followed_through_a_link(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    os.symlink(target, tmp_path / "m_run.lock")
    with pytest.raises(utils.RunError, match="cannot use the lock file"):
        make_run(tmp_path).start()
    assert target.read_text() == "keep me"


def test_overwrite_removes_the_old_runs_grids_metrics_and_checkpoint_only(tmp_path):
    for name in ("m_samples_epoch4.png", "m_checkpoint.pt", "m_metrics.json",
                 "m2_metrics.json", "m_remedy_mnist.json", "other.txt"):
        (tmp_path / name).write_text("old")
    run = make_run(tmp_path)
    run.overwrite = True
    run.start()
    assert sorted(os.listdir(tmp_path)) == ["m2_metrics.json", "m_remedy_mnist.json",
                                            "m_run.lock", "other.txt"]


def test_a_checkpoint_that_is_a_pipe_is_never_opened(tmp_path):
    run = make_run(tmp_path)
    os.mkfifo(run.checkpoint)  # opening it would block until a writer comes
    assert run.epochs_done() is None
    with pytest.raises(utils.RunError, match="not a regular file"):
        run.load({})


def test_the_resume_command_drops_overwrite_and_its_abbreviations(tmp_path):
    run = make_run(tmp_path)
    run.save(2, {})
    for argv in (["--lr", "1", "--overwrite"], ["--lr", "1", "--over"]):
        run.argv = argv
        assert run._progress().endswith("script.py --lr 1 --resume")
    run.argv = ["--res"]
    assert run._progress().endswith("script.py --res")


def test_code_version_names_the_project_files_this_process_imported():
    version = utils.code_version()
    assert "utils.py" in version["files"]
    assert not any("site-packages" in f for f in version["files"])
    assert version["commit"] is None or len(version["commit"]) == 40


def test_the_code_version_is_that_of_the_start_of_the_run(tmp_path, monkeypatch):
    run = make_run(tmp_path)  # reads the version now
    monkeypatch.setattr(utils, "code_version", lambda: {"commit": "later"})
    run.save_metrics({"a": 1})
    saved = json.loads((tmp_path / "m_metrics.json").read_text())
    assert saved["code"] != {"commit": "later"} and "files" in saved["code"]
