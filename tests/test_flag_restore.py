"""A Redis restarted without its data: the flags come back from flag_audit, not from the defaults."""

import os
import signal
import time

from helpers import settings_for, wait_until

from flags import GRADUAL_MIGRATION, PARALLEL_RAG, V2_PERCENTAGE


def kill_and_restart_empty(server, port):
    """SIGKILL (no save on shutdown), drop any snapshot file, start again on the same port."""
    pid = int(server.pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.running_port() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    (server.folder / "dump.rdb").unlink(missing_ok=True)
    server.start(port)


def test_flags_lost_by_a_redis_restart_are_restored_from_the_audit(make_runtime, services, private_redis):
    server, port, redis_url = private_redis
    settings = settings_for(services, REDIS_URL=redis_url, FLAGS_CHECK_INTERVAL_S="0.2")
    runtime = make_runtime(settings)
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 30, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 40, actor="test", reason="the last change wins")
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    assert runtime.flag_restore.restored == {}  # Redis had them all along

    kill_and_restart_empty(server, port)
    assert wait_until(lambda: runtime.flag_restore.restored != {}, timeout_s=20)
    assert runtime.flag_restore.restored == {GRADUAL_MIGRATION: "true", V2_PERCENTAGE: "40.0", PARALLEL_RAG: "true"}
    assert wait_until(lambda: runtime.flags.get(V2_PERCENTAGE) == 40 and runtime.flags.get(GRADUAL_MIGRATION))
    fresh = make_runtime(settings)  # in Redis, for every process
    assert fresh.flags.get(V2_PERCENTAGE) == 40 and fresh.flags.get(PARALLEL_RAG) is True
    assert fresh.flags.describe()[0]["source"] == "redis"
