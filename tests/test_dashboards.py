"""grafana/: the dashboard JSON, its provisioning, the alert rules; every query run on a real Prometheus."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tools import need_module, need_tool

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "rag-rollout.json"
RULES = GRAFANA / "prometheus" / "rules"
PANELS = ("Latency p50 / p95 / p99", "Mean top similarity", "Error rate", "Traffic split: actual vs target",
          "Shadow overlap", "Fallbacks", "Circuit breaker state", "Migration coverage", "cache hit rate",
          "Alerts received", "Controller: leader and stage", "Controller: evaluation runs",
          "Controller: since the last run", "Controller: decisions")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dashboard_has_every_panel_the_issue_lists_on_the_provisioned_datasource():
    board = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in board["panels"]]
    for wanted in PANELS:
        assert any(wanted.lower() in title.lower() for title in titles), wanted
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["expr"].strip() and target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert board["templating"]["list"][0]["query"] == "prometheus"
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "rag-rollout.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_committed_dashboard_is_what_the_generator_makes():
    need_module("grafana_foundation_sdk")
    assert load_script("make_dashboard").render() == DASHBOARD.read_text(), \
        "grafana/dashboards/rag-rollout.json is stale: run python scripts/make_dashboard.py"


def test_alert_rules_route_to_the_gateway_webhook_by_their_labels():
    rules = {r["alert"]: r for g in yaml.safe_load((RULES / "rag-candidate.rules.yml").read_text())["groups"]
             for r in g["rules"]}
    for name in ("RagCandidateErrorRateHigh", "RagCandidateLatencyP95High"):
        assert rules[name]["labels"]["severity"] == "critical"
        assert rules[name]["labels"]["rollout_action"] == "rollback"
    assert "> 0.001" in rules["RagCandidateErrorRateHigh"]["expr"]
    assert "> 0.8" in rules["RagCandidateLatencyP95High"]["expr"]
    for rule in rules.values():  # the candidate comes from the role gauge; its name from the expression
        assert 'role="candidate"' in rule["expr"] and "version" not in rule["labels"]
        assert not re.search(r'version\s*=\s*"', rule["expr"]), rule["alert"]
    similarity = rules["RagCandidateSimilarityDropped"]
    assert similarity["labels"]["severity"] == "warning" and "rollout_action" not in similarity["labels"]
    assert 'role="baseline"' in similarity["expr"]  # relative to each model's own level, not an absolute cosine


def test_promtool_accepts_the_rules_their_unit_tests_and_the_example_config():
    need_tool("promtool", "prometheus")
    for command in (["check", "rules", *map(str, sorted(RULES.glob("*.rules.yml")))],
                    ["test", "rules", "rag-candidate.tests.yml", "rollout-controller.tests.yml"],
                    ["check", "config", str(GRAFANA / "prometheus" / "prometheus.yml")]):
        done = subprocess.run(["promtool", *command], cwd=RULES, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_bool_comparison_keeps_the_value_of_a_rule():
    check = load_script("check_dashboard")
    assert check.as_bool_comparison("a / b > 0.001") == "a / b > bool 0.001"
    assert check.as_bool_comparison("x >= 2") == "x >= bool 2"
    assert check.as_bool_comparison("x > on () y") == "x > bool on () y"


@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_live_gateway(services, clean_db, tmp_path):
    need_tool("prometheus", "prometheus")  # scripts/check_dashboard.py runs the dashboard's queries on it
    env = {**os.environ, "DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_dashboard.py"), "--json",
                           "--seconds", "12"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)
    failures = [r for r in report["results"] if r["status"] not in ("ok", "skipped")]
    assert not failures, json.dumps(failures, indent=2)
    check = load_script("check_dashboard")
    for skipped in (r for r in report["results"] if r["status"] == "skipped"):
        assert set(skipped["metrics"]) & set(check.ELSEWHERE), skipped  # only metrics of other components
    panel_targets = sum(len(p.get("targets", [])) for p in json.loads(DASHBOARD.read_text())["panels"])
    assert len([r for r in report["results"] if "rule" not in r]) == panel_targets
    rules = [r["alert"] for path in sorted(RULES.glob("*.rules.yml"))
             for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    assert len(rules) == 6 and [r["health"] for r in report["rules"]] == ["ok"] * len(rules)
    assert done.returncode == 0


def shipped_rules() -> list[dict]:
    return [rule for path in sorted(RULES.glob("*.rules.yml"))
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def route(amtool: str, labels: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([amtool, "config", "routes", "test", f"--config.file={GRAFANA / 'alertmanager.yml'}",
                           *(f"{k}={v}" for k, v in sorted(labels.items()))],
                          capture_output=True, text=True, timeout=60)


def test_alertmanager_routes_every_shipped_rule_to_the_gateway_webhook():
    amtool = need_tool("amtool", "prometheus-alertmanager")
    checked = subprocess.run([amtool, "check-config", str(GRAFANA / "alertmanager.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = shipped_rules()
    assert len(rules) >= 6
    for rule in rules:
        done = route(amtool, {"alertname": rule["alert"], **rule.get("labels", {})})
        assert done.returncode == 0 and done.stdout.split() == ["rag-rollout"], (rule["alert"], done.stdout)
    unrelated = route(amtool, {"alertname": "DiskFull", "severity": "critical"})
    assert unrelated.stdout.split() == ["null"]  # the route is not a catch-all: other alerts are not the gateway's
