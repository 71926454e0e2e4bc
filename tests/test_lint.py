"""The linters are part of the test command: `ruff check .` and `mypy` (configured in pyproject.toml).

`.ci/run` runs the README's test command and nothing else, so this is where they pass or fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(*command: str) -> None:
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"


def test_ruff_finds_nothing():
    _run("ruff", "check", ".")


def test_mypy_finds_nothing():
    _run("mypy")
