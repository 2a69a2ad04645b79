"""The hand-in: named from the last name in ASCII, and a zip that builds its
report in an empty folder (after `make report`, as in CI)."""

import os
import shutil
import subprocess
import zipfile

import pytest

from report import submission


@pytest.mark.parametrize(
    "last_name, stem",
    [("Müller", "muller"), ("van der Berg", "vanderberg"), ("Øster-Straße", "osterstrasse")],
)
def test_the_zip_is_named_by_the_last_name_in_ascii(last_name, stem):
    assert submission.ascii_name(last_name) == stem


def test_names_are_taken_literally_and_escaped_for_latex():
    name = "A`touch pwned`$HOME & \\o/ 100% {x}_~^"
    make = ["make", "-n", "submission", f"NAME={name}", f"LASTNAME={name}"]
    subprocess.run(make, cwd=submission.ROOT, capture_output=True, check=True)
    assert not os.path.exists(os.path.join(submission.ROOT, "pwned"))
    build = open(os.path.join(submission.ROOT, "report", "build.sh")).read()
    escape = build.split('"$PYTHON" -c \'', 1)[1].split("'", 1)[0]
    done = subprocess.run(["python3", "-c", escape, name], capture_output=True, text=True)
    assert done.stdout.strip() == (
        r"\newcommand{\StudentName}{A`touch pwned`\$HOME \& \textbackslash{}o/ 100\% "
        r"\{x\}\_\textasciitilde{}\textasciicircum{}}"
    )


def test_the_zip_builds_its_report_in_an_empty_folder(tmp_path, monkeypatch):
    if not os.path.exists(os.path.join(submission.ROOT, "report", "report.log")):
        pytest.fail("run make report first (CI does)")
    if not shutil.which("pdflatex"):
        pytest.fail("pdflatex is missing: make report installs it")
    monkeypatch.setenv("LASTNAME", "Müller")
    monkeypatch.setenv("NAME", "Jan Müller")
    path = submission.main(str(tmp_path))
    assert os.path.basename(path) == "muller_assignment3.zip"
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(path).extractall(unpacked)
    assert (unpacked / "report.pdf").is_file() and (unpacked / "code" / "Makefile").is_file()
    report = unpacked / "code" / "report"
    for command in (["pdflatex", "-interaction=nonstopmode", "report.tex"], ["bibtex", "report"]):
        subprocess.run(command, cwd=report, capture_output=True, timeout=300)
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=report,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = (report / "report.log").read_text(errors="replace")
    assert done.returncode == 0, log[-2000:]
    assert "not found" not in log and "MISSING FIGURE" not in log
    assert (report / "report.pdf").stat().st_size > 100_000
