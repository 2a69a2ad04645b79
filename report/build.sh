#!/usr/bin/env bash
# Build report/report.pdf: numbers from images/*.json, then pdflatex + bibtex.
#
#   report/build.sh            # or: make report
#   STRICT=1 report/build.sh   # also fail on missing figures or numbers (final build)
#
# Fails (non-zero) on LaTeX errors, undefined references or citations, and
# images that \includegraphics cannot find. A figure or metrics file that does
# not exist yet is shown as a red placeholder and reported as a warning, unless
# STRICT=1. Installs TeX Live from Debian packages only when pdflatex is absent.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
STRICT=${STRICT:-0}

if ! command -v pdflatex >/dev/null || ! command -v bibtex >/dev/null; then
    echo "pdflatex not found: installing TeX Live from Debian packages"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        texlive-latex-base texlive-latex-recommended texlive-fonts-recommended
fi

# The course's style file where it can be had (downloaded once, never committed), else the
# look-alike (report.tex picks it).
STYLE_URL=https://media.nips.cc/Conferences/NIPS2018/Styles/nips_2018.sty
if [ ! -f nips_2018.sty ] && ! kpsewhich nips_2018.sty >/dev/null 2>&1; then
    if curl -fsSL --max-time 20 -o nips_2018.sty.tmp "$STYLE_URL" 2>/dev/null \
            && grep -q ProvidesPackage nips_2018.sty.tmp; then
        mv nips_2018.sty.tmp nips_2018.sty
    else
        rm -f nips_2018.sty.tmp
        echo "note: $STYLE_URL cannot be downloaded: building with report/nips_lookalike.sty"
    fi
fi

# The author line: NAME (and STUDENT_ID) from the environment, taken literally and
# escaped for LaTeX; without NAME, the model answer's.
rm -f student.tex
if [ -n "${NAME:-}" ]; then
    "$PYTHON" -c 'import sys
name = " ".join(a for a in sys.argv[1:] if a)
special = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
escaped = "".join(special.get(c, "\\" + c if c in "&%$#_{}" else c) for c in name)
print("\\newcommand{\\StudentName}{%s}" % escaped)' "$NAME" "${STUDENT_ID:+($STUDENT_ID)}" > student.tex
fi

strict_flag=()
[ "$STRICT" = 1 ] && strict_flag=(--strict)
(cd .. && "$PYTHON" -m report.make_results "${strict_flag[@]}")

run_latex() {
    if ! pdflatex -interaction=nonstopmode -halt-on-error -file-line-error report.tex \
            >/dev/null; then
        echo "error: pdflatex failed; the first errors in report/report.log:" >&2
        grep -A3 -E '^(\./)?[^:]*:[0-9]+:|^! ' report.log | head -30 >&2 || true
        exit 1
    fi
}

rm -f report.aux report.bbl report.blg report.out report.toc
run_latex
bibtex_status=0
bibtex report >/dev/null || bibtex_status=$?
if [ "$bibtex_status" -ge 2 ]; then
    echo "error: bibtex failed (status $bibtex_status):" >&2
    cat report.blg >&2
    exit 1
fi
run_latex
run_latex

failed=0
if grep -E "(Reference|Citation).*undefined|There were undefined references|undefined citations" report.log >&2; then
    echo "error: undefined references or citations (see above)" >&2
    failed=1
fi
if grep -E "^LaTeX Warning: File .* not found|File \`.*' not found" report.log >&2; then
    echo "error: missing graphics file (see above)" >&2
    failed=1
fi
if grep -q "Warning--" report.blg 2>/dev/null; then
    grep "Warning--" report.blg >&2
    echo "warning: bibtex warnings (see above)" >&2
fi
missing=$(grep -o "MISSING FIGURE: [^ ]*" report.log | sort -u || true)
if [ -n "$missing" ]; then
    echo "$missing" | sed 's/^/warning: placeholder for /' >&2
    if [ "$STRICT" = 1 ]; then
        echo "error: figures missing (STRICT=1)" >&2
        failed=1
    fi
fi
if [ "$STRICT" = 1 ] && ! (cd .. && "$PYTHON" -m report.check_layout --name "${NAME:-}"); then
    echo "error: the report breaks a layout rule (STRICT=1; see above)" >&2
    failed=1
fi
[ "$failed" = 0 ] || exit 1
pages=$(grep -o "Output written on report.pdf ([0-9]* pages" report.log | grep -o "[0-9]* pages" || true)
echo "wrote report/report.pdf ($pages)"
