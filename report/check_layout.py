"""Check the built report against the assignment's layout rules:

- every required figure sits on the page of its question or the next one,
  and before the bibliography (only appendix material follows it);
- the answers with a stated length (at most ten lines) keep to it, counted
  in the PDF's text when pdftotext is installed;
- with a student name given, the author line is no longer the placeholder.

    python -m report.check_layout [--name "First Last"]   # after report/build.sh

Standard library only; exits 1 and names every breach.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURES = {
    "1.13": "fig:elbo",
    "1.14": "fig:vae-samples",
    "1.15": "fig:manifold",
    "2.6": "fig:gan-samples",
    "2.7": "fig:interp",
}
MAX_LINES = {"1.12": 10, "2.5": 10, "3.1": 10}
PLACEHOLDER = "Model answer"


def label_pages(aux_text):
    """label -> page number, from the \\newlabel lines of report.aux."""
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"\\newlabel\{([^}]*)\}\{\{[^{}]*\}\{(\d+)\}", aux_text)
    }


def placement_errors(pages):
    errors = []
    references = pages.get("references")
    for question, figure in FIGURES.items():
        q, f = pages.get(f"q:{question}"), pages.get(figure)
        if q is None or f is None:
            errors.append(f"question {question} or its figure {figure} has no label")
        elif not 0 <= f - q <= 1:
            errors.append(f"{figure} is on page {f}, question {question} on page {q}")
        elif references is not None and f > references:
            errors.append(f"{figure} (page {f}) comes after the bibliography (page {references})")
    return errors


def answer_lines(text, question):
    """The lines of text from a question's heading to the next heading,
    figure, table, the appendix or the bibliography, as pdftotext -layout
    lays them out."""
    lines = text.splitlines()
    start = next(
        i for i, line in enumerate(lines) if re.match(rf"\s*Question {re.escape(question)}\b", line)
    )
    body = []
    for line in lines[start + 1 :]:
        line = line.lstrip("\f")  # a page break: the answer goes on
        if re.match(
            r"\s*(Question \d|\d (Variational|Generative|Conclusion)|"
            r"Figure \d+:|Table \d+:|References|Appendix)",
            line,
        ):
            break
        if line.strip() and not line.strip().isdigit():  # not a page number
            body.append(line)
    return body


def length_errors(pdf):
    if not shutil.which("pdftotext"):
        print("note: pdftotext is not installed; answer lengths not checked")
        return []
    text = subprocess.run(
        ["pdftotext", "-layout", pdf, "-"], check=True, capture_output=True, text=True
    ).stdout
    errors = []
    for question, limit in MAX_LINES.items():
        n = len(answer_lines(text, question))
        if n > limit:
            errors.append(f"question {question} has {n} lines, at most {limit} allowed")
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="", help="the student name the build was given")
    args = parser.parse_args(argv)
    with open(os.path.join(HERE, "report.aux")) as f:
        errors = placement_errors(label_pages(f.read()))
    errors += length_errors(os.path.join(HERE, "report.pdf"))
    with open(os.path.join(HERE, "report.log"), errors="replace") as f:
        author = re.search(r"AUTHOR LINE: (.*)", f.read())
    if args.name and (author is None or author.group(1).strip() == PLACEHOLDER):
        errors.append("the author line is still the placeholder")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
