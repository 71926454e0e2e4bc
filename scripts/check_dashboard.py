"""Run every Grafana panel query and every alert rule against a real Prometheus scraping a real gateway.

    python scripts/check_dashboard.py [--seconds 20] [--json]

It starts the gateway under gunicorn (2 workers, multiprocess metrics) with shadow
queries, analytics, the offline pairwise judge and a 50 % split on, sends queries (routed,
merged, anonymous, some no result can clear) and relevance feedback on some answers,
makes V2 time out now and then (its table is locked for a moment, so fallbacks and
shadow failures happen for real), lets a Prometheus on 127.0.0.1 scrape it every
second, then evaluates through Prometheus's HTTP API:

- each panel target of grafana/dashboards/rag-rollout.json (`$__rate_interval` → the
  window): it must parse and return at least one series with a number;
- each alert rule of grafana/prometheus/rules/: loaded with health "ok", and its
  expression, with its final comparison turned into `bool`, returns a number.

A query on a metric that another component exports (breaker, alerts, migration,
cache; see ELSEWHERE) is reported as skipped when this build does not export it;
any other empty query fails. Needs the `prometheus` binary (Debian package
`prometheus`). Uses DATABASE_URL / REDIS_URL when set, else embedded services in a
temporary folder. Everything listens on 127.0.0.1 and is stopped at the end.
Exit code: 0 all good, 1 a query failed, 3 Prometheus is not installed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollout import demo  # noqa: E402
from rollout.server import GatewayProcess  # noqa: E402
from rollout.services.ports import free_port  # noqa: E402

DASHBOARD = ROOT / "grafana" / "dashboards" / "rag-rollout.json"
RULES = sorted((ROOT / "grafana" / "prometheus" / "rules").glob("*.rules.yml"))
ELSEWHERE = {  # metric -> the component that exports it (not necessarily part of this build)
    "circuit_breaker_state": "circuit breaker",
    "alerts_received_total": "alert webhooks",
    "rollout_rollbacks_total": "rollback",
    "rag_migration_coverage_ratio": "embedding migration",
    "rag_embedding_cache_hits_total": "query embedding cache",
    "rag_embedding_cache_misses_total": "query embedding cache",
    "rollout_controller_leader": "rollout controller (its own port; promtool unit tests cover its rules)",
    "rollout_controller_last_run_timestamp_seconds": "rollout controller (its own port; promtool unit tests cover "
                                                     "its rules)",
    "rollout_controller_stage_percentage": "rollout controller (its own port)",
    "rollout_controller_runs_total": "rollout controller (its own port)",
    "rollout_controller_decisions_total": "rollout controller (its own port)",
    "rollout_controller_notifications_redelivered_total": "rollout controller (its own port)",
    "rag_relevance_probes_total": "known-item probes (the rollout controller runs them; its own port)",
    "rag_relevance_probe_reciprocal_rank_sum": "known-item probes (the rollout controller runs them; its own port)",
    "rag_relevance_probe_reciprocal_rank_count": "known-item probes (the rollout controller runs them; its own port)",
    "rag_relevance_golden_ndcg": "golden set (exported once a `rollout eval` of the pair is recorded)",
}
ROLES = {"baseline": "v1", "candidate": "v2"}  # the fresh database's registry: what the variables would pick
METRIC = re.compile(r"\b((?:rag|rollout|flags|circuit_breaker|alerts)_[a-zA-Z0-9_]+)")


def http_json(url: str, data: dict | None = None, timeout: float = 10.0) -> dict:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def panel_queries() -> list[dict]:
    board = json.loads(DASHBOARD.read_text())
    return [{"panel": panel["title"], "ref": target["refId"], "expr": target["expr"]}
            for panel in board["panels"] for target in panel.get("targets", [])]


def rule_queries() -> list[dict]:
    found = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append({"panel": f"alert {rule['alert']}", "ref": path.name, "expr": rule["expr"].strip(),
                              "rule": rule["alert"]})
    return found


def as_bool_comparison(expr: str) -> str:
    """`X > 0.8` → `X > bool 0.8`: the rule's value whether or not it breaches."""
    position = max(expr.rfind(">"), expr.rfind("<"))
    end = position + 1 + (expr[position + 1:position + 2] == "=")
    return f"{expr[:end]} bool{expr[end:]}"


def exported_names(metrics_text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in metrics_text.splitlines() if line and line[0] != "#"}


class Traffic:
    """Queries from a few threads until stopped (bounded by `max_requests`), counting the answers."""

    def __init__(self, url: str, queries: list[str], threads: int = 2, max_requests: int = 20000):
        self.url, self.queries, self.max_requests = url, queries, max_requests
        self.stop = threading.Event()
        self.sent = self.failed = 0
        self._lock = threading.Lock()
        self._answered: list[tuple[float, str]] = []  # (when, request id) of answers to give feedback on
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            with self._lock:
                if self.sent >= self.max_requests:
                    return
                self.sent += 1
                n = self.sent
            body = {"query": rng.choice(self.queries), "k": 5}
            if n % 5 == 0:  # a query not seen before: the judge's cache cannot answer it, so verdicts keep coming
                body["query"] += f" (request {n})"
            if n % 10:
                body["user_id"] = f"user-{rng.randrange(400)}"
            if n % 4 == 0:
                body["mode"] = "merged"
            elif n % 7 == 0:
                body["min_similarity"] = 0.999  # nothing clears it: an abstention
            try:
                answer = http_json(f"{self.url}/api/rag/query", body)
            except (urllib.error.URLError, OSError, ValueError):
                with self._lock:
                    self.failed += 1
                continue
            if n % 3 == 0 and body.get("mode") != "merged":
                self._feedback(rng, answer["request_id"])

    def _feedback(self, rng: random.Random, request_id: str) -> None:
        """Feedback on an answer query_log has had time to keep (the writer flushes about every second)."""
        with self._lock:
            self._answered.append((time.monotonic(), request_id))
            ready = [rid for at, rid in self._answered if time.monotonic() - at > 3]
            self._answered = [(at, rid) for at, rid in self._answered if rid not in ready]
        for rid in ready:
            kind = "relevant" if rng.random() < 0.7 else "not_relevant"
            try:
                http_json(f"{self.url}/api/rag/feedback", {"request_id": rid, "kind": kind})
            except (urllib.error.URLError, OSError, ValueError):
                with self._lock:
                    self.failed += 1


def stall_v2(database_url: str, stop: threading.Event, every_s: float = 3.0, for_s: float = 0.6) -> None:
    """Lock V2's table for a moment every few seconds: V2 searches time out (fallbacks, shadow failures)."""
    while not stop.wait(every_s):
        with psycopg.connect(database_url) as conn:
            conn.execute("LOCK TABLE doc_embeddings_v2 IN ACCESS EXCLUSIVE MODE")
            time.sleep(for_s)
            conn.rollback()


class Prometheus:
    def __init__(self, binary: str, folder: Path, target: str, rules: list[Path]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(p) for p in rules],
                  "scrape_configs": [{"job_name": "rag-gateway", "static_configs": [{"targets": [target]}]}]}
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = folder / "prometheus.log"
        self.command = [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Prometheus:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("prometheus did not become ready within 30 s")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def query(self, expr: str) -> dict:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            return http_json(url)
        except urllib.error.HTTPError as exc:  # 400 on a bad expression: the body says why
            return json.loads(exc.read() or b"{}") or {"status": "error", "error": str(exc)}


def evaluate(prometheus: Prometheus, item: dict, exported: set[str], window: str) -> dict:
    expr = item["expr"].replace("$__rate_interval", window).replace("$__interval", "5s").replace("$__range", window)
    expr = expr.replace("$baseline", ROLES["baseline"]).replace("$candidate", ROLES["candidate"])
    if "rule" in item:
        expr = as_bool_comparison(expr)
    metrics = sorted(set(METRIC.findall(expr)))
    missing = [m for m in metrics if m not in exported]
    answer = prometheus.query(expr)
    result = {**item, "evaluated": expr, "metrics": metrics}
    if answer.get("status") != "success":
        return {**result, "status": "error", "detail": answer.get("error", "unknown error")}
    series = answer["data"]["result"]
    values = [float(s["value"][1]) for s in series]
    if any(math.isfinite(v) for v in values):
        return {**result, "status": "ok", "series": len(series),
                "sample": {json.dumps(s["metric"], sort_keys=True): s["value"][1] for s in series[:4]}}
    if missing and all(m in ELSEWHERE for m in missing):
        owners = sorted({ELSEWHERE[m] for m in missing})
        return {**result, "status": "skipped", "detail": f"not exported by this build: {', '.join(missing)} "
                                                         f"(from: {', '.join(owners)})"}
    detail = "only NaN values" if series else "no series"
    if missing:
        detail += f"; not exported: {', '.join(missing)}"
    return {**result, "status": "no_data", "detail": detail}


def rule_health(prometheus: Prometheus) -> list[dict]:
    groups = http_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
    return [{"rule": r["name"], "health": r["health"], "error": r.get("lastError", "")}
            for g in groups for r in g["rules"]]


def run(seconds: float, window: str) -> dict:
    binary = shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError("the prometheus binary is not installed (Debian: apt-get install prometheus)")
    with tempfile.TemporaryDirectory(prefix="dashboard-check-") as tmp:
        folder = Path(tmp)
        with demo.prepared_services(folder / "services") as urls:
            env = {"DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url,
                   "REDIS_KEY_PREFIX": f"dashboard-check-{uuid.uuid4().hex[:8]}",
                   "FF_ENABLE_GRADUAL_MIGRATION": "true", "FF_NEW_EMBEDDINGS_PERCENTAGE": "50",
                   "FF_USE_PARALLEL_RAG": "true", "FF_ENABLE_QUERY_ANALYTICS": "true",
                   "RAG_SEARCH_TIMEOUT_MS": "250", "GUNICORN_LOG_LEVEL": "warning",
                   # a stall may open the candidate's breaker: it half-opens within seconds, so the shadow
                   # panels keep fresh data inside the evaluated window however the stalls fall
                   "BREAKER_RESET_TIMEOUT_S": "2",
                   # the offline judge on every shadow pair that is not identical: judge verdicts for the panels
                   "RELEVANCE_JUDGE": "lexical", "RELEVANCE_JUDGE_SAMPLE_RATE": "1", "RELEVANCE_JUDGE_MAX_RBO": "1"}
            gateway = GatewayProcess(env, port=free_port(), workers=2, metrics_dir=folder / "metrics",
                                     log_file=folder / "gateway.log")
            queries = demo.queries_path().read_text().split("\n")
            with gateway.start(), Prometheus(binary, folder, f"127.0.0.1:{gateway.port}", RULES) as prometheus, \
                    Traffic(gateway.url, [q for q in queries if q.strip()]) as traffic:
                stop_stalls = threading.Event()
                staller = threading.Thread(target=stall_v2, args=(urls.database_url, stop_stalls), daemon=True)
                staller.start()
                try:
                    time.sleep(seconds)
                    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as response:
                        exported = exported_names(response.read().decode())
                    results = [evaluate(prometheus, item, exported, window)
                               for item in panel_queries() + rule_queries()]
                    health = rule_health(prometheus)
                finally:
                    stop_stalls.set()
                    staller.join(10)
            return {"results": results, "rules": health, "requests": traffic.sent, "failed_requests": traffic.failed,
                    "window": window}


def report_lines(report: dict) -> list[str]:
    lines = [f"{report['requests']} requests sent ({report['failed_requests']} failed), window {report['window']}"]
    for r in report["results"]:
        mark = {"ok": "ok     ", "skipped": "skipped", "no_data": "NO DATA", "error": "ERROR  "}[r["status"]]
        lines.append(f"{mark}  {r['panel']} [{r['ref']}]" + (f": {r['detail']}" if r.get("detail") else ""))
    for rule in report["rules"]:
        lines.append(f"{'ok     ' if rule['health'] == 'ok' else 'ERROR  '}  rule {rule['rule']} loaded: "
                     f"{rule['health']}" + (f" ({rule['error']})" if rule["error"] else ""))
    return lines


def passed(report: dict) -> bool:
    return (all(r["status"] in ("ok", "skipped") for r in report["results"])
            and all(rule["health"] == "ok" for rule in report["rules"]) and bool(report["rules"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="Traffic before the queries are evaluated.")
    parser.add_argument("--window", default="30s", help="What $__rate_interval becomes.")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args()
    try:
        report = run(args.seconds, args.window)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(report, indent=2) if args.json else "\n".join(report_lines(report)))
    return 0 if passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
