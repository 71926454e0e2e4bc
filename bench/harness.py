"""What every benchmark needs: services (embedded in a temp folder unless the URLs are set), a loaded
corpus, and one way to print our figure beside its baseline and their ratio."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rollout import demo, schema  # noqa: E402
from rollout.config import Settings  # noqa: E402
from rollout.server import GatewayProcess  # noqa: E402
from rollout.services import ServiceUrls, service_urls  # noqa: E402
from rollout.services.ports import free_port  # noqa: E402
from rollout.versions import VersionRegistry, roles_of  # noqa: E402


@contextmanager
def bench_settings(**env: str) -> Iterator[Settings]:
    """Settings on real services: DATABASE_URL/REDIS_URL if set, else embedded ones for this run."""
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as folder:
        environ = {"ROLLOUT_DATA_DIR": folder, "REDIS_KEY_PREFIX": f"bench-{os.getpid()}",
                   **{k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL") if os.environ.get(k)}, **env}
        settings = Settings.from_environ(environ)
        with service_urls(settings) as urls:
            settings = settings.with_overrides(database_url=urls.database_url, redis_url=urls.redis_url)
            schema.upgrade(urls.database_url, settings)
            yield settings


def demo_queries() -> list[str]:
    return [q for q in demo.queries_path().read_text().splitlines() if q.strip()]


def gateway_on(urls: ServiceUrls, folder: Path, token: str, name: str, **extra: str) -> GatewayProcess:
    """A gunicorn gateway (2 workers) on these services, in its own Redis namespace: migration on, no query
    embedding cache (every request pays for its embedding), quiet logs; `extra` adds or overrides settings."""
    env = {"DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url, "ROLLOUT_ADMIN_TOKEN": token,
           "REDIS_KEY_PREFIX": f"bench-{name}-{secrets.token_hex(4)}", "GUNICORN_LOG_LEVEL": "warning",
           "FF_ENABLE_GRADUAL_MIGRATION": "true", "EMBEDDING_CACHE": "false", **extra}
    return GatewayProcess(env, port=free_port(), workers=2, metrics_dir=folder / f"metrics-{name}",
                          log_file=folder / f"gateway-{name}.log")
def add_pair_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--baseline / --candidate: the versions compared (default: the registry's baseline and candidate)."""
    parser.add_argument("--baseline", help="The version compared against (default: the registry's baseline).")
    parser.add_argument("--candidate", help="The version measured (default: the registry's candidate).")
    return parser


def pair(database_url: str, baseline: str | None = None, candidate: str | None = None) -> tuple[str, str]:
    """The two versions a benchmark compares: the registry's baseline and candidate unless named; a one-line
    exit when a name is not registered, the pair is one version, or the registry has no candidate."""
    versions = VersionRegistry(database_url).versions()
    roles = roles_of(versions)
    chosen = (baseline or (roles.baseline if roles else None), candidate or (roles.candidate if roles else None))
    if chosen[0] is None or chosen[1] is None:
        raise SystemExit("error: the registry has no baseline and candidate; name them with --baseline/--candidate")
    known = {v.name for v in versions if v.status != "retired"}
    for name in chosen:
        if name not in known:
            raise SystemExit(f"error: no served version named {name}; registered: {', '.join(sorted(known))}")
    if chosen[0] == chosen[1]:
        raise SystemExit("error: the baseline and the candidate must be two different versions")
    return chosen[0], chosen[1]


def registry_pair(database_url: str, baseline: str | None, candidate: str | None) -> tuple[str, str]:
    """For a benchmark that goes through a gateway, which routes between the registry's baseline and
    candidate: that pair, and a one-line exit when the names given are another pair."""
    found = pair(database_url)
    if (baseline or found[0], candidate or found[1]) != found:
        raise SystemExit(f"error: the gateway routes between the registry's baseline {found[0]} and candidate "
                         f"{found[1]}; `rollout stage start --baseline B --candidate C` sets another pair")
    return found


def report(title: str, rows: list[tuple[str, str]], verdicts: list[tuple[str, bool]]) -> None:
    """Print aligned `name  value` rows, then each target with PASS/MISS."""
    print(f"\n{title}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for target, met in verdicts:
        print(f"  target {target}: {'PASS' if met else 'MISS'}")


def _client(url: str, path: str, bodies: list[bytes], seconds: float, threads: int) -> tuple[int, int, list[float]]:
    """One load process: `threads` keep-alive connections posting bodies in turn until the deadline."""
    import http.client
    import threading
    import time
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    totals = {"ok": 0, "failed": 0}
    latencies: list[float] = []

    def run(offset: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        n, ok, failed, mine = offset, 0, 0, []
        while time.monotonic() < deadline:
            body = bodies[n % len(bodies)]
            n += threads
            started = time.perf_counter()
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    ok += 1
                    mine.append(time.perf_counter() - started)
                else:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.close()
        with lock:
            totals["ok"] += ok
            totals["failed"] += failed
            latencies.extend(mine)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return totals["ok"], totals["failed"], latencies


def hammer(url: str, path: str, bodies: list[bytes], seconds: float, processes: int = 2,
           threads: int = 4) -> tuple[float, int, list[float]]:
    """Load from separate processes (so the client's GIL is not the server's); returns (req/s, failed, latencies)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes) as pool:
        parts = list(pool.map(_client, [url] * processes, [path] * processes,
                              [bodies[i::processes] for i in range(processes)], [seconds] * processes,
                              [threads] * processes))
    ok = sum(p[0] for p in parts)
    failed = sum(p[1] for p in parts)
    latencies = [x for p in parts for x in p[2]]
    return ok / seconds, failed, latencies
