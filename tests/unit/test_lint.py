"""Line length is enforced: every line of the package, the tests and the analyses fits the configured limit
(pyproject.toml [tool.ruff] line-length), checked by ruff's E501."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_every_line_fits_the_configured_line_length():
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.skip("ruff is not installed (it comes with the dev extras: pip install -e '.[dev]')")
    cmd = [sys.executable, "-m", "ruff", "check", "--select", "E501", "workbench", "tests", "analyses"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{' '.join(cmd[2:])} found lines over the limit:\n{out.stdout}{out.stderr}"
