"""The controller as processes: `rollout controller` beside a real gunicorn gateway, under real traffic.

Advance, hold, pause and rollback are decided by `rollout controller --once` on the query_log rows
the gateway wrote for traffic this test sent; several long-running controllers show that exactly
one is active, that a standby takes over when the leader is killed, that the stage survives a
SIGKILL, and that SIGTERM releases the lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import ADMIN_TOKEN, load_and_embed, wait_until
from notify_server import NotifyServer

from flags import V2_PERCENTAGE, bucket, in_rollout
from rollout.controller import Action, Command
from rollout.controller.leader import leader_of
from rollout.server import GatewayProcess
from rollout.services.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
JUDGED = {"ROLLOUT_STAGES": "50,100", "ROLLOUT_MIN_STAGE_S": "1", "ROLLOUT_MIN_SAMPLES": "150",
          "ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK": "20", "ROLLOUT_LATENCY_MARGIN": "1.0", "ROLLOUT_MIN_SIMILARITY": "-1",
          "ROLLOUT_MAX_ERROR_RATE": "0.05", "ROLLOUT_ADVANCE_CONFIDENCE": "0.5",
          "ROLLOUT_QUALITY_GATE": "similarity"}  # these tests steer the rollout by the similarity floor


def service_env(settings, **extra) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "REDIS_KEY_PREFIX": settings.redis_key_prefix, "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN, **extra}


def rollout(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollout.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def post(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def flag(gateway) -> float:
    """FF_NEW_EMBEDDINGS_PERCENTAGE as the gateway sees it."""
    return next(f["value"] for f in get(f"{gateway.url}/api/flags")["flags"] if f["name"] == V2_PERCENTAGE)


def users(group: str, percentage: float, v1: int, v2: int) -> list[str]:
    """User ids whose buckets put `v1` of them on V1 and `v2` on V2 at `percentage`, interleaved."""
    inside, outside = [], []
    n = 0
    while len(inside) < v2 or len(outside) < v1:
        key = f"user-{n}"
        (inside if in_rollout(bucket(group, key), percentage) else outside).append(key)
        n += 1
    mixed = [u for pair in zip(outside[:v1], inside[:v2], strict=False) for u in pair]
    return mixed + outside[len(mixed) // 2:v1] + inside[len(mixed) // 2:v2]


def traffic(url: str, keys: list[str]) -> list[dict]:
    queries = ["When does the pool open on weekends?", "How much is a day pass?", "Where can I park?"]
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda n: post(f"{url}/api/rag/query",
                                            {"query": queries[n % len(queries)], "user_id": keys[n]}),
                             range(len(keys))))


def logged(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT count(*) FROM query_log").fetchone()[0]


@pytest.fixture
def gateway(runtime, tmp_path):
    load_and_embed(runtime)
    env = service_env(runtime.settings, **JUDGED, FF_ENABLE_QUERY_ANALYTICS="true", QUERY_LOG_FLUSH_INTERVAL_S="0.1",
                      GUNICORN_LOG_LEVEL="warning")  # the same plan as the controller's, as in one deployment
    with GatewayProcess(env, port=free_port(), workers=1, metrics_dir=tmp_path / "metrics",
                        log_file=tmp_path / "gunicorn.log") as process:
        yield process.start()


def send(gateway, runtime, keys: list[str]) -> None:
    """Traffic from `keys` (one query each), then wait until the gateway has logged all of it."""
    before = logged(runtime)
    traffic(gateway.url, keys)
    assert wait_until(lambda: logged(runtime) >= before + len(keys), timeout_s=15)


def test_hold_then_advance_on_real_traffic(runtime, gateway, tmp_path):
    env = service_env(runtime.settings, **JUDGED)
    started = post(f"{gateway.url}/api/rollout/stage", {"action": "advance", "reason": "go"}, ADMIN_TOKEN)
    assert started["status"]["status"] == "running" and started["status"]["percentage"] == 50
    assert started["decision"]["actor"] == "api"

    held = rollout(env, "controller", "--once", cwd=tmp_path)
    assert held.returncode == 0, held.stderr
    assert " evaluation hold by controller, at 50 %, running: hold: " in held.stdout

    send(gateway, runtime, users(runtime.settings.routing_group, 50, 800, 800))
    advanced = rollout(env, "controller", "--once", cwd=tmp_path)
    assert advanced.returncode == 0, advanced.stderr
    assert " evaluation advance by controller, 50 % -> 100 %, running: advanced to 100 %" in advanced.stdout, \
        advanced.stdout + runtime.stages.decisions(1, details=True)[0]["reason"]

    status = get(f"{gateway.url}/api/rollout/status")
    assert (status["status"], status["percentage"], status["stage"]) == ("running", 100.0, 2)
    assert status["last_decision"]["gates"] and all(g["status"] == "passed" for g in status["last_decision"]["gates"])
    assert wait_until(lambda: flag(gateway) == 100)
    answer = post(f"{gateway.url}/api/rag/query", {"query": "pool hours", "user_id": "someone-new"})
    assert answer["served_by"] == "v2" and answer["decision"]["reason"] == "percentage"
    assert runtime.flag_audit.recent(1, V2_PERCENTAGE)[0]["actor"] == "controller"


def test_rollback_notifies_then_a_mismatched_split_pauses(runtime, gateway, tmp_path):
    group = runtime.settings.routing_group
    with NotifyServer() as hook:
        env = service_env(runtime.settings, **JUDGED, ROLLOUT_NOTIFY_URL=hook.url)
        post(f"{gateway.url}/api/rollout/stage", {"action": "advance"}, ADMIN_TOKEN)
        send(gateway, runtime, users(group, 50, 30, 30))
        rolled = rollout({**env, "ROLLOUT_MIN_SIMILARITY": "0.99"}, "controller", "--once", cwd=tmp_path)
        assert rolled.returncode == 0, rolled.stderr
        assert " evaluation rollback by controller, 50 % -> 0 %, rolled_back: rollback: " in rolled.stdout
        assert "quality: candidate mean top similarity" in rolled.stdout
        [notified] = hook.requests  # --once waits for the delivery before it exits
        assert notified["body"]["event"] == "rollback" and notified["body"]["failed_gates"][0]["name"] == "quality"
        assert wait_until(lambda: flag(gateway) == 0)
        v2_user = users(group, 50, 0, 1)[0]
        assert post(f"{gateway.url}/api/rag/query", {"query": "pool", "user_id": v2_user})["served_by"] == "v1"

        resumed = rollout(env, "stage", "resume", "--reason", "similarity floor was a typo", cwd=tmp_path)
        assert resumed.returncode == 0 and ", 0 % -> 50 %, running: started at 50 % by cli:" in resumed.stdout
        skewed = users(group, 50, 10, 90)  # 90 % of users land on V2 at a 50 % split
        send(gateway, runtime, skewed + skewed)  # two queries each: the check counts users, not requests
        paused = rollout(env, "controller", "--once", cwd=tmp_path)
        assert paused.returncode == 0, paused.stderr
        assert " evaluation pause by controller, at 50 %, paused: pause: sample_ratio: the candidate got 90.00 % " \
               "of 100 assignments against 50.00 %" in paused.stdout
        with runtime.pool.connection() as conn:
            hashes = {row[0] for row in conn.execute("SELECT DISTINCT user_hash FROM query_log")}
        assert len(hashes) >= 100 and None not in hashes and not hashes & set(skewed)  # keyed hashes, never the ids
        assert [r["body"]["event"] for r in hook.requests] == ["rollback", "pause"]
    status = get(f"{gateway.url}/api/rollout/status")
    assert status["status"] == "paused" and status["last_decision"]["notification"]["status"] == "sent"


def spawn(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as output:
        return subprocess.Popen([sys.executable, "-m", "rollout.cli", "controller", "--no-retention"], env=env,
                                cwd=log.parent, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def leader_pid(runtime) -> int | None:
    holder = leader_of(runtime.redis, runtime.stages.leader_key)
    return int(holder[0].split(":")[1]) if holder else None


def evaluations_by(runtime, pid: int) -> list[dict]:
    return [d for d in runtime.stages.decisions(1000)
            if d["kind"] == "evaluation" and d["controller"] and d["controller"].split(":")[1] == str(pid)]


def test_one_active_controller_survives_kills_and_hands_over_on_sigterm(make_runtime, tmp_path):
    plan = {"ROLLOUT_STAGES": "50,100", "ROLLOUT_MIN_STAGE_S": "3600", "ROLLOUT_EVALUATION_INTERVAL_S": "0.5",
            "ROLLOUT_LEADER_TTL_S": "1.5"}
    runtime = make_runtime(**plan)
    start = time.time() - 600
    runtime.stages.command(Command(Action.ADVANCE, actor="test"), now=start)
    env = service_env(runtime.settings, **plan)
    processes = []
    try:
        first = spawn(env, tmp_path / "first.log")
        processes.append(first)
        assert wait_until(lambda: leader_pid(runtime) == first.pid, timeout_s=30, interval_s=0.1)
        assert wait_until(lambda: len(evaluations_by(runtime, first.pid)) >= 2, timeout_s=15, interval_s=0.1)

        first.send_signal(signal.SIGKILL)  # mid-stage, no goodbye: its lock stays until the TTL ends
        first.wait(10)
        state = runtime.stages.store.read().state
        assert (state.percentage, state.status.value, state.stage_started_at) == (50.0, "running", pytest.approx(start))

        standbys = [spawn(env, tmp_path / f"standby-{n}.log") for n in range(2)]
        processes += standbys
        assert wait_until(lambda: leader_pid(runtime) in {p.pid for p in standbys}, timeout_s=30, interval_s=0.1)
        leader = next(p for p in standbys if p.pid == leader_pid(runtime))
        other = next(p for p in standbys if p is not leader)
        assert wait_until(lambda: len(evaluations_by(runtime, leader.pid)) >= 2, timeout_s=15, interval_s=0.1)
        assert evaluations_by(runtime, other.pid) == [] and other.poll() is None  # exactly one active
        resumed = evaluations_by(runtime, leader.pid)[-1]
        assert resumed["window_started_at"] == evaluations_by(runtime, first.pid)[0]["window_started_at"]
        state = runtime.stages.store.read().state
        assert (state.percentage, state.status.value, state.stage_started_at) == (50.0, "running", pytest.approx(start))

        leader.send_signal(signal.SIGTERM)
        assert leader.wait(20) == 0
        assert leader_pid(runtime) != leader.pid  # released on the way out, not left to expire
        assert wait_until(lambda: leader_pid(runtime) == other.pid, timeout_s=10, interval_s=0.1)
        other.send_signal(signal.SIGTERM)
        assert other.wait(20) == 0
        assert leader_pid(runtime) is None
        log = (tmp_path / "standby-0.log").read_text() + (tmp_path / "standby-1.log").read_text()
        assert "Traceback" not in log and log.count(": stopped\n") == 2
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def metric_values(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_the_controller_serves_its_own_metrics(make_runtime, tmp_path):
    plan = {"ROLLOUT_STAGES": "50,100", "ROLLOUT_MIN_STAGE_S": "3600", "ROLLOUT_EVALUATION_INTERVAL_S": "0.5",
            "ROLLOUT_LEADER_TTL_S": "1.5"}
    runtime = make_runtime(**plan)
    runtime.stages.command(Command(Action.ADVANCE, actor="test"), now=time.time() - 600)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    controller = spawn(service_env(runtime.settings, **plan, ROLLOUT_CONTROLLER_METRICS_PORT=str(port)),
                       tmp_path / "controller.log")
    try:
        def evaluated() -> bool:
            try:
                values = metric_values(url)
            except OSError:
                return False
            return values.get('rollout_controller_decisions_total{action="hold",kind="evaluation"}', 0) >= 2
        assert wait_until(evaluated, timeout_s=30, interval_s=0.2)
        values = metric_values(url)
        assert values["rollout_controller_leader"] == 1 and values['rollout_controller_runs_total{result="ok"}'] >= 2
        assert values["rollout_controller_stage_percentage"] == 50
        assert time.time() - values["rollout_controller_last_run_timestamp_seconds"] < 60
        controller.send_signal(signal.SIGTERM)
        assert controller.wait(20) == 0
    finally:
        if controller.poll() is None:
            os.killpg(controller.pid, signal.SIGKILL)
            controller.wait(10)


def test_a_metrics_port_in_use_is_a_clear_error(runtime, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = rollout(service_env(runtime.settings, ROLLOUT_CONTROLLER_METRICS_PORT=str(port)), "controller",
                         "--no-retention", cwd=tmp_path)
    assert result.returncode != 0 and "ROLLOUT_CONTROLLER_METRICS_PORT" in result.stderr
    assert "Traceback" not in result.stderr
