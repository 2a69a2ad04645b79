import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir():
    """The folder with binarized_mnist/ and MNIST/raw/, from $DATA_DIR.

    Outside CI a missing DATA_DIR skips the tests that need real data; in CI
    it is an error, so that no real-data test can pass by being skipped.
    """
    path = os.environ.get("DATA_DIR")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("DATA_DIR is not set; CI must point it at the data")
        pytest.skip("set DATA_DIR to run the tests that need real data")
    for folder in ("binarized_mnist", os.path.join("MNIST", "raw")):
        if not os.path.isdir(os.path.join(path, folder)):
            pytest.fail(f"DATA_DIR={path} has no {folder}/ folder")
    return os.path.abspath(path)


def command(script, *args):
    """The command line of a project script ("a3_vae_template.py")."""
    return [sys.executable, os.path.join(ROOT, script), *map(str, args)]


def environment():
    """One torch thread per started script: on a small shared CPU several
    threads per process spin against each other, and results stay bitwise
    comparable between runs."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_script(script, *args, timeout=600):
    """Run a project script (or a command list) to its end; return the CompletedProcess."""
    argv = script if isinstance(script, list) else command(script, *args)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=environment()
    )


def start_script(script, *args):
    """Start a project script (or a command list); return the Popen with text pipes."""
    argv = script if isinstance(script, list) else command(script, *args)
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=environment(),
    )
