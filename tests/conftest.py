import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


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
    if not os.path.isdir(os.path.join(path, "binarized_mnist")):
        pytest.fail(f"DATA_DIR={path} has no binarized_mnist/ folder")
    return os.path.abspath(path)


def run_script(script, *args, timeout=600):
    """Run one of the project's scripts as a user would; return the result."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
