"""The judge: how often our gates roll back a healthy V2, and how surely they catch a regressed one,
against a Flagger-style fixed-threshold check on the same synthetic traffic.

Traffic: V1 latency lognormal (median 120 ms, sigma 0.5: p95 274 ms), top similarity
Beta(mean 0.78, concentration 30), errors Bernoulli(0.02 %). V2 is healthy (the same as V1),
healthy within the tolerance (5 % slower, 0.05 % errors, similarity 0.76), or regressed:
p95 +25 % with every request 25 % slower, p95 +25 % in the tail alone (median unchanged),
similarity -0.1, error rate 1 %. One V2 request in five carries a shadow overlap, Beta(mean 0.72).

A stage: the split of one of the stages 10/25/50/75 % (100 % has no V1 to compare with),
with traffic such that the smaller side reaches the default minimum samples exactly when the
stage's minimum time ends, and 12 evaluations over that time (the j-th when the smaller side
has j/12 of them). Ours judges the stage's growing window with `rollout.controller.judge` and
the default plan, and `apply_verdict` moves the stage (a paused stage is still watched and may
roll back, as in the controller). A healthy stage still holding at the end keeps going (up to
three times as long) so the table shows when it advances. A regression counts as detected only
when rolled back within the minimum stage. The hardest one (tail only) runs again under lower
minimum samples to show what lowering ROLLOUT_MIN_SAMPLES costs.

The baseline mimics Flagger's analysis: each check reads V2's metrics over the last interval
alone and fails when any is out of its fixed range; failed checks add up over the analysis (a
passing check does not reset them, as in Flagger's scheduler) and the stage rolls back when
they reach the threshold (5, as in Flagger's examples), else it advances. Its ranges are our
thresholds made fixed: success rate >= 99.9 %, p95 <= 1.1 x V1's known p95 and <= 800 ms,
mean similarity >= 0.7. It gets the generous setting of one check per evaluation (hundreds
of V2 requests per check); a second column gives it four times as many, shorter checks.
Targets: false rollbacks of a healthy V2 <= 1 % per stage; >= 99 % of each regression
rolled back within one stage at the default minimum samples.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from harness import report

from rollout.controller import (Evidence, Outcome, RolloutPlan, RolloutState, Status, VersionEvidence, apply_verdict,
                                judge)

PLAN = RolloutPlan()
SMALLER_MINIMUMS = (2000, 4000)   # the hardest regression again under lower ROLLOUT_MIN_SAMPLES
STAGES = (10.0, 25.0, 50.0, 75.0)
EVALUATIONS = 12               # per minimum stage time
EXTENSION = 3                  # a healthy stage still holding may last this many times the minimum
HEALTHY_STAGES = 1000          # per healthy scenario (250 per stage): 1 % is ten rollbacks
REGRESSED_STAGES = 500         # per regression (125 per stage)
SHADOW_SHARE = 0.2
LATENCY_MEDIAN_S, LATENCY_SIGMA = 0.120, 0.5
V1_P95_S = LATENCY_MEDIAN_S * math.exp(1.6448536 * LATENCY_SIGMA)
FLAGGER_MAX_P95_S = min(1.1 * V1_P95_S, 0.8)
FLAGGER_MIN_SUCCESS, FLAGGER_MIN_SIMILARITY, FLAGGER_THRESHOLD = 0.999, 0.7, 5
WORKERS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Stream:
    name: str
    healthy: bool
    latency_scale: float = 1.0
    latency_sigma: float = LATENCY_SIGMA
    similarity_mean: float = 0.78
    error_rate: float = 0.0002

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        latencies = rng.lognormal(math.log(LATENCY_MEDIAN_S * self.latency_scale), self.latency_sigma, n)
        concentration = 30
        similarities = rng.beta(self.similarity_mean * concentration, (1 - self.similarity_mean) * concentration, n)
        return latencies, similarities, rng.random(n) < self.error_rate


V1 = Stream("V1", True)
TAIL = Stream("p95 +25 % (tail only)", False, latency_sigma=LATENCY_SIGMA + math.log(1.25) / 1.6448536)
SCENARIOS = (
    Stream("healthy (V2 = V1)", True),
    Stream("healthy within tolerance", True, latency_scale=1.05, similarity_mean=0.76, error_rate=0.0005),
    Stream("p95 +25 % (every request)", False, latency_scale=1.25),
    TAIL,
    Stream("similarity -0.1", False, similarity_mean=0.68),
    Stream("error rate 1 %", False, error_rate=0.01),
)


@dataclass
class StageResult:
    ours: Outcome | None         # advance, rollback, pause (ended paused); None: still holding at the end
    ours_at_minimum: Outcome | None
    ours_samples: int            # V2 requests served when ours decided
    held_by: tuple[str, ...]     # gates still short of a pass at the minimum (when ours held there)
    threshold: Outcome           # the Flagger-style check, one check per evaluation
    threshold_samples: int
    threshold_fine: Outcome      # the same with four checks per evaluation (shorter intervals)


def flagger_check(latencies: np.ndarray, similarities: np.ndarray, errors: np.ndarray) -> bool:
    """One Flagger-style analysis check of V2 over one interval: every metric within its fixed range."""
    if len(latencies) == 0:
        return False   # Flagger fails a check whose query returns no values
    return bool(1 - errors.mean() >= FLAGGER_MIN_SUCCESS and np.quantile(latencies, 0.95) <= FLAGGER_MAX_P95_S
                and similarities.mean() >= FLAGGER_MIN_SIMILARITY)


def flagger_stage(v2: tuple[np.ndarray, np.ndarray, np.ndarray], bounds: list[int]) -> tuple[Outcome, int]:
    """Flagger's analysis over one stage: checks on consecutive intervals of V2's requests (split at
    `bounds`); failed checks add up (a passing check does not reset them) and reaching the threshold
    rolls back; otherwise the stage advances. Returns the outcome and V2's requests at that point."""
    failed = 0
    for start, end in zip(bounds, bounds[1:]):
        if not flagger_check(*(series[start:end] for series in v2)):
            failed += 1
            if failed >= FLAGGER_THRESHOLD:
                return Outcome.ROLLBACK, end
    return Outcome.ADVANCE, bounds[-1]


def simulate_stage(stream: Stream, share: float, rng: np.random.Generator, plan: RolloutPlan) -> StageResult:
    minimum = plan.thresholds.min_samples
    evaluations = EVALUATIONS * (EXTENSION if stream.healthy else 1)
    total = math.ceil(1.1 * minimum * evaluations / EVALUATIONS / min(share, 1 - share))
    to_v2 = rng.random(total) < share
    v2_before = np.concatenate([[0], np.cumsum(to_v2)])
    n2_total = int(v2_before[-1])
    lat1, sim1, err1 = V1.draw(total - n2_total, rng)
    lat2, sim2, err2 = stream.draw(n2_total, rng)
    errors1, errors2 = np.concatenate([[0], np.cumsum(err1)]), np.concatenate([[0], np.cumsum(err2)])
    shadowed = np.concatenate([[0], np.cumsum(rng.random(n2_total) < SHADOW_SHARE)])
    overlaps = rng.beta(7.2, 2.8, int(shadowed[-1]))

    # evaluation j comes when the smaller side has j/12 of the minimum samples (all of them at the 12th)
    smaller = np.minimum(v2_before, np.arange(total + 1) - v2_before)
    wanted = [math.ceil(minimum * j / (4 * EVALUATIONS)) for j in range(4 * evaluations + 1)]
    quarter_cuts = np.minimum(np.searchsorted(smaller, wanted), total)
    cuts = quarter_cuts[::4].tolist()
    state = RolloutState(percentage=share * 100, status=Status.RUNNING, stage_started_at=0.0)
    ours, ours_at_minimum, ours_samples, held_by = None, None, 0, ()
    for j in range(1, evaluations + 1):
        n2 = int(v2_before[cuts[j]])
        n1 = cuts[j] - n2
        evidence = Evidence(
            percentage=share * 100, window_started_at=0.0, evaluated_at=j * plan.min_stage_s / EVALUATIONS,
            v1=VersionEvidence(requests=n1, errors=int(errors1[n1]), latencies_s=lat1[:n1], top_similarities=sim1[:n1]),
            v2=VersionEvidence(requests=n2, errors=int(errors2[n2]), latencies_s=lat2[:n2], top_similarities=sim2[:n2]),
            shadow_overlaps=overlaps[:int(shadowed[n2])])
        verdict = judge(evidence, plan)
        step = apply_verdict(plan, state, verdict)
        state = step.after
        if j == EVALUATIONS and verdict.outcome is Outcome.HOLD:
            held_by = tuple(g.name for g in verdict.deciding())
        if step.percentage_changed:   # advanced or rolled back: the stage is over
            ours, ours_samples = Outcome(step.action), n2
            if j <= EVALUATIONS:
                ours_at_minimum = ours
            break
    if ours is None and state.status is Status.PAUSED:
        ours = Outcome.PAUSE

    v2 = (lat2, sim2, err2)
    threshold, threshold_samples = flagger_stage(v2, [int(v2_before[c]) for c in cuts[:EVALUATIONS + 1]])
    fine, _ = flagger_stage(v2, [int(v2_before[c]) for c in quarter_cuts[:4 * EVALUATIONS + 1]])
    return StageResult(ours, ours_at_minimum, ours_samples, held_by, threshold, threshold_samples, fine)


def plan_with(minimum: int) -> RolloutPlan:
    return replace(PLAN, thresholds=replace(PLAN.thresholds, min_samples=minimum))


def run_batch(task: tuple[int, int, float, int, int]) -> tuple[tuple[int, int], list[StageResult]]:
    scenario, minimum, share_pct, count, seed = task
    rng, plan = np.random.default_rng(seed), plan_with(minimum)
    return (scenario, minimum), [simulate_stage(SCENARIOS[scenario], share_pct / 100, rng, plan) for _ in range(count)]


def pct(fraction: float, digits: int = 1) -> str:
    return f"{fraction * 100:.{digits}f} %"


def rate(results: list[StageResult], pick) -> float:
    return sum(bool(pick(r)) for r in results) / len(results)


def main() -> None:
    started = time.perf_counter()
    default, hardest = PLAN.thresholds.min_samples, SCENARIOS.index(TAIL)
    runs = [(index, default) for index in range(len(SCENARIOS))] + [(hardest, m) for m in SMALLER_MINIMUMS]
    tasks = []
    for index, minimum in runs:
        per_stage = (HEALTHY_STAGES if SCENARIOS[index].healthy else REGRESSED_STAGES) // len(STAGES)
        for s, share in enumerate(STAGES):
            for chunk in range(0, per_stage, 25):
                seed = 1000 * index + 100 * s + chunk + 7 * minimum
                tasks.append((index, minimum, share, min(25, per_stage - chunk), seed))
    results: dict[tuple[int, int], list[StageResult]] = {run: [] for run in runs}
    with ProcessPoolExecutor(WORKERS) as pool:
        for run, batch in pool.map(run_batch, tasks):
            results[run].extend(batch)
    elapsed = time.perf_counter() - started

    rows, verdicts = [], []
    for index, stream in enumerate(SCENARIOS):
        r = results[(index, default)]
        base = rate(r, lambda x: x.threshold is Outcome.ROLLBACK)
        fine = rate(r, lambda x: x.threshold_fine is Outcome.ROLLBACK)
        baseline = f"threshold check {pct(base)} ({4 * EVALUATIONS} shorter checks: {pct(fine)})"
        if stream.healthy:
            ours = rate(r, lambda x: x.ours is Outcome.ROLLBACK)
            held = Counter(name for x in r for name in x.held_by)
            holding = ", ".join(f"{name} {pct(count / len(r))}" for name, count in held.most_common()) or "none"
            rows.append((f"{stream.name} [{len(r)} stages]",
                         f"false rollbacks: ours {pct(ours)} | {baseline}"))
            rows.append(("", f"ours advanced {pct(rate(r, lambda x: x.ours_at_minimum is Outcome.ADVANCE))} at the "
                             f"minimum (holding on: {holding}), {pct(rate(r, lambda x: x.ours is Outcome.ADVANCE))} "
                             f"within {EXTENSION}x; paused {pct(rate(r, lambda x: x.ours is Outcome.PAUSE))}"))
            verdicts.append((f"<= 1 % false rollbacks per stage, {stream.name}: ours {pct(ours)} vs {pct(base)} "
                             f"(threshold check {'meets' if base <= 0.01 else 'misses'} it)", ours <= 0.01))
        else:
            ours = rate(r, lambda x: x.ours_at_minimum is Outcome.ROLLBACK)
            ours_n = np.median([x.ours_samples for x in r if x.ours_at_minimum is Outcome.ROLLBACK] or [0])
            base_n = np.median([x.threshold_samples for x in r if x.threshold is Outcome.ROLLBACK] or [0])
            rows.append((f"{stream.name} [{len(r)} stages]",
                         f"detected: ours {pct(ours)} after {ours_n:,.0f} V2 requests (median) | "
                         f"{baseline}, after {base_n:,.0f}"))
            rows.append(("", f"ratio ours/threshold: detection {ours / base if base else float('inf'):.2f}x, "
                             f"V2 requests before the rollback {ours_n / base_n if base_n else float('inf'):.2f}x"))
            verdicts.append((f">= 99 % detected within one stage, {stream.name}: ours {pct(ours)} vs {pct(base)} "
                             f"(threshold check {'meets' if base >= 0.99 else 'misses'} it)", ours >= 0.99))
    smaller = [(m, rate(results[(hardest, m)], lambda x: x.ours_at_minimum is Outcome.ROLLBACK))
               for m in SMALLER_MINIMUMS]
    rows.append((f"{TAIL.name}, lower minimums", ", ".join(f"ROLLOUT_MIN_SAMPLES={m:,}: ours detects {pct(d)}"
                                                          for m, d in smaller)))
    t = PLAN.thresholds
    rows += [("our plan", f"min samples {t.min_samples:,}/version (quality may roll back from "
                          f"{t.min_samples_to_roll_back}), latency margin {pct(t.latency_margin, 0)}, rollback alpha "
                          f"{t.rollback_alpha}, advance confidence {t.advance_confidence}, "
                          f"{EVALUATIONS} evaluations a stage"),
             ("threshold check", f"success >= {pct(FLAGGER_MIN_SUCCESS)}, p95 <= {FLAGGER_MAX_P95_S * 1000:.0f} ms, "
                                 f"similarity >= {FLAGGER_MIN_SIMILARITY}; rollback at {FLAGGER_THRESHOLD} failed "
                                 f"checks of {EVALUATIONS} a stage"),
             ("run", f"{sum(len(r) for r in results.values()):,} stages at {', '.join(f'{s:g}' for s in STAGES)} %, "
                     f"{elapsed:.0f} s on {WORKERS} processes")]
    report("the judge: statistical gates vs a Flagger-style fixed-threshold check, per stage", rows, verdicts)


if __name__ == "__main__":
    main()
