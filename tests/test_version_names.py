"""Version names are data: no module names `v1` or `v2` literally, except the defaults.

`rollout/config.py` holds the defaults (the two versions of earlier releases, configured by
V1_* / V2_*) and `rollout/sql/` the upgrade that registers them (SQL, not scanned).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LITERAL = re.compile(r"""["']v[12]["']""")
DEFAULTS = {"rollout/config.py"}


def naming_modules() -> set[str]:
    found = set()
    for package in ("rollout", "flags"):
        for path in (ROOT / package).rglob("*.py"):
            if LITERAL.search(path.read_text()):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_no_module_names_v1_or_v2_outside_the_defaults():
    offenders = naming_modules() - DEFAULTS
    assert not offenders, f"take version names from the registry (Roles, runtime.version()), not literals: {offenders}"


def test_the_check_finds_a_literal_and_the_defaults_still_name_them():
    """The pattern catches both quote styles and leaves longer names alone."""
    assert LITERAL.search("x = 'v1'") and LITERAL.search('route("v2")')
    assert not LITERAL.search("name = 'v10'") and not LITERAL.search("doc_embeddings_v1")
    assert naming_modules() >= DEFAULTS  # the scan reaches the package (it finds the defaults)
