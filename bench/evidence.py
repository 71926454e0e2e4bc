"""The controller's evidence read on a large stage window: bounded samples against pulling every row.

    python bench/evidence.py [--rows 1000000] [--max-samples 100000] [--rounds 3]

Fills query_log with `--rows` routed queries over three days (a 50 % stage: V1 and V2 alike,
latency lognormal around 120 ms, similarity Beta with mean 0.78, 0.02 % of V2's queries
answered by V1's fallback, 100,000 users, shadow overlaps on a third of the queries, 4 to 39
embedding tokens a query), then gathers the evidence of that window and judges it, the way
one evaluation of `rollout controller` does:

- ours: counts exact, latencies/similarities/overlaps a Bernoulli sample of at most
  `--max-samples` rows per version (ROLLOUT_EVIDENCE_MAX_SAMPLES);
- baseline: the same reads pulling every row (what an evidence builder without a bound does).

Reports the median time of an evaluation (gather + judge), the rows pulled into the
process, and whether the two verdicts agree. Targets: an evaluation under half the default
statement timeout (7.5 s) and at most 2 × max-samples rows pulled per version, with the
same verdict as the full pull. Uses DATABASE_URL / REDIS_URL when set, else embedded
services in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import bench_settings, report  # noqa: E402

from flags import bucket, in_rollout  # noqa: E402
from rollout.analytics.querylog import COPY_SQL  # noqa: E402
from rollout.configured import rollout_plan
from rollout.controller import RolloutPlan, judge  # noqa: E402
from rollout.controller.collector import EvidenceCollector  # noqa: E402
from rollout.runtime import Runtime  # noqa: E402

WINDOW = timedelta(days=3)
USERS = 100_000
BATCH = 100_000


def fill(runtime: Runtime, rows: int, until: datetime, rng: np.random.Generator) -> None:
    group = runtime.settings.routing_group
    users = [f"user-{n}" for n in range(USERS)]
    on_v2 = np.array([in_rollout(bucket(group, key), 50) for key in users])
    hashes = [f"{n:032x}" for n in range(USERS)]
    start = until - WINDOW
    for offset in range(0, rows, BATCH):
        n = min(BATCH, rows - offset)
        who = rng.integers(0, USERS, n)
        seconds = np.sort(rng.uniform(0, WINDOW.total_seconds(), n))
        latency = rng.lognormal(np.log(120), 0.5, n)
        similarity = rng.beta(7.8, 2.2, n)
        failed = rng.random(n) < 0.0002
        shadowed = rng.random(n) < 1 / 3
        overlap = rng.beta(6, 2, n)
        tokens = rng.integers(4, 40, n)  # the query's embedding tokens (the shadow embeds the same text)
        with runtime.pool.connection() as conn, conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            for i in range(n):
                version = "v2" if on_v2[who[i]] else "v1"
                fallback = bool(failed[i]) and version == "v2"  # a V2 failure answered by V1
                copy.write_row((
                    start + timedelta(seconds=float(seconds[i])), f"r{offset + i}", "routed", 0, "percentage",
                    version, "v1" if fallback else version, "h", None, None, 10, float(latency[i]), None, None,
                    float(similarity[i]), 10, None, fallback, "timeout" if fallback else None, None,
                    "v1" if version == "v2" else "v2", None, None, None,
                    float(overlap[i]) if shadowed[i] else None, None, None, None, hashes[who[i]],
                    int(tokens[i]), int(tokens[i]) if shadowed[i] else None))
    with runtime.pool.connection() as conn:
        conn.execute("ANALYZE query_log")


def evaluate(collector: EvidenceCollector, plan: RolloutPlan, since: float, until: float, rounds: int):
    times, pulled, verdict = [], 0, None
    for _ in range(rounds):
        started = time.perf_counter()
        collected = collector.collect(50.0, since, until, plan.critical_window_s)
        verdict = judge(collected.evidence, plan)
        times.append(time.perf_counter() - started)
        evidence = collected.evidence
        pulled = max(len(evidence.v1.latencies_s), len(evidence.v2.latencies_s))
    return statistics.median(times), pulled, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--max-samples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(11)
    with bench_settings(ROLLOUT_MIN_STAGE_S="3600") as settings:
        runtime = Runtime(settings, settings.database_url, settings.redis_url, pool_size=2).start()
        try:
            until = datetime.now(UTC)
            started = time.perf_counter()
            fill(runtime, args.rows, until, rng)
            print(f"query_log: {args.rows:,} rows over {WINDOW.days} days in {time.perf_counter() - started:.0f} s")
            plan = rollout_plan(settings)
            since = (until - WINDOW).timestamp()
            timeout_ms = settings.monitoring_query_timeout_ms
            ours = EvidenceCollector(runtime.pool, runtime.breakers, runtime.coverage,
                                     max_samples=args.max_samples, statement_timeout_ms=timeout_ms,
                                     roles=lambda: runtime.router.roles)
            full = EvidenceCollector(runtime.pool, runtime.breakers, runtime.coverage,
                                     max_samples=10**12, statement_timeout_ms=timeout_ms,
                                     roles=lambda: runtime.router.roles)
            ours_s, ours_rows, ours_verdict = evaluate(ours, plan, since, until.timestamp(), args.rounds)
            full_s, full_rows, full_verdict = evaluate(full, plan, since, until.timestamp(), args.rounds)
        finally:
            runtime.close()
    p95 = {name: verdict.gate("latency").values.get("p95_ratio") for name, verdict in
           (("ours", ours_verdict), ("full", full_verdict))}
    report(f"one evaluation of a {args.rows:,}-row stage window (median of {args.rounds})", [
        ("evaluation time", f"ours {ours_s:.2f} s | pull every row {full_s:.2f} s | ratio {ours_s / full_s:.2f}"),
        ("latency rows pulled (per version)", f"ours {ours_rows:,} | pull every row {full_rows:,} | "
                                              f"ratio {ours_rows / full_rows:.2f}"),
        ("verdict", f"ours {ours_verdict.outcome.value} | pull every row {full_verdict.outcome.value}"),
        ("V2/V1 p95 ratio", f"ours {p95['ours']:.4f} | pull every row {p95['full']:.4f}"),
    ], [
        ("evaluation under 7.5 s", ours_s < 7.5),
        (f"at most {2 * args.max_samples:,} latency rows per version", ours_rows <= 2 * args.max_samples),
        ("same verdict as the full pull", ours_verdict.outcome is full_verdict.outcome),
    ])


if __name__ == "__main__":
    main()
