import argparse
import json
import math
import os
import stat

import pytest
import torch

import results
import utils


def test_number_flags():
    assert utils.positive_int("3") == 3
    assert utils.nonneg_int("0") == 0
    assert utils.positive_float("1e-4") == pytest.approx(1e-4)
    for check, text in ((utils.positive_int, "0"), (utils.positive_int, "1.5"),
                        (utils.nonneg_int, "-1"), (utils.positive_float, "0"),
                        (utils.positive_float, "inf"), (utils.positive_float, "nan")):
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)


def test_save_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.json"
    utils.save_json({"elbo": -90.0}, path)
    with pytest.raises(ValueError):
        utils.save_json({"elbo": math.nan}, path)
    assert json.loads(path.read_text()) == {"elbo": -90.0}
    assert os.listdir(tmp_path) == ["m.json"]  # no temporary file left behind


def test_save_png_refuses_non_finite_images(tmp_path):
    image = torch.zeros(1, 28, 28)
    image[0, 3, 3] = math.inf
    with pytest.raises(utils.TrainingError):
        utils.save_png(image, tmp_path / "x.png")
    assert not os.listdir(tmp_path)


def test_atomic_files_follow_the_umask(tmp_path):
    utils.save_torch({"a": 1}, tmp_path / "c.pt")
    mode = stat.S_IMODE(os.stat(tmp_path / "c.pt").st_mode)
    assert mode == 0o666 & ~utils._umask()


def test_load_checkpoint_names_the_differing_settings(tmp_path):
    path = tmp_path / "c.pt"
    utils.save_torch({"config": {"zdim": 20, "lr": 1e-3}}, path)
    assert utils.load_checkpoint(path, {"zdim": 20, "lr": 1e-3})["config"]["zdim"] == 20
    with pytest.raises(utils.TrainingError, match="zdim: checkpoint 20 vs now 2"):
        utils.load_checkpoint(path, {"zdim": 2, "lr": 1e-3})


def test_rng_state_round_trip():
    utils.seed_everything(1)
    state = utils.rng_state()
    first = (torch.rand(3), __import__("random").random())
    utils.set_rng_state(state)
    assert torch.equal(torch.rand(3), first[0])
    assert __import__("random").random() == first[1]


def test_results_section_is_written_from_the_metrics(tmp_path):
    metrics = {"zdim": 20, "epochs": 2, "train_elbo": [-120.0, -110.5],
               "val_elbo": [-121.0, -111.25], "test_elbo": -111.0,
               "test_nll_iw": 105.125, "iw_samples": 50,
               "seconds_per_epoch": [4.0, 5.0], "device": "cpu"}
    utils.save_json(metrics, tmp_path / "vae_z20_metrics.json")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.START}\nold\n{results.END}\nend\n")
    results.write(str(tmp_path), str(readme))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{results.END}\nend\n")
    assert "old" not in text
    assert ("| `--zdim 20 --epochs 2` | 2 | -110.50 | -111.25 | **-111.00** | "
            "**105.12** (k = 50) | - |") in text


def test_results_row_of_a_keep_best_run_shows_the_tested_epoch(tmp_path):
    metrics = {"zdim": 40, "epochs": 3, "keep_best": True, "tested_epoch": 2,
               "train_elbo": [-120.0, -110.5, -100.0], "val_elbo": [-121.0, -111.25, -112.0],
               "test_elbo": -111.0, "test_nll_iw": 105.125, "iw_samples": 50,
               "seconds_per_epoch": [4.0, 5.0, 6.0], "device": "cpu",
               "sample_quality": {"frechet_distance": 12.34, "class_min_share": 0.05,
                                  "means_frechet_distance": 50.0}}
    os.makedirs(tmp_path / results.BEST_DIR)
    utils.save_json(metrics, tmp_path / results.BEST_DIR / f"vae_z{results.BEST_ZDIM}_metrics.json")
    text = results.results(str(tmp_path))
    assert (f"| `--zdim 40 --epochs 3 --keep_best` | 3 | -110.50 | -111.25 | "
            "**-111.00** | **105.12** (k = 50) | 12.3 | 5.0 | cpu |") in text
    assert "| VAE `--zdim 40 --epochs 3 --keep_best`, binary samples | 12.3 | 5.0 |" in text
    assert ("tested at epoch 2): test NLL **105.12** nats (k = 50, all 10,000 test "
            "images), 16.56 nats above the published 88.56") in text
