"""The run harness, one test per behaviour: flag types, atomic writes, the
checkpoint's round trip and its one tree check, the run's own files, the
resume line."""
import argparse
import errno
import io
import json
import math
import os

import pytest
import torch

import utils


def test_number_flags_take_their_interval_and_refuse_the_rest():
    assert utils.positive_int("3") == 3 and utils.nonneg_int("0") == 0
    assert utils.positive_float("1e-4") == pytest.approx(1e-4)
    assert utils.seed(str(2 ** 32 - 1)) == 2 ** 32 - 1
    for check, text in ((utils.positive_int, "0"), (utils.positive_int, "1.5"),
                        (utils.nonneg_int, "-1"), (utils.positive_float, "0"),
                        (utils.positive_float, "inf"), (utils.positive_float, "nan"),
                        (utils.seed, str(2 ** 32)), (utils.positive_int, str(10 ** 20)),
                        (utils.number(float, 0, 1, high_open=True), "1")):
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)


def test_help_shows_defaults_and_abbreviations_are_refused(capsys):
    parser = utils.parser("x")
    utils.add_run_flags(parser, "data")
    assert "(default: images)" in " ".join(parser.format_help().split())
    with pytest.raises(SystemExit):
        parser.parse_args(["--over"])
    assert "unrecognized arguments: --over" in capsys.readouterr().err


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    utils.save_json({"old": 1}, path)
    with pytest.raises(utils.RunError, match="NaN or infinite"):
        utils.save_json({"elbo": math.nan}, path)

    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(utils, "open", lambda fd, mode: FullDisk(fd, "wb"), raising=False)
    with pytest.raises(utils.RunError) as err:
        utils.save_json({"new": 2}, path)
    monkeypatch.undo()
    assert str(err.value) == f"cannot write {path}: No space left on device"
    assert json.loads(path.read_text()) == {"old": 1}
    assert os.listdir(tmp_path) == ["m.json"]  # no temporary file left behind


def test_atomic_files_follow_the_umask(tmp_path):
    utils.save_torch({"a": 1}, tmp_path / "c.pt")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "c.pt").st_mode & 0o777 == 0o666 & ~mask


def test_check_finite_names_what_is_wrong():
    utils.check_finite({"a": torch.ones(3)}, "here", bound=10)
    with pytest.raises(utils.RunError, match="b became non-finite in epoch 3"):
        utils.check_finite({"a": torch.ones(3), "b": torch.tensor([math.nan])}, "in epoch 3")
    with pytest.raises(utils.RunError, match="a became non-finite or beyond 10"):
        utils.check_finite({"a": torch.tensor([11.0])}, "here", bound=10)


# ------------------------------------------------------------------- Run
def make_run(tmp_path, config=None, argv=(), **flags):
    args = argparse.Namespace(out_dir=str(tmp_path), resume=False, overwrite=False, **flags)
    return utils.Run(args, "m", config or {"lr": 1.0}, 5, "script.py", argv, "--size")


def trained_state():
    """What a script checkpoints: a model, its Adam state after a step, a
    cosine schedule, a per-epoch history, an iteration curve, a list."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 5)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler,
            "history": {"loss": [0.5], "seconds_per_epoch": [1.0]}, "best": None,
            "curves": torch.zeros(0, 4, dtype=torch.float64), "quality": []}


def fresh_state():
    state = trained_state()
    state["history"] = {"loss": [], "seconds_per_epoch": []}
    return state


def test_a_checkpoint_restores_the_state_and_the_random_stream(tmp_path, capsys):
    run, state = make_run(tmp_path), trained_state()
    state["curves"], state["quality"] = torch.ones(7, 4, dtype=torch.float64), [{"a": 1.0}]
    run.end_epoch(state)
    assert capsys.readouterr().out == "epoch 1/5  loss 0.500  1.0 s\n"
    expected = torch.rand(2)
    torch.manual_seed(1)
    fresh = fresh_state()
    assert make_run(tmp_path).load(fresh) == 1
    assert fresh["history"] == state["history"] and fresh["quality"] == [{"a": 1.0}]
    assert torch.equal(fresh["model"].weight, state["model"].weight)
    assert torch.equal(fresh["optimizer"].state_dict()["state"][0]["exp_avg"],
                       state["optimizer"].state_dict()["state"][0]["exp_avg"])
    assert torch.equal(fresh["curves"], state["curves"])
    assert torch.equal(torch.rand(2), expected)  # the RNG goes on where it was


@pytest.mark.parametrize("change", [
    # an Adam moment of another shape: torch would load it, then fused Adam corrupts memory
    lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)),
    lambda s: s["optimizer"]["state"][0].pop("exp_avg"),
    lambda s: s["optimizer"]["state"][0].update(exp_avg_sq=torch.full((2, 3), math.nan)),
    lambda s: s["optimizer"]["param_groups"][0].update(lr="oops"),
    lambda s: s["scheduler"].update(last_epoch="x"),
    lambda s: s["model"].update(weight=torch.full((2, 3), math.inf)),
    lambda s: s["model"].update(weight=torch.zeros(2, 3, dtype=torch.float64)),
    lambda s: s["model"].pop("bias"),
    lambda s: s["history"].update(loss=[0.5, 0.4]),  # not the finished epochs
    lambda s: s["history"].update(loss=[math.nan]),
    lambda s: s.update(best="hello"),
    lambda s: s.update(curves=torch.zeros(3, 5, dtype=torch.float64)),
    lambda s: s.update(quality=["text"]),
    # the parameters reordered: each moment then lands on a parameter of another shape
    lambda s: s["optimizer"]["param_groups"][0].update(params=[1, 0]),
    lambda s: s["scheduler"].update(T_max=0),  # would divide by zero
    lambda s: s["model"].update(weight=s["model"]["weight"].to_sparse()),
], ids=["adam-shape", "adam-missing", "adam-nan", "lr-text", "schedule-type", "weights-inf",
        "weights-dtype", "missing-key", "history-length", "history-nan", "best", "curves-shape",
        "list-type", "params-order", "schedule-length", "weights-sparse"])
def test_a_checkpoint_whose_tree_differs_is_refused_before_loading(tmp_path, change):
    run = make_run(tmp_path)
    run.end_epoch(trained_state())
    saved = torch.load(run.checkpoint, weights_only=True)
    change(saved["state"])
    torch.save(saved, run.checkpoint)
    fresh = fresh_state()
    before = fresh["model"].weight.clone()
    with pytest.raises(utils.RunError, match="does not fit this script and these flags"):
        make_run(tmp_path).load(fresh)
    assert torch.equal(fresh["model"].weight, before)  # nothing was loaded


def test_a_checkpoint_of_other_flags_names_them(tmp_path):
    make_run(tmp_path, {"zdim": 20, "lr": 1.0}).end_epoch(trained_state())
    with pytest.raises(utils.RunError, match="zdim: checkpoint 20 vs now 2"):
        make_run(tmp_path, {"zdim": 2, "lr": 1.0}).load(fresh_state())


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    run = make_run(tmp_path)
    torch.save({"state": Payload()}, run.checkpoint)
    with pytest.raises(utils.RunError, match="holds pickled objects, not only tensors"):
        run.load(fresh_state())
    assert not marker.exists()


def test_a_checkpoint_that_is_not_a_regular_file_is_never_opened(tmp_path):
    run = make_run(tmp_path)
    os.mkfifo(run.checkpoint)  # opening it would block until a writer comes
    with pytest.raises(utils.RunError, match="no checkpoint file at"):
        run.load(fresh_state())


def test_the_lock_file_is_never_followed_through_a_link(tmp_path, capsys):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    os.symlink(target, tmp_path / "m_run.lock")
    with make_run(tmp_path) as run:
        run.start([])
    assert run.status == 1 and "m_run.lock: Too many levels of symbolic links" in (
        capsys.readouterr().err)
    assert target.read_text() == "keep me"


def test_an_earlier_runs_metrics_or_checkpoint_are_refused_without_resume_or_overwrite(
        tmp_path, capsys):
    for name in ("m_metrics.json", "m_checkpoint.pt"):
        (tmp_path / name).write_text("old")
        with make_run(tmp_path) as run:
            run.start([])
            raise AssertionError("started")
        assert run.status == 1 and capsys.readouterr().err == (
            f"error: {tmp_path / name} holds an earlier run: add --resume to continue it, "
            "--overwrite to replace its files, or use another --out_dir\n")
        assert (tmp_path / name).read_text() == "old"
        os.remove(tmp_path / name)


def test_overwrite_deletes_the_files_of_the_run_and_no_other(tmp_path):
    ours = ("m_samples_epoch4.png", "m_checkpoint.pt", "m_metrics.json", "m_model.pt")
    others = ("m_samples_epoch4_annotated.png", "m_samples_mine.png", "m2_metrics.json",
              "other.txt", ".m_mine.tmp", ".m_model.pt.999.tmp")
    for name in ours + others:
        (tmp_path / name).write_text("old")
    run = make_run(tmp_path)
    run.args.overwrite = True
    with run:
        run.start(["samples_epoch4.png", "model.pt"])
    # a killed write of the run's own (.NAME.PID.tmp) goes too, a user's .tmp stays
    assert sorted(os.listdir(tmp_path)) == sorted([*others[:5], "m_run.lock"])


def test_the_resume_line_repeats_the_flags_without_overwrite(tmp_path, capsys):
    with make_run(tmp_path, argv=["--lr", "1", "--overwrite"]) as run:
        run.end_epoch(trained_state())
        raise utils.RunError("the disk is full")
    capsys.readouterr()
    with make_run(tmp_path, argv=["--lr", "1", "--overwrite"]) as run:
        run.end_epoch(trained_state())
        raise KeyboardInterrupt
    err = capsys.readouterr().err
    assert run.status == 130 and err.startswith(f"interrupted: {run.checkpoint} holds 1 ")
    assert err.rstrip().endswith("script.py --lr 1 --resume")


def test_an_allocation_failure_is_one_line_naming_the_flags_to_lower(tmp_path, capsys):
    with make_run(tmp_path) as run:
        torch.empty(2 ** 62, dtype=torch.uint8)
    assert run.status == 1
    assert capsys.readouterr().err == "error: out of memory; lower --size\n"


def test_code_version_names_the_project_files_this_process_imported():
    version = utils.code_version()
    assert "utils.py" in version["files"]
    assert not any("site-packages" in f for f in version["files"])
    assert version["commit"] is None or len(version["commit"]) == 40
