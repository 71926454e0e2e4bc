"""The gateway under real gunicorn workers: metrics merged across workers, flag changes reach every worker."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import ADMIN_TOKEN, load_and_embed

from rollout.errors import ServiceError
from rollout.metrics import MetricsFolder
from rollout.server import APP, CONFIG, GatewayProcess
from rollout.services.ports import free_port


def post(url, body, headers=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read()), response.headers["X-Rollout-Worker"]


@pytest.fixture
def gateway(runtime, tmp_path):
    load_and_embed(runtime)
    settings = runtime.settings
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix, "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN,
           "FF_ENABLE_GRADUAL_MIGRATION": "true", "GUNICORN_LOG_LEVEL": "warning"}
    with GatewayProcess(env, port=free_port(), workers=2, metrics_dir=tmp_path / "metrics",
                        log_file=tmp_path / "gunicorn.log") as process:
        yield process.start()


def query_until_both_workers_answer(url, limit=400):
    """Concurrent queries until both workers have answered (bounded); returns {pid: [bodies]}."""
    seen = {}
    with ThreadPoolExecutor(8) as pool:
        for start in range(0, limit, 40):
            for body, pid in pool.map(lambda n: post(f"{url}/api/rag/query", {"query": "pool", "user_id": f"u{n}"}),
                                      range(start, start + 40)):
                seen.setdefault(pid, []).append(body)
            if len(seen) >= 2:
                break
    return seen


def test_metrics_are_merged_across_workers(gateway):
    seen = query_until_both_workers_answer(gateway.url)
    assert len(seen) == 2, "gunicorn spread no load over its two workers"
    answered = sum(len(bodies) for bodies in seen.values())
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("rag_requests_total{"))
    assert total == answered


def test_a_flag_change_reaches_every_worker(gateway):
    before = query_until_both_workers_answer(gateway.url)
    assert {b["served_by"] for bodies in before.values() for b in bodies} == {"v1"}
    request = urllib.request.Request(f"{gateway.url}/api/flags/FF_NEW_EMBEDDINGS_PERCENTAGE", method="PUT",
                                     data=b'{"value": 100}', headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                                                      "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()
    time.sleep(0.2)  # pub/sub delivery; bench/rollback.py measures how long it really takes
    after = query_until_both_workers_answer(gateway.url)
    assert len(after) == 2
    assert {b["served_by"] for bodies in after.values() for b in bodies} == {"v2"}


def counted(url) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("rag_requests_total{"))


def test_a_second_gateway_on_the_same_metrics_folder_is_refused_and_the_first_keeps_counting(gateway, tmp_path):
    for n in range(5):
        post(f"{gateway.url}/api/rag/query", {"query": "pool", "user_id": f"u{n}"})
    assert counted(gateway.url) == 5
    second = GatewayProcess({}, port=free_port(), workers=1, metrics_dir=gateway.metrics_dir)
    second.env = {**gateway.env, "ROLLOUT_PORT": str(second.port), "WEB_CONCURRENCY": "1"}
    with pytest.raises(ServiceError, match="is in use by another gateway"):
        second.start()
    # gunicorn started directly on the same folder: its master refuses before touching the files
    started = subprocess.run([sys.executable, "-m", "gunicorn", "-c", CONFIG, APP], env=second.env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 3 and "is in use by another gateway" in started.stderr
    assert "Traceback" not in started.stderr
    post(f"{gateway.url}/api/rag/query", {"query": "pool", "user_id": "u9"})
    assert counted(gateway.url) == 6


def test_a_stopped_gateway_frees_its_metrics_folder(gateway):
    assert MetricsFolder(gateway.metrics_dir).holder() is not None
    gateway.stop()
    assert MetricsFolder(gateway.metrics_dir).holder() is None
    held = MetricsFolder(gateway.metrics_dir)
    held.claim()  # claimable again: this test process holds it now
    assert MetricsFolder(gateway.metrics_dir).holder() == os.getpid()
