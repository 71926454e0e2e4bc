"""Version names are data: no module names `v1` or `v2` literally, except the defaults.

`rollout/config.py` holds the defaults (the two versions of earlier releases, configured by
V1_* / V2_*) and `rollout/sql/` the upgrade that registers them. The modules listed in
`NOT_CONVERTED_YET` still name them and are to be moved onto the registry; the list may only
shrink: the test fails when a listed module no longer names them, so it is taken off.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LITERAL = re.compile(r"""["']v[12]["']""")
DEFAULTS = {"rollout/config.py"}
NOT_CONVERTED_YET = {
    "rollout/analytics/figures.py",
    "rollout/analytics/queryset.py",
    "rollout/cli/monitoring.py",
}


def naming_modules() -> set[str]:
    found = set()
    for package in ("rollout", "flags"):
        for path in (ROOT / package).rglob("*.py"):
            if LITERAL.search(path.read_text()):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_no_module_names_v1_or_v2_outside_the_defaults():
    offenders = naming_modules() - DEFAULTS - NOT_CONVERTED_YET
    assert not offenders, f"take version names from the registry (Roles, runtime.version()), not literals: {offenders}"


def test_the_list_of_modules_to_convert_only_shrinks():
    converted = NOT_CONVERTED_YET - naming_modules()
    assert not converted, f"these no longer name v1/v2: take them off NOT_CONVERTED_YET: {converted}"


def test_the_check_finds_a_literal():
    """The pattern catches both quote styles and leaves longer names alone."""
    assert LITERAL.search("x = 'v1'") and LITERAL.search('route("v2")')
    assert not LITERAL.search("name = 'v10'") and not LITERAL.search("doc_embeddings_v1")
