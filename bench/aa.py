"""A/A on real rows: the demo's traffic generator sends queries through the gateway into query_log
(embedded PostgreSQL), then `rollout.controller.aa` splits the users at random into two arms of the
same version and every judge looks at each split `LOOKS` times. Both arms are one version, so any
rollback (or, for ours, a pause) is a false decision.

Judges: ours (the controller's gates through the A/A core, default plan), and the three of
bench/judge.py on the same arms: confidence sequences (GrowthBook-style), Mann-Whitney (Kayenta-style),
a threshold check (Flagger-style, against the baseline arm's p95 of the whole window); none of them
with an absolute similarity floor (see `yardstick_false_rates`).
Target: ours <= 1 % of splits with a false decision.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import judge as yardsticks
import numpy as np
from harness import bench_settings, report

from flags import QUERY_ANALYTICS
from rollout import demo
from rollout.controller import RolloutPlan
from rollout.controller.aa import Rows, gates_for, read_rows, run_aa
from rollout.runtime import Runtime
from rollout.server import GatewayProcess
from rollout.services.ports import free_port

SECONDS = float(os.environ.get("AA_SECONDS", 120))
QUERIES_PER_S = 40.0
SPLITS = 200
LOOKS = 24
TARGET = 0.01


def arm_series(rows: Rows, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    answered = mask & ~np.isnan(rows.latency_s)
    similarity = np.where(np.isnan(rows.similarity), 0.0, rows.similarity)
    return rows.latency_s[answered], similarity[answered], rows.failed[answered]


def yardstick_false_rates(rows: Rows) -> list[float]:
    """The share of splits each other judge rolls back, on the same seeds and looks as ours.

    Without their absolute similarity floor (0.7 is on another model's scale; ours judges quality by
    relevance, which no A/A split has), as ours is judged here."""
    yardsticks.MIN_SIMILARITY = -1.0
    counts = [0, 0, 0]
    for seed in range(SPLITS):
        in_b = np.random.default_rng(seed).random(rows.users) < 0.5
        arm_b = in_b[rows.user]
        yardsticks.BASELINE_P95_S = float(np.quantile(arm_series(rows, ~arm_b)[0], 0.95))
        judges = [yardsticks.ConfidenceSequences(), yardsticks.MannWhitney(), yardsticks.Threshold()]
        done = [False, False, False]
        for j in range(1, LOOKS + 1):
            before = rows.at < rows.since + (rows.until - rows.since) * j / LOOKS
            base, cand = arm_series(rows, before & ~arm_b), arm_series(rows, before & arm_b)
            for k, judge_ in enumerate(judges):
                if not done[k] and judge_.look(j, base, cand, np.empty(0)):
                    done[k] = True
        counts = [c + d for c, d in zip(counts, done, strict=True)]
    return [c / SPLITS for c in counts]


def generate(settings) -> tuple[datetime, datetime]:
    """The demo corpus, then the demo's traffic generator against a gateway for SECONDS."""
    runtime = Runtime(settings, settings.database_url, settings.redis_url)
    runtime.sync()
    demo.load_corpus(runtime)
    demo.embed_corpus(runtime)
    runtime.flags.set(QUERY_ANALYTICS, True, actor="bench")
    runtime.close()
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix, "GUNICORN_LOG_LEVEL": "warning"}
    with tempfile.TemporaryDirectory() as folder:
        gateway = GatewayProcess(env, port=free_port(), workers=2, metrics_dir=Path(folder) / "metrics")
        with gateway:
            gateway.start()
            since = datetime.now(UTC)
            traffic = demo.DemoTraffic(gateway.url, per_second=QUERIES_PER_S).start()
            time.sleep(SECONDS)
            traffic.stop()
            until = datetime.now(UTC) + timedelta(seconds=2)
            time.sleep(3)  # the writers' last batches
    return since, until


def main() -> None:
    started = time.perf_counter()
    with bench_settings() as settings:
        since, until = generate(settings)
        runtime = Runtime(settings, settings.database_url, settings.redis_url)
        try:
            runtime.sync()
            version, quality_gate = runtime.router.roles.baseline, settings.rollout_quality_gate
            rows = read_rows(runtime.pool, version, since, until, max_rows=1_000_000, statement_timeout_ms=60_000)
        finally:
            runtime.close()
    if rows.users < 2:
        sys.exit("no query_log rows were written: is the gateway answering?")
    generated = time.perf_counter() - started
    ours = run_aa(rows, version, RolloutPlan(), splits=SPLITS, looks=LOOKS, gates=gates_for(quality_gate))
    others = yardstick_false_rates(rows)
    elapsed = time.perf_counter() - started
    gates = sorted({g for s in ours.splits for g in s.deciding_gates})
    rate = ours.false_decision_rate
    best_other = min(others)
    report(f"A/A on the demo's traffic: {SPLITS} random user splits of {version}, {LOOKS} looks each", [
        ("rows", f"{ours.rows:,} routed query_log rows from {ours.users:,} users in {SECONDS:.0f} s of demo traffic"),
        ("ours", f"false decisions in {rate * 100:.1f} % of splits ({ours.false_look_rate * 100:.2f} % of looks)"
                 + (f"; deciding gates: {', '.join(gates)}" if gates else "")),
        *[(f"{name}", f"false rollbacks in {r * 100:.1f} % of splits")
          for name, r in zip(yardsticks.JUDGES[1:], others, strict=True)],
        ("ratio (ours / best other judge)", "n/a (no false decision to compare)" if best_other == 0
         else f"{rate / best_other:.2f}x"),
        ("run", f"{generated:.0f} s generating rows, {elapsed - generated:.0f} s judging"),
    ], [(f"<= {TARGET * 100:.0f} % false decisions (ours): {rate * 100:.1f} %", rate <= TARGET)])


if __name__ == "__main__":
    main()
