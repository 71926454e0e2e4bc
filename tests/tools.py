"""External tools and optional modules the tests use: a skip with its reason on a developer's
machine, a failure in CI (CI=true), where `.ci/run` installs every one of them."""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> None:
    """Skip with `reason`, or fail in CI: there nothing may check less than it says."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run must install it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need_tool(command: str, package: str) -> str:
    """The path of `command`, else skip (fail in CI) naming the Debian package that provides it."""
    path = shutil.which(command)
    if path is None:
        missing(f"{command} is not installed (Debian: apt-get install {package})")
    return path


def need_module(name: str, install: str = "pip install -e '.[test]'") -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python module {name} is not installed ({install})")
        raise  # unreachable: missing() always raises
