"""`rollout demo`: each decision of the rollout printed as one line, gates that suit its embedders, --fast,
and its controller's metrics on ROLLOUT_CONTROLLER_METRICS_PORT."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import ADMIN_TOKEN

from rollout.config import Settings
from rollout.controller.service import CONTROLLER
from rollout.demo import DecisionFeed, demo_settings, worth_printing
from rollout.services.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(180)


def lines_of(process: subprocess.Popen) -> queue.Queue:
    """The demo's stdout, line by line, read by a thread (so waiting on it is bounded)."""
    found: queue.Queue = queue.Queue()

    def read():
        for line in process.stdout:
            found.put(line.rstrip("\n"))
    threading.Thread(target=read, daemon=True).start()
    return found


def wait_for(found: queue.Queue, predicate, timeout_s: float, seen: list) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = found.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if predicate(line):
            return line
    raise AssertionError("not printed; the demo printed:\n" + "\n".join(seen))


def test_the_fast_demo_prints_the_controllers_decisions_and_serves_its_metrics(settings, tmp_path):
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix, "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN,
           "ALERT_WEBHOOK_SECRET": "s" * 24, "ROLLOUT_CONTROLLER_METRICS_PORT": str(metrics_port),
           "WEB_CONCURRENCY": "1", "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen([sys.executable, "-m", "rollout.cli", "demo", "--fast", "--port", str(port)], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    seen: list[str] = []
    try:
        found = lines_of(demo)
        wait_for(found, lambda line: line.startswith("gates: the local lexical embedders"), 90, seen)
        wait_for(found, lambda line: line.startswith("plan: --fast"), 10, seen)
        wait_for(found, lambda line: "gateway ready on" in line, 90, seen)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            assert "rollout_controller_leader" in response.read().decode()
        line = wait_for(found, lambda line: line.startswith("rollout: #") and " evaluation " in line, 60, seen)
        assert f" by {CONTROLLER}, " in line and ": " in line.split(f" by {CONTROLLER}, ", 1)[1]  # with its reason
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'rollout_controller_runs_total{result="ok"}' in text
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
    assert demo.returncode == 0


def test_demo_gates_suit_lexical_embedders_unless_the_user_chose(monkeypatch):
    chosen, lines = demo_settings(Settings.from_environ({}), fast=False)
    assert (chosen.rollout_min_shadow_overlap, chosen.rollout_min_similarity) == (0.3, 0.2)
    assert lines[0].startswith("gates: the local lexical embedders score low")
    assert chosen.rollout_min_stage_s == 72 * 3600 and "rollout demo --fast" in lines[1]
    mine, lines = demo_settings(Settings.from_environ({"ROLLOUT_MIN_SHADOW_OVERLAP": "0.5",
                                                       "ROLLOUT_MIN_SIMILARITY": "0.7"}), fast=True)
    assert (mine.rollout_min_shadow_overlap, mine.rollout_min_similarity) == (0.5, 0.7)
    assert "the controller rolls it back" in lines[0]
    assert mine.rollout_min_stage_s == 30 and mine.rollout_evaluation_interval_s == 10


def test_the_feed_prints_changes_and_each_new_hold_reason_once(runtime):
    from rollout.controller import Action, Command

    printed = []
    feed = DecisionFeed(runtime.stages.store, printed.append)
    runtime.stages.command(Command(Action.ADVANCE, actor="alice", reason="first stage"))
    runtime.stages.command(Command(Action.HOLD, actor="alice", reason="wait"))
    feed.poll()
    feed.poll()
    assert [(d["action"], d["actor"]) for d in printed] == [("advance", "alice"), ("hold", "alice")]
    hold = {"action": "hold", "reason": "same", "percentage_before": 10, "percentage_after": 10}
    assert worth_printing(hold, None) and not worth_printing(hold, hold)
    assert worth_printing({**hold, "reason": "other"}, hold)
