"""The documentation writer: results from the metrics files, flag tables from the
parsers, and the names of results whose code has changed since their run."""
import argparse
import os
import subprocess

import utils
from report import results


def docs_tree(root):
    """A README.md and docs/ with the generated sections' markers."""
    (root / "docs").mkdir()
    for path, name in (("README.md", "headline"), ("docs/results.md", "results"),
                       ("docs/flags.md", "flags:vae")):
        (root / path).write_text(f"intro\n<!-- {name}:start x -->\nold\n<!-- {name}:end -->\nend\n")


def test_results_sections_are_written_from_the_metrics(tmp_path):
    metrics = {"zdim": 20, "epochs": 2, "train_elbo": [-120.0, -110.5],
               "val_elbo": [-121.0, -111.25], "test_elbo": -111.0,
               "test_nll_iw": 105.125, "iw_samples": 50,
               "seconds_per_epoch": [4.0, 5.0], "device": "cpu"}
    utils.save_json(metrics, tmp_path / "vae_z20_metrics.json")
    docs_tree(tmp_path)
    results.write(str(tmp_path), str(tmp_path))
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("intro\n<!-- headline:start x -->\n") and "old" not in readme
    assert readme.endswith("<!-- headline:end -->\nend\n")
    assert "| VAE, `--zdim 20`, 2 epochs | test ELBO **-111.00**, NLL **105.12** nats" in readme
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "old" not in text
    assert ("| `--zdim 20 --epochs 2` | 2 | -110.50 | -111.25 | **-111.00** | "
            "**105.12** (k = 50) | - |") in text


def test_results_row_of_a_keep_best_run_shows_the_tested_epoch(tmp_path):
    metrics = {"zdim": 40, "epochs": 3, "keep_best": True, "tested_epoch": 2,
               "train_elbo": [-120.0, -110.5, -100.0], "val_elbo": [-121.0, -111.25, -112.0],
               "test_elbo": -111.0, "test_nll_iw": 105.125, "iw_samples": 50,
               "seconds_per_epoch": [4.0, 5.0, 6.0], "device": "cpu",
               "sample_quality": {"frechet_distance": 12.34, "class_min_share": 0.05,
                                  "two_sample_accuracy": 0.875, "means_frechet_distance": 50.0},
               "quality_reference": {"real_frechet_distance": 0.5, "real_class_min_share": 0.09,
                                     "real_two_sample_accuracy": 0.5125}}
    os.makedirs(tmp_path / results.BEST_DIR)
    utils.save_json(metrics, tmp_path / results.BEST_DIR / f"vae_z{results.BEST_ZDIM}_metrics.json")
    text = results.results(str(tmp_path))
    assert ("| `--zdim 40 --epochs 3 --keep_best` | 3 | -110.50 | -111.25 | "
            "**-111.00** | **105.12** (k = 50) | 12.3 | 5.0 | cpu |") in text
    assert "| VAE `--zdim 40 --epochs 3 --keep_best`, binary samples | 12.3 | 87.5 | 5.0 |" in text
    assert "| real training images (binarized) | 0.50 | 51.2 | 9.0 |" in text
    assert ("tested at epoch 2): test NLL **105.12** nats (k = 50, all 10,000 test "
            "images), 16.56 nats above the published 88.56") in text


def test_flag_tables_follow_the_parser(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=40, help="max number of epochs")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu"))
    parser.add_argument("--resume", action="store_true", help="continue")
    table = results.flags_table(parser)
    assert table[2:] == ["| `--epochs` | `40` | max number of epochs |",
                         "| `--seed` | `0` | random seed |",
                         "| `--device` | `auto` | one of auto, cpu |",
                         "| `--resume` |  | continue |"]
    docs_tree(tmp_path)
    results.write(str(tmp_path), str(tmp_path), {"vae": table})
    text = (tmp_path / "docs" / "flags.md").read_text()
    assert "\n".join(table) in text and "old" not in text


def test_the_flag_tables_are_those_of_the_scripts():
    with open(os.path.join(results.ROOT, "docs", "flags.md")) as f:
        text = f.read()
    for name, table in results.flags_sections().items():
        assert "\n".join(table) in text, f"run `make results`: the {name} flags changed"
        assert all(line.split(" | ")[2].strip() != "|" for line in table[2:]), "no help text"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_results_of_changed_code_are_named_stale(tmp_path, monkeypatch):
    repo, out = tmp_path / "repo", tmp_path / "repo" / "images"
    out.mkdir(parents=True)
    (repo / "model.py").write_text("x = 1\n")
    (repo / "other.py").write_text("y = 1\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "model.py", "other.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = git(repo, "rev-parse", "HEAD")
    monkeypatch.setattr(results, "ROOT", str(repo))
    code = {"commit": commit, "files": ["model.py"], "uncommitted_changes": False}
    utils.save_json({"code": code}, out / "a_metrics.json")
    utils.save_json({"code": {**code, "uncommitted_changes": True}}, out / "b_metrics.json")
    utils.save_json({}, out / "c_metrics.json")
    (repo / "other.py").write_text("y = 2\n")  # not code of a's run
    assert [os.path.basename(p) for p, _ in results.stale_results(str(out))] == [
        "b_metrics.json", "c_metrics.json"]
    (repo / "model.py").write_text("x = 2\n")
    stale = dict(results.stale_results(str(out)))
    assert stale[str(out / "a_metrics.json")] == f"code changed since {commit[:8]}: model.py"


def test_the_recipe_verdict_weighs_the_gap_against_its_standard_error():
    from report.make_results import recipe_verdict

    def comparison(plain, remedy, std, seeds=3):
        return {"seeds": list(range(seeds)), "recipes": {
            "plain template": {"frechet_distance_mean": plain, "frechet_distance_std": std},
            "dropout + label smoothing": {"frechet_distance_mean": remedy,
                                          "frechet_distance_std": std}}}

    # standard error of the gap: sqrt(2 std^2 / seeds)
    firm = recipe_verdict(comparison(10.0, 4.0, 2.0))  # gap 6, error 1.63
    assert firm.startswith("dropout and label smoothing")
    assert firm.endswith("by more than three standard errors of the difference")
    trend = recipe_verdict(comparison(4.0, 5.0, 0.8))  # gap 1, error 0.65
    assert trend.startswith("the plain template")
    assert trend.endswith("by 1.5 standard errors of the difference: a trend, not a firm "
                          "ranking with 3 seeds")
    assert recipe_verdict(comparison(4.0, 5.0, 0.8, seeds=12)).endswith("three standard "
                                                                        "errors of the difference")
    assert recipe_verdict(comparison(5.0, 4.5, 1.0)).endswith("no ranking")
    assert recipe_verdict({}) is None


def test_code_recorded_as_giving_the_same_outputs_keeps_results_current(tmp_path, monkeypatch):
    repo, out = tmp_path / "repo", tmp_path / "repo" / "images"
    out.mkdir(parents=True)
    git(repo, "init", "-q")

    def commit(text, other):
        (repo / "model.py").write_text(text)
        (repo / "other.py").write_text(other)
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "model.py", "other.py")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", text)
        return git(repo, "rev-parse", "HEAD")

    # the change refactors model.py and alters other.py, which the record's runs do not import
    base, refactored = commit("x = 1\n", "y = 1\n"), commit("x = 2 - 1\n", "y = 2\n")
    monkeypatch.setattr(results, "ROOT", str(repo))
    for name, files in (("a", ["model.py"]), ("b", ["model.py", "other.py"])):
        utils.save_json({"code": {"commit": base, "files": files, "uncommitted_changes": False}},
                        out / f"{name}_metrics.json")
    assert [os.path.basename(p) for p, _ in results.stale_results(str(out))] == [
        "a_metrics.json", "b_metrics.json"]
    utils.save_json({"base": base, "commit": refactored, "files": ["model.py"]},
                    out / "code_equivalence.json")
    assert [os.path.basename(p) for p, _ in results.stale_results(str(out))] == ["b_metrics.json"]
    (out / "b_metrics.json").unlink()
    assert results.stale_results(str(out)) == []
    # a later change to a file the record covers but the run did not import
    utils.save_json({"base": base, "commit": refactored, "files": ["model.py", "other.py"]},
                    out / "code_equivalence.json")
    (repo / "other.py").write_text("y = 3\n")
    assert results.stale_results(str(out)) == []
    (repo / "model.py").write_text("x = 3\n")  # code after the record: stale again
    assert [os.path.basename(p) for p, _ in results.stale_results(str(out))] == ["a_metrics.json"]
