"""How a view reaches this process's services: one typed accessor over `app.extensions`.

The app factory installs the Runtime once (`install`); views call `current_runtime()`
rather than reading the extensions dict, so a rename or a second key cannot drift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:  # the runtime builds the app's services; the API only reads them
    from rollout.runtime import Runtime

EXTENSION = "rollout"


def install(app: Flask, runtime: Runtime) -> None:
    app.extensions[EXTENSION] = runtime


def current_runtime() -> Runtime:
    """The Runtime of the app handling the current request."""
    runtime: Runtime = current_app.extensions[EXTENSION]
    return runtime
