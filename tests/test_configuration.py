"""`.env.example` documents every variable the code reads, and settings errors name the variable."""

import re
from pathlib import Path

import pytest

from flags import DEFINITIONS
from rollout.config import Settings
from rollout.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
# read directly from the environment: by gunicorn's config file, prometheus_client and the CLI
OUTSIDE_SETTINGS = {"GUNICORN_ACCESS_LOG", "GUNICORN_LOG_LEVEL", "GUNICORN_THREADS", "ROLLOUT_DEBUG",
                    "PROMETHEUS_MULTIPROC_DIR"}


def documented() -> set[str]:
    return set(re.findall(r"^# ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def test_every_setting_and_flag_is_in_env_example():
    expected = {f.alias for f in Settings.model_fields.values() if f.alias} | set(DEFINITIONS) | OUTSIDE_SETTINGS
    assert expected - documented() == set()
    assert documented() - expected == set(), "documented variables the code never reads"


def test_no_other_module_reads_its_own_environment_variables():
    readers = set()
    for path in list((ROOT / "rollout").rglob("*.py")) + list((ROOT / "flags").rglob("*.py")):
        readers |= set(re.findall(r"os\.environ(?:\.get)?[\[(]\"([A-Z_]+)\"", path.read_text()))
    assert readers <= OUTSIDE_SETTINGS


@pytest.mark.parametrize("name, value", [("V2_DIMENSIONS", "many"), ("ROLLOUT_PORT", "99999"),
                                         ("V1_EMBEDDER", "cohere"), ("REDIS_KEY_PREFIX", "has space")])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: value})
