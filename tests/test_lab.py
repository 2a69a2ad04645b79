"""The report's tooling: numbers reach the report only from the results
files, a missing one shows as ?? (and fails a strict build), and a run whose
script changed since its recorded commit is named stale."""

import json
import math
import subprocess
import sys

import pytest

from report import results

VAE = {"epochs": 4, "zdim": 20, "iw_samples": 500, "train_images": 50000, "test_elbo": -93.8}
VAE.update(train_elbo=[-160.0, -110.0, -100.0, -95.0], val_elbo=[-130.0, -108.0, -101.0, -97.0])
VAE.update(test_nll_iw=90.1, seconds_per_epoch=[8.0] * 4, test_seconds=200.0)


def build(tmp_path, files, strict=False):
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    out = tmp_path / "results.tex"
    argv = ["--images", str(tmp_path), "--out", str(out)] + ["--strict"] * strict
    done = subprocess.run(
        [sys.executable, "-m", "report.make_results", *argv],
        capture_output=True,
        text=True,
        cwd=results.ROOT,
    )
    return done, out.read_text() if out.exists() else ""


def test_macros_are_read_from_the_metrics_files(tmp_path):
    done, tex = build(tmp_path, {"vae_z20_metrics.json": VAE, "vae_z2_metrics.json": VAE})
    assert r"\newcommand{\VaeTwentyTestElbo}{\ensuremath{-}93.80}" in tex
    assert r"\newcommand{\VaeTwentyTestNll}{90.10}" in tex
    assert r"\newcommand{\VaeTwentyElboGap}{3.70}" in tex  # -NLL - ELBO
    assert r"\newcommand{\VaeTwentyCrossEpoch}{3}" in tex  # train above val from epoch 3 on
    assert r"\newcommand{\VaeTwentyHalfFile}{vae_z20_samples_epoch2.png}" in tex


def test_a_missing_file_shows_as_question_marks_and_fails_a_strict_build(tmp_path):
    done, tex = build(tmp_path, {"vae_z20_metrics.json": VAE}, strict=True)
    assert done.returncode == 1 and "vae_z2_metrics.json" in done.stderr
    assert r"\newcommand{\VaeTwoTestElbo}{\MissingResult{vae_z2_metrics.json}}" in tex


def test_the_ideal_discriminator_loss_minimises_the_smoothed_loss(tmp_path):
    gan = {"real_label": 0.9, "iterations": 10, "n_epochs": 1}
    _, tex = build(tmp_path, {"gan_metrics.json": gan})

    def loss(d, r=0.9):  # real target r, fake target 0, D = d on both
        return -(r * math.log(d) + (1 - r) * math.log(1 - d)) - math.log(1 - d)

    best = min((i / 1000 for i in range(1, 1000)), key=loss)
    assert r"\newcommand{\GanIdealD}{%.2f}" % best in tex
    assert r"\newcommand{\GanIdealLossD}{%.2f}" % loss(best) in tex


def test_runs_whose_script_changed_since_their_commit_are_stale(tmp_path):
    head = subprocess.run(
        ["git", "-C", results.ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    unchanged = not subprocess.run(
        ["git", "-C", results.ROOT, "diff", "--quiet", "HEAD", "--", "a3_vae_template.py"]
    ).returncode
    runs = {"old": "5b000565216590db7b6172119640215b03426423", "head": head, "none": None}
    for zdim, commit in zip((2, 5, 10), runs.values()):
        metrics = {**VAE, "code": {"commit": commit, "changed": False}}
        (tmp_path / f"vae_z{zdim}_metrics.json").write_text(json.dumps(metrics))
    stale = {path.rsplit("/", 1)[1] for path, _ in results.stale_results(str(tmp_path))}
    assert "vae_z2_metrics.json" in stale and "vae_z10_metrics.json" in stale
    assert ("vae_z5_metrics.json" in stale) != unchanged


@pytest.mark.parametrize("body", ["one", "two\nlines"])
def test_generated_sections_replace_only_what_lies_between_their_markers(body):
    text = "head\n<!-- x:start (generated) -->\nold\n<!-- x:end -->\ntail\n"
    new = results.replace_between(text, "x", body, "README.md")
    assert new == f"head\n<!-- x:start (generated) -->\n{body}\n<!-- x:end -->\ntail\n"
    with pytest.raises(SystemExit):
        results.replace_between("no markers", "x", body, "README.md")
