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


@pytest.fixture(scope="session")
def user_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("user_cache")


@pytest.fixture(autouse=True)
def one_thread_per_run(monkeypatch, user_cache):
    """Scripts started by a test get one torch thread each: on a small,
    shared CPU, several threads per process spin against each other. They
    share one user cache folder, so that with a read-only DATA_DIR the digit
    classifier is trained once per session, and never left in ~/.cache."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(user_cache))


def command(script, *args):
    """The command line of a project script ("a3_vae_template.py") or module
    ("experiments.vae_mc_vs_is"), as a user runs it from the root."""
    if script.endswith(".py"):
        return [sys.executable, os.path.join(ROOT, script), *map(str, args)]
    return [sys.executable, "-m", script, *map(str, args)]


def run_script(script, *args, timeout=600):
    """Run a project script to its end; return the CompletedProcess."""
    return subprocess.run(command(script, *args), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def start_script(script, *args):
    """Start a project script; return the Popen, its output as text pipes."""
    return subprocess.Popen(command(script, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
