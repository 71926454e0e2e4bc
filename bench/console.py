"""The console's data endpoints on a large query_log, beside the plain dashboard they sit next to.

    python bench/console.py [--rows 1000000] [--rounds 20]

Fills query_log with `--rows` routed queries over three days (bench/evidence.py's data: a 50 %
stage, V1 and V2 alike), starts a rollout, stores one evaluation per 5 minutes of the last day
(288, copies of one real evaluation), then times each endpoint one page refresh reads for the
24-hour range, through the app (no network): `/api/monitoring/series` (the charts' figures),
`/api/rollout/gates`, `/api/rollout/status`, `/api/monitoring/circuit-breaker`,
`/api/monitoring/coverage`, and one chart `/console/charts/p95.svg` with its short cache emptied
before each call. The series keeps its ended points between reads (what a polling page gets);
it is also timed forgetting them before each call (a worker's first read of the range).
Baseline: the plain `GET /api/monitoring/dashboard?range=24h`. Reports p50/p95 of each and
the ratio of p95s. Target: every console endpoint, as the page polls it, p95 ≤ 300 ms.
Uses DATABASE_URL / REDIS_URL when set, else embedded services in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evidence import WINDOW, fill  # noqa: E402
from harness import bench_settings, report  # noqa: E402

from rollout.app import create_app  # noqa: E402
from rollout.controller import Action, Command  # noqa: E402
from rollout.runtime import Runtime  # noqa: E402

TARGET_MS = 300.0
SERIES = "/api/monitoring/series?range=24h"
CONSOLE = (SERIES, "/api/rollout/gates?range=24h", "/api/rollout/status", "/api/monitoring/circuit-breaker",
           "/api/monitoring/coverage", "/console/charts/p95.svg?range=24h")
BASELINE = "/api/monitoring/dashboard?range=24h"


def store_evaluations(runtime: Runtime) -> None:
    """One real evaluation, copied every 5 minutes back over the last day."""
    runtime.stages.command(Command(Action.ADVANCE, actor="bench"), now=time.time() - 86400)
    [evaluation] = runtime.stages.evaluate()
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO rollout_decisions (decided_at, kind, action, actor, controller, reason, stage, "
            "percentage_before, percentage_after, status_before, status_after, window_started_at, verdict, "
            "transition, evidence, plan, flag_changes, error, notification) "
            "SELECT decided_at - make_interval(mins => 5 * n), kind, action, actor, controller, reason, stage, "
            "percentage_before, percentage_after, status_before, status_after, window_started_at, verdict, "
            "transition, evidence, plan, flag_changes, error, notification "
            "FROM rollout_decisions, generate_series(1, 287) n WHERE id = %s", (evaluation["id"],))


def timings(client, app, path: str, rounds: int, *, cold: bool = False) -> list[float]:
    """`cold`: the series forgets its ended points before each call (a worker's first read of the range)."""
    times = []
    for _ in range(rounds + 1):  # the first call warms the pool and the caches of PostgreSQL
        app.extensions.pop("console_recent", None)
        if cold:
            app.extensions["rollout"].figures._series.forget()
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code} {response.get_data(as_text=True)[:200]}")
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    # a long statement timeout: filling the log must not fail on a busy machine (no endpoint comes near it)
    with bench_settings(ROLLOUT_MIN_STAGE_S="3600", ROLLOUT_STAGES="50,100",
                        RAG_SEARCH_TIMEOUT_MS="120000") as settings:
        runtime = Runtime(settings, settings.database_url, settings.redis_url, pool_size=4).start()
        try:
            started = time.perf_counter()
            fill(runtime, args.rows, datetime.now(UTC), np.random.default_rng(11))
            store_evaluations(runtime)
            print(f"query_log: {args.rows:,} rows over {WINDOW.days} days, 288 stored evaluations, "
                  f"in {time.perf_counter() - started:.0f} s")
            app = create_app(runtime=runtime)
            client = app.test_client()
            baseline = timings(client, app, BASELINE, args.rounds)
            cold = timings(client, app, SERIES, args.rounds, cold=True)
            ours = {path: timings(client, app, path, args.rounds) for path in CONSOLE}
        finally:
            runtime.close()
    base_p50, base_p95 = np.percentile(baseline, [50, 95])
    rows = [(f"baseline {BASELINE}", f"p50 {base_p50:.0f} ms | p95 {base_p95:.0f} ms")]
    cold_p50, cold_p95 = np.percentile(cold, [50, 95])
    rows.append((f"{SERIES} (first read)", (f"p50 {cold_p50:.0f} ms | p95 {cold_p95:.0f} ms | dashboard p95 "
                                            f"{base_p95:.0f} ms | ratio {cold_p95 / base_p95:.2f}")))
    for path, times in ours.items():
        p50, p95 = np.percentile(times, [50, 95])
        rows.append((path, (f"p50 {p50:.0f} ms | p95 {p95:.0f} ms | dashboard p95 {base_p95:.0f} ms | "
                            f"ratio {p95 / base_p95:.2f}")))
    report(f"console data endpoints, 24-hour range, {args.rows:,}-row query_log ({args.rounds} calls each)", rows,
           [(f"{path} p95 <= {TARGET_MS:.0f} ms", float(np.percentile(times, 95)) <= TARGET_MS)
            for path, times in ours.items()])


if __name__ == "__main__":
    main()
