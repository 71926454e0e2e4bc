"""`.env.example` documents every variable the code reads, and settings errors name the variable."""

import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from flags import DEFINITIONS
from rollout.config import Settings
from rollout.embedders import build_embedder
from rollout.embedders.registry import PROVIDERS, Provider, ProviderAccount, credential_variables
from rollout.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
# read directly from the environment: by gunicorn's config file, prometheus_client and the CLI
OUTSIDE_SETTINGS = {"GUNICORN_ACCESS_LOG", "GUNICORN_LOG_LEVEL", "GUNICORN_THREADS", "ROLLOUT_DEBUG",
                    "PROMETHEUS_MULTIPROC_DIR"}


def documented() -> set[str]:
    return set(re.findall(r"^# ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def test_every_setting_and_flag_is_in_env_example():
    expected = ({f.alias for f in Settings.model_fields.values() if f.alias} | set(DEFINITIONS) | OUTSIDE_SETTINGS
                | credential_variables())
    assert {"OPENAI_API_KEY", "OPENAI_BASE_URL", "GOOGLE_API_KEY", "GOOGLE_BASE_URL"} <= credential_variables()
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


def test_provider_credentials_are_read_into_accounts_blank_as_unset():
    settings = Settings.from_environ({"OPENAI_API_KEY": "sk-secret", "OPENAI_BASE_URL": "  ",
                                      "GOOGLE_API_KEY": "", "GOOGLE_BASE_URL": "http://127.0.0.1:9"})
    assert settings.account("openai") == ProviderAccount(api_key="sk-secret", base_url=None)
    assert settings.account("google") == ProviderAccount(api_key=None, base_url="http://127.0.0.1:9")
    assert settings.account("local") == ProviderAccount()  # no credentials: an empty account, never None
    assert "sk-secret" not in repr(settings.account("openai"))


def test_a_new_provider_is_one_module_and_one_registry_entry(monkeypatch):
    """A provider with a key of its own: its module and its entry, and no settings field."""
    module = types.ModuleType("acme_embedder_stub")

    def build(version, settings, for_query):
        from rollout.embedders import api_key
        return SimpleNamespace(key=api_key(version, settings), base_url=settings.account("acme").base_url,
                               model=version.model, for_query=for_query)

    module.build = build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(PROVIDERS, "acme", Provider("acme", module.__name__, "acme-embed-1",
                                                    key_variable="ACME_API_KEY", url_variable="ACME_BASE_URL"))
    assert {"ACME_API_KEY", "ACME_BASE_URL"} <= credential_variables()  # so .env.example must document them

    settings = Settings.from_environ({"V2_EMBEDDER": "acme", "ACME_API_KEY": "ak-1",
                                      "ACME_BASE_URL": "http://127.0.0.1:9"})
    assert settings.account("acme") == ProviderAccount(api_key="ak-1", base_url="http://127.0.0.1:9")
    embedder = build_embedder(settings.version("v2"), settings, purpose="query")
    assert (embedder.key, embedder.base_url, embedder.model, embedder.for_query) == (
        "ak-1", "http://127.0.0.1:9", "acme-embed-1", True)

    with pytest.raises(ConfigError, match="version v2 uses acme, which needs ACME_API_KEY"):
        keyless = Settings.from_environ({"V2_EMBEDDER": "acme"})
        build_embedder(keyless.version("v2"), keyless)
