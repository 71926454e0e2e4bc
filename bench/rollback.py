"""How fast does an alert move every gunicorn worker from the candidate to the baseline, and does any request
fail?

Runs the gateway under gunicorn (4 workers) on embedded PostgreSQL+pgvector and Redis in a
temporary folder, with the demo corpus embedded for both versions and 100 % of users on the
candidate. Client threads send queries without pause (a new connection each, so every worker
gets traffic); each answer says which version served it (`served_by`) and which worker
(`X-Rollout-Worker`). Each trial posts a critical Alertmanager alert and measures, per
worker, the send time of its first request answered by the baseline after which it never
answered from the candidate again; the trial's figure is the slowest worker's. That is an
upper bound: the true switch lies between the worker's last candidate request and that one
(the sampling gap is printed). Between trials the alert resolves and the candidate is re-armed
(the percentage restored).

Beside it: LaunchDarkly's streaming (~200 ms typical), Unleash's default 15 s poll, and an
environment-variable switch that needs a restart, measured here on the same gateway.

    python bench/rollback.py [--trials 20] [--workers 4] [--clients 4] [--baseline NAME --candidate NAME]

The pair is the registry's baseline and candidate (the demo's v1 and v2 on the new database);
the gateway routes between them, so `--baseline/--candidate` may only confirm them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import add_pair_options, registry_pair  # noqa: E402

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE  # noqa: E402
from rollout import demo, schema  # noqa: E402
from rollout.config import Settings  # noqa: E402
from rollout.runtime import Runtime  # noqa: E402
from rollout.server import GatewayProcess  # noqa: E402
from rollout.services import service_urls  # noqa: E402
from rollout.services.ports import free_port  # noqa: E402

SECRET = "bench-webhook-secret"
ADMIN = "bench-admin-token"
LAUNCHDARKLY_STREAMING_MS = 200.0
UNLEASH_POLL_MS = 15_000.0
QUERIES = [line.strip() for line in demo.queries_path().read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Sample:
    sent: float
    received: float
    worker: str | None
    served_by: str | None
    ok: bool


class Traffic:
    """Client threads querying the gateway without pause; every answer is kept with its times."""

    def __init__(self, host: str, port: int, clients: int):
        self.host, self.port = host, port
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, client: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = json.dumps({"query": QUERIES[n % len(QUERIES)], "user_id": f"c{client}-u{n}", "k": 5})
            sent = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request("POST", "/api/rag/query", body, {"Content-Type": "application/json",
                                                              "Connection": "close"})
                response = conn.getresponse()
                payload = response.read()
                conn.close()
                ok = response.status == 200
                served = json.loads(payload)["served_by"] if ok else None
                sample = Sample(sent, time.perf_counter(), response.getheader("X-Rollout-Worker"), served, ok)
            except (OSError, http.client.HTTPException, ValueError):
                sample = Sample(sent, time.perf_counter(), None, None, False)
            self.samples.append(sample)
            if not sample.ok:
                self._stop.wait(0.01)  # a client backs off a little instead of spinning on refusals

    def since(self, start: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.sent >= start]


def call(url_host: str, port: int, method: str, path: str, payload: dict | None, headers: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(url_host, port, timeout=10)
    conn.request(method, path, json.dumps(payload) if payload is not None else None,
                 {"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body


def alert(status: str, trial: int) -> dict:
    labels = {"alertname": "RagCandidateErrorRateHigh", "severity": "critical", "trial": str(trial)}
    return {"version": "4", "status": status, "receiver": "rag-rollout", "groupKey": f"bench-{trial}",
            "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {},
            "externalURL": "http://alertmanager.invalid",
            "alerts": [{"status": status, "labels": labels, "annotations": {"summary": "bench"},
                        "startsAt": f"2024-05-01T10:{trial:02d}:00Z",
                        "endsAt": "2024-05-01T11:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus.invalid", "fingerprint": f"bench{trial:04d}"}]}


def wait_steady(traffic: Traffic, version: str, workers: int, timeout_s: float = 30.0, window_s: float = 0.5) -> None:
    """Until, over the last `window_s`, every worker answered and only from `version`."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        time.sleep(0.1)
        recent = traffic.since(time.perf_counter() - window_s)
        seen = {s.worker for s in recent if s.ok}
        if len(seen) >= workers and all(s.served_by == version for s in recent if s.ok):
            return
    raise SystemExit(f"the gateway did not settle on {version} with {workers} workers within {timeout_s:.0f} s")


def switch_times(samples: list[Sample], start: float, version: str) -> tuple[dict[str, float], list[float]]:
    """Per worker: seconds from `start` to the send time of its first answer from `version` after
    which it never answered otherwise; and the gaps between that worker's requests."""
    by_worker: dict[str, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: s.sent):
        if s.ok and s.worker:
            by_worker.setdefault(s.worker, []).append(s)
    switched, gaps = {}, []
    for worker, answers in by_worker.items():
        last_other = max((i for i, s in enumerate(answers) if s.served_by != version), default=-1)
        if last_other + 1 < len(answers):
            switched[worker] = answers[last_other + 1].sent - start
        gaps += list(np.diff([s.sent for s in answers]))
    return switched, gaps


def installed_after(host: str, port: int, start_wall: float, workers: int, candidate: str,
                    attempts: int = 400) -> tuple[float, dict[str, float]]:
    """When the receiving worker decided the trip, and when each worker (pid) installed it, after `start_wall`."""
    seen: dict[str, float] = {}
    decided = float("nan")
    for _ in range(attempts):
        _status, body = call(host, port, "GET", "/api/monitoring/circuit-breaker", None, {"Connection": "close"})
        worker = body["worker"]
        seen[str(worker["pid"])] = datetime.fromisoformat(worker["installed_at"]).timestamp() - start_wall
        decided = datetime.fromisoformat(body["versions"][candidate]["changed_at"]).timestamp() - start_wall
        if len(seen) >= workers:
            break
    return decided, seen


def trial_run(traffic: Traffic, host: str, port: int, trial: int, workers: int, pair: tuple[str, str]) -> dict:
    baseline, candidate = pair
    wait_steady(traffic, candidate, workers)
    start_wall = time.time()
    start = time.perf_counter()
    status, body = call(host, port, "POST", "/api/alerts/webhook", alert("firing", trial),
                        {"Authorization": f"Bearer {SECRET}"})
    posted = time.perf_counter() - start
    if status != 200 or body["alerts"][0]["outcome"] != "tripped":
        raise SystemExit(f"the alert was not applied: {status} {body}")
    wait_steady(traffic, baseline, workers, timeout_s=15)
    time.sleep(0.3)
    window = traffic.since(start - 0.05)
    switched, gaps = switch_times([s for s in window if s.sent >= start], start, baseline)
    failed = sum(1 for s in window if not s.ok)
    decided, installed = installed_after(host, port, start_wall, workers, candidate)
    after_switch = [x for x in window if x.ok and x.worker in installed and x.sent - start > installed[x.worker]]
    late_candidate = sum(1 for x in after_switch if x.served_by != baseline)
    call(host, port, "POST", "/api/alerts/webhook", alert("resolved", trial), {"Authorization": f"Bearer {SECRET}"})
    status, body = call(host, port, "POST", "/api/monitoring/circuit-breaker", {"action": "rearm"},
                        {"Authorization": f"Bearer {ADMIN}"})
    if status != 200:
        raise SystemExit(f"re-arm failed: {status} {body}")
    if len(switched) < workers:
        raise SystemExit(f"trial {trial}: only {len(switched)} of {workers} workers answered after the alert")
    if len(installed) < workers:
        raise SystemExit(f"trial {trial}: only {len(installed)} of {workers} workers reported their breaker copy")
    last_candidate = max((x.sent - start for x in window if x.ok and x.served_by == candidate and x.sent >= start),
                         default=0.0)
    return {"switch_s": max(switched.values()), "installed_s": max(installed.values()), "decided_s": decided,
            "last_candidate_s": last_candidate, "late_candidate": late_candidate, "checked": len(after_switch),
            "failed": failed,
            "requests": len(window), "posted_s": posted,
            "gap_s": float(np.median(gaps)) if gaps else float("nan")}


def restart_switch(settings: Settings, urls, env: dict, port: int, workers: int, clients: int,
                   tmp: Path, pair: tuple[str, str]) -> tuple[float, int, int]:
    """The anchor we can measure: FF_* in the environment, switched by restarting the gateway."""
    gateway = GatewayProcess({**env, "FF_NEW_EMBEDDINGS_PERCENTAGE": "100"}, port=port, workers=workers,
                             metrics_dir=tmp / "metrics-restart", log_file=tmp / "restart.log").start()
    traffic = Traffic("127.0.0.1", port, clients).start()
    try:
        wait_steady(traffic, pair[1], workers)
        start = time.perf_counter()
        gateway.stop()
        gateway = GatewayProcess({**env, "FF_NEW_EMBEDDINGS_PERCENTAGE": "0"}, port=port, workers=workers,
                                 metrics_dir=tmp / "metrics-restart", log_file=tmp / "restart.log").start()
        wait_steady(traffic, pair[0], workers)
        window = traffic.since(start)
        switched, _ = switch_times(window, start, pair[0])
        return max(switched.values()), sum(1 for s in window if not s.ok), len(window)
    finally:
        traffic.stop()
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--skip-restart", action="store_true", help="Do not measure the restart anchor.")
    args = add_pair_options(parser).parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    settings = Settings.from_environ({"ROLLOUT_DATA_DIR": str(tmp), "REDIS_KEY_PREFIX": "bench",
                                      "ROLLOUT_ADMIN_TOKEN": ADMIN, "ALERT_WEBHOOK_SECRET": SECRET})
    with service_urls(settings) as urls:
        print(f"services: embedded PostgreSQL and Redis under {tmp}", flush=True)
        schema.upgrade(urls.database_url, settings)
        runtime = Runtime(settings, urls.database_url, urls.redis_url, pool_size=4)
        try:
            runtime.sync()
            demo.load_corpus(runtime)
            reports = demo.embed_corpus(runtime)
        finally:
            runtime.close()
        pair = registry_pair(urls.database_url, args.baseline, args.candidate)
        print(f"corpus: {reports[0].embedded} documents embedded for {pair[0]} and {pair[1]}", flush=True)
        env = {"DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url, "REDIS_KEY_PREFIX": "bench",
               "ROLLOUT_ADMIN_TOKEN": ADMIN, "ALERT_WEBHOOK_SECRET": SECRET, "GUNICORN_LOG_LEVEL": "warning",
               f"{GRADUAL_MIGRATION}": "true", f"{V2_PERCENTAGE}": "100", "DB_POOL_MAX_SIZE": "4"}
        port = free_port()
        gateway = GatewayProcess(env, port=port, workers=args.workers, metrics_dir=tmp / "metrics",
                                 log_file=tmp / "gateway.log").start()
        traffic = Traffic("127.0.0.1", port, args.clients).start()
        results = []
        try:
            for trial in range(args.trials):
                results.append(trial_run(traffic, "127.0.0.1", port, trial, args.workers, pair))
        finally:
            traffic.stop()
            gateway.stop()
        restart = None
        if not args.skip_restart:
            runtime = Runtime(settings, urls.database_url, urls.redis_url, pool_size=1)
            try:
                runtime.sync()
                for name in (GRADUAL_MIGRATION, V2_PERCENTAGE):  # environment values only from here on
                    runtime.flags.reset(name, actor="bench", reason="restart anchor")
                runtime.breakers.close(pair[1], actor="bench", force=True)
            finally:
                runtime.close()
            restart = restart_switch(settings, urls, env, free_port(), args.workers, args.clients, tmp, pair)
    shutil.rmtree(tmp, ignore_errors=True)
    report(results, restart, args, pair)


def report(results: list[dict], restart, args, pair: tuple[str, str]) -> None:
    baseline, candidate = pair
    def ms(key: str) -> np.ndarray:
        return np.array([r[key] for r in results]) * 1000

    switched, upper, last_candidate, decided = (ms("installed_s"), ms("switch_s"), ms("last_candidate_s"),
                                                ms("decided_s"))
    p50, p99 = np.percentile(switched, 50), np.percentile(switched, 99)
    failed, requests = sum(r["failed"] for r in results), sum(r["requests"] for r in results)
    late, checked = sum(r["late_candidate"] for r in results), sum(r["checked"] for r in results)
    gap = np.median([r["gap_s"] for r in results]) * 1000
    print(f"\nrollback on a critical alert: {args.workers} gunicorn workers, {args.clients} client threads, "
          f"{len(results)} trials, times from sending the alert")
    print(f"  every worker serves the baseline {baseline} after  p50 {p50:.1f} ms  p99 {p99:.1f} ms  "
          f"max {switched.max():.1f} ms  (slowest worker's own clock: its breaker copy changed)")
    spread = ms("installed_s") - decided
    print(f"    the receiving worker decided the trip after p50 {np.percentile(decided, 50):.1f} / p99 "
          f"{np.percentile(decided, 99):.1f} ms; the other workers installed it p50 {np.percentile(spread, 50):.1f} / "
          f"p99 {np.percentile(spread, 99):.1f} ms later")
    print(f"    the alert POST was answered after {np.percentile(ms('posted_s'), 50):.1f} ms (p50)")
    print(f"    client view: last candidate ({candidate}) answer was sent at p99 "
          f"{np.percentile(last_candidate, 99):.1f} ms; first baseline answers "
          f"bound it above at p50 {np.percentile(upper, 50):.1f} / p99 {np.percentile(upper, 99):.1f} ms "
          f"(each worker answered every {gap:.1f} ms, median)")
    print(f"    requests sent after their worker switched but answered by the candidate: {late} of {checked}")
    print(f"  failed requests during the switches: {failed} of {requests}")
    print(f"  machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (other work on "
          "the machine shows up in the tail)")
    print("\nanchor                                         theirs       ours p99    ratio")
    print(f"  LaunchDarkly streaming (typical)          {LAUNCHDARKLY_STREAMING_MS:>9.0f} ms  {p99:>9.1f} ms  "
          f"{LAUNCHDARKLY_STREAMING_MS / p99:>6.1f}x")
    print(f"  Unleash default poll (15 s, worst case)   {UNLEASH_POLL_MS:>9.0f} ms  {p99:>9.1f} ms  "
          f"{UNLEASH_POLL_MS / p99:>6.0f}x")
    if restart is not None:
        restart_s, restart_failed, restart_requests = restart
        print(f"  env-var switch + restart (measured)       {restart_s * 1000:>9.0f} ms  {p99:>9.1f} ms  "
              f"{restart_s * 1000 / p99:>6.0f}x   ({restart_failed} of {restart_requests} requests failed)")
    met = p99 <= 25 and failed == 0 and late == 0
    print(f"\ntarget p99 <= 25 ms and 0 failed requests: {'met' if met else 'NOT met'} "
          f"(client-side upper bound p99 {np.percentile(upper, 99):.1f} ms)")


if __name__ == "__main__":
    main()
