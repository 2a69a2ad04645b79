"""Pack the hand-in: lastname_assignment3.zip with report.pdf at the top and
code/ holding the code and everything report/report.tex needs to build (its
generated numbers, style file, bibliography and figures) under the
repository's paths. Run by `make submission` after the report is built:

    make submission LASTNAME="van der Berg" NAME="Anna van der Berg"

LASTNAME and NAME come from the environment and are taken literally: they
reach no shell, and report/build.sh escapes them for LaTeX.
"""

import os
import re
import subprocess
import sys
import unicodedata
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# letters that Unicode does not decompose into a base letter and accents
SPECIAL = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th"}
CODE = ["*.py", "*.md", "*.txt", "*.toml", "Makefile", "pytest.ini", ".ci/run", "report/*"]


def ascii_name(last_name):
    """'Müller' -> 'muller', 'van der Berg' -> 'vanderberg': lower case ASCII."""
    text = "".join(SPECIAL.get(c, c) for c in last_name.lower())
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", text)


def members():
    """(path in the repository, name in the zip): the tracked code, the built
    report's inputs that git ignores, and the figures the report shows."""
    files = subprocess.run(
        ["git", "-C", ROOT, "ls-files", "--", *CODE], capture_output=True, text=True, check=True
    ).stdout.split()
    files = [f for f in files if f != "report/report.pdf"] + ["report/results.tex"]
    if os.path.exists(os.path.join(ROOT, "report", "student.tex")):
        files.append("report/student.tex")
    with open(os.path.join(ROOT, "report", "report.log"), errors="replace") as log:
        figures = sorted(set(re.findall(r"^FIGURE: (\S+)$", log.read(), re.MULTILINE)))
    files = dict.fromkeys(files + figures)  # once each, in order
    return [("report/report.pdf", "report.pdf")] + [(f, "code/" + f) for f in files]


def main(out_dir=ROOT):
    last_name, name = os.environ.get("LASTNAME", ""), os.environ.get("NAME", "")
    if not ascii_name(last_name) or not name.strip():
        sys.exit('error: make submission needs LASTNAME="..." and NAME="First Last"')
    zip_name = f"{ascii_name(last_name)}_assignment3.zip"
    missing = [f for f, _ in members() if not os.path.isfile(os.path.join(ROOT, f))]
    if missing:
        sys.exit(f"error: {', '.join(missing)} missing; run make report first")
    path = os.path.join(out_dir, zip_name)
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
        for member, arcname in members():
            z.write(os.path.join(ROOT, member), arcname)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
