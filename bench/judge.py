"""The judge: how often each judge rolls back a healthy candidate, and how surely and how soon it
catches a regressed one, when it looks 12, 100 or 1,000 times a stage.

Traffic: baseline latency lognormal (median 120 ms, sigma 0.5: p95 274 ms), top similarity
Beta(mean 0.78, concentration 30), errors Bernoulli(0.02 %). The candidate is healthy (the
same), healthy within the tolerance (5 % slower, 0.05 % errors, similarity 0.76), or regressed:
p95 +25 % with every request 25 % slower, p95 +25 % in the tail alone (median unchanged),
similarity -0.1, error rate 1 %. One candidate request in five carries a shadow overlap.

A stage: the split of one of the stages 10/25/50/75 %, with traffic such that the smaller side
reaches the default minimum samples (8,000) at the end of the minimum stage time (10 % more
traffic, so the last look has them), and L looks evenly spread in that time (the j-th when
the smaller side has j/L of the minimum). A regression counts as detected when rolled back
within the stage; a healthy stage rolled back at any look is a false rollback.

Four judges on the same traffic:
- ours: `rollout.controller.judge` with the default plan (confidence sequences, the rollback
  alpha shared by the gates) and `apply_verdict`, as the controller runs them.
- confidence sequences, Waudby-Smith style (what GrowthBook ships): asymptotic normal-mixture
  sequences on each metric's mean (candidate mean latency against 1.1 x the baseline's, error
  rate against 0.1 %, mean similarity against 0.7), at alpha 0.01 / 3 each; rolls back when one
  excludes its threshold.
- Mann-Whitney, Kayenta style: each look closes an interval; per interval the candidate's and
  the baseline's p95 latency, error rate and mean similarity; from three intervals on, a one-sided
  Mann-Whitney test (p < 0.05) of each metric's interval values against the baseline's (latency
  stretched by the 10 % margin, error rate plus 0.1 %, similarity against 0.7): one metric of
  three failing drops the score under Kayenta's 75 and rolls back.
- threshold check, Flagger style: each look checks the candidate over the last interval alone
  against fixed ranges (success >= 99.9 %, p95 <= 1.1 x the baseline's known p95 and <= 800 ms,
  similarity >= 0.7); failed checks add up and the fifth rolls back.
Targets: false rollbacks <= 1 % per stage at every look frequency; >= 99 % of each regression
rolled back within one stage; candidate requests to detect p95 +25 % at most 1.0x the best
other judge's (median over detected stages; among the judges that keep false rollbacks <= 1 %
and detect >= 99 % at that look frequency; with none, "n/a": there is nothing to compare with).
"""

from __future__ import annotations

import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from harness import report
from scipy.stats import mannwhitneyu

from rollout.controller import (
    Evidence,
    Outcome,
    RolloutPlan,
    RolloutState,
    Status,
    VersionEvidence,
    apply_verdict,
    judge,
)
from rollout.controller.sequences import difference_bounds, mean_bounds

PLAN = RolloutPlan()
STAGES = (10.0, 25.0, 50.0, 75.0)
LOOKS = (12, 100, 1000)
# stages per (healthy, regressed) scenario at each look frequency: fewer where looks cost more
STAGE_COUNTS = {12: (1000, 200), 100: (400, 100), 1000: (60, 20)}
SHADOW_SHARE = 0.2
LATENCY_MEDIAN_S, LATENCY_SIGMA = 0.120, 0.5
BASELINE_P95_S = LATENCY_MEDIAN_S * math.exp(1.6448536 * LATENCY_SIGMA)
MARGIN, MAX_ERROR_RATE, MIN_SIMILARITY, MAX_P95_S = 1.1, 0.001, 0.7, 0.8
CS_ALPHA = 0.01 / 3
KAYENTA_ALPHA, KAYENTA_MIN_INTERVALS = 0.05, 3
FLAGGER_THRESHOLD = 5
JUDGES = ("ours", "confidence sequences", "Mann-Whitney", "threshold check")
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


BASELINE = Stream("baseline", True)
SCENARIOS = (
    Stream("healthy (candidate = baseline)", True),
    Stream("healthy within tolerance", True, latency_scale=1.05, similarity_mean=0.76, error_rate=0.0005),
    Stream("p95 +25 % (every request)", False, latency_scale=1.25),
    Stream("p95 +25 % (tail only)", False, latency_sigma=LATENCY_SIGMA + math.log(1.25) / 1.6448536),
    Stream("similarity -0.1", False, similarity_mean=0.68),
    Stream("error rate 1 %", False, error_rate=0.01),
)
P95_SCENARIOS = (2, 3)


class Ours:
    def __init__(self, share: float, looks: int):
        self.share, self.looks = share, looks
        self.state = RolloutState(percentage=share * 100, status=Status.RUNNING, stage_started_at=0.0)
        self.advanced = False

    def look(self, j: int, base, cand, overlaps) -> bool:
        n1, n2 = len(base[0]), len(cand[0])
        evidence = Evidence(
            percentage=self.share * 100, window_started_at=0.0, evaluated_at=j * PLAN.min_stage_s / self.looks,
            v1=VersionEvidence(requests=n1, errors=int(base[2].sum()), latencies_s=base[0], top_similarities=base[1]),
            v2=VersionEvidence(requests=n2, errors=int(cand[2].sum()), latencies_s=cand[0], top_similarities=cand[1]),
            shadow_overlaps=overlaps)
        step = apply_verdict(PLAN, self.state, judge(evidence, PLAN))
        self.state = step.after
        if step.percentage_changed and step.action == Outcome.ADVANCE.value:
            self.advanced = True
        return step.percentage_changed and step.action == Outcome.ROLLBACK.value


class ConfidenceSequences:
    """GrowthBook-style: an asymptotic normal-mixture sequence per metric mean."""

    def look(self, j: int, base, cand, overlaps) -> bool:
        (lat1, _, _), (lat2, sim2, err2) = base, cand
        if len(lat2) < 2 or len(lat1) < 2:
            return False
        return (difference_bounds(lat2, lat1, CS_ALPHA, MARGIN)[1] > 0
                or mean_bounds(err2.astype(float), CS_ALPHA)[1] > MAX_ERROR_RATE
                or mean_bounds(sim2, CS_ALPHA)[2] < MIN_SIMILARITY)


class MannWhitney:
    """Kayenta-style: per-interval metric values compared with a Mann-Whitney test."""

    def __init__(self):
        self.seen = (0, 0)
        self.series: dict[str, list[list[float]]] = {"p95": [[], []], "errors": [[], []], "similarity": [[], []]}

    def look(self, j: int, base, cand, overlaps) -> bool:
        start1, start2 = self.seen
        self.seen = (len(base[0]), len(cand[0]))
        for side, (lat, sim, err), start in ((0, base, start1), (1, cand, start2)):
            if len(lat) - start < 1:
                return False
            self.series["p95"][side].append(float(np.quantile(lat[start:], 0.95)))
            self.series["errors"][side].append(float(err[start:].mean()))
            self.series["similarity"][side].append(float(sim[start:].mean()))
        if len(self.series["p95"][1]) < KAYENTA_MIN_INTERVALS:
            return False
        p95_1, p95_2 = (np.asarray(s) for s in self.series["p95"])
        err_1, err_2 = (np.asarray(s) for s in self.series["errors"])
        sim_2 = np.asarray(self.series["similarity"][1])
        failed = [mannwhitneyu(p95_2, MARGIN * p95_1, alternative="greater").pvalue < KAYENTA_ALPHA,
                  mannwhitneyu(err_2, err_1 + MAX_ERROR_RATE, alternative="greater").pvalue < KAYENTA_ALPHA,
                  mannwhitneyu(sim_2, np.full(len(sim_2), MIN_SIMILARITY), alternative="less").pvalue < KAYENTA_ALPHA]
        return 100 * (3 - sum(failed)) / 3 < 75


class Threshold:
    """Flagger-style: fixed ranges on the last interval; the fifth failed check rolls back."""

    def __init__(self):
        self.seen, self.failed = 0, 0

    def look(self, j: int, base, cand, overlaps) -> bool:
        lat, sim, err = (series[self.seen:] for series in cand)
        self.seen = len(cand[0])
        fine = (len(lat) > 0 and 1 - err.mean() >= 1 - MAX_ERROR_RATE
                and np.quantile(lat, 0.95) <= min(MARGIN * BASELINE_P95_S, MAX_P95_S) and sim.mean() >= MIN_SIMILARITY)
        self.failed += not fine
        return self.failed >= FLAGGER_THRESHOLD


@dataclass
class StageResult:
    rolled_back: tuple[bool, ...]      # per judge
    samples: tuple[int, ...]           # candidate requests when each rolled back (0: never)
    ours_advanced: bool


def simulate_stage(stream: Stream, share: float, looks: int, rng: np.random.Generator) -> StageResult:
    minimum = PLAN.thresholds.min_samples
    total = math.ceil(1.1 * minimum / min(share, 1 - share))
    to_candidate = rng.random(total) < share
    before = np.concatenate([[0], np.cumsum(to_candidate)])
    n2_total = int(before[-1])
    base_all, cand_all = BASELINE.draw(total - n2_total, rng), stream.draw(n2_total, rng)
    shadowed = np.concatenate([[0], np.cumsum(rng.random(n2_total) < SHADOW_SHARE)])
    overlaps_all = rng.beta(7.2, 2.8, int(shadowed[-1]))
    smaller = np.minimum(before, np.arange(total + 1) - before)
    cuts = np.minimum(np.searchsorted(smaller, [math.ceil(minimum * j / looks) for j in range(looks + 1)]), total)
    judges = [Ours(share, looks), ConfidenceSequences(), MannWhitney(), Threshold()]
    done: list[int | None] = [None] * len(judges)
    for j in range(1, looks + 1):
        n2 = int(before[cuts[j]])
        n1 = int(cuts[j]) - n2
        base = tuple(series[:n1] for series in base_all)
        cand = tuple(series[:n2] for series in cand_all)
        overlaps = overlaps_all[:int(shadowed[n2])]
        for index, judge_ in enumerate(judges):
            if done[index] is None and judge_.look(j, base, cand, overlaps):
                done[index] = n2
        if all(d is not None for d in done) or (judges[0].advanced and all(d is not None for d in done[1:])):
            break
    return StageResult(tuple(d is not None for d in done), tuple(d or 0 for d in done), judges[0].advanced)


def run_batch(task: tuple[int, int, float, int, int]) -> tuple[tuple[int, int], list[StageResult]]:
    scenario, looks, share_pct, count, seed = task
    rng = np.random.default_rng(seed)
    return (scenario, looks), [simulate_stage(SCENARIOS[scenario], share_pct / 100, looks, rng) for _ in range(count)]


def pct(fraction: float, digits: int = 1) -> str:
    return f"{fraction * 100:.{digits}f} %"


def main() -> None:
    looks_wanted = tuple(int(x) for x in sys.argv[1:]) or LOOKS
    started = time.perf_counter()
    tasks = []
    for looks in looks_wanted:
        healthy_count, regressed_count = STAGE_COUNTS.get(looks, STAGE_COUNTS[max(STAGE_COUNTS)])
        chunk = 25 if looks < 1000 else 3
        for index, stream in enumerate(SCENARIOS):
            per_stage = (healthy_count if stream.healthy else regressed_count) // len(STAGES)
            for s, share in enumerate(STAGES):
                for start in range(0, per_stage, chunk):
                    seed = 100_000 * index + 10_000 * s + start + 7 * looks
                    tasks.append((index, looks, share, min(chunk, per_stage - start), seed))
    results: dict[tuple[int, int], list[StageResult]] = {}
    with ProcessPoolExecutor(WORKERS) as pool:
        for key, batch in pool.map(run_batch, tasks):
            results.setdefault(key, []).extend(batch)
    elapsed = time.perf_counter() - started

    rows, verdicts = [], []
    for looks in looks_wanted:
        worst_false, worst_detection, p95_ratios = 0.0, 1.0, []
        # a judge that rolls back healthy stages too often is no yardstick for detection speed
        trusted = [max(sum(x.rolled_back[k] for x in results[(i, looks)]) / len(results[(i, looks)])
                       for i, s in enumerate(SCENARIOS) if s.healthy) <= 0.01 for k in range(len(JUDGES))]
        for index, stream in enumerate(SCENARIOS):
            r = results[(index, looks)]
            rates = [sum(x.rolled_back[k] for x in r) / len(r) for k in range(len(JUDGES))]
            shown = " | ".join(f"{name} {pct(rate)}" for name, rate in zip(JUDGES, rates, strict=False))
            if stream.healthy:
                worst_false = max(worst_false, rates[0])
                advanced = sum(x.ours_advanced for x in r) / len(r)
                rows.append((f"{looks} looks, {stream.name} [{len(r)}]",
                             f"false rollbacks: {shown}; ours advanced {pct(advanced)}"))
            else:
                worst_detection = min(worst_detection, rates[0])
                medians = [float(np.median([x.samples[k] for x in r if x.rolled_back[k]] or [math.nan]))
                           for k in range(len(JUDGES))]
                needed = ", ".join(f"{name} {m:,.0f}" for name, m in zip(JUDGES, medians, strict=False)
                                   if not math.isnan(m))
                rows.append((f"{looks} looks, {stream.name} [{len(r)}]",
                             f"detected: {shown}; candidate requests (median): {needed}"))
                if index in P95_SCENARIOS:
                    others = [m for k, m in enumerate(medians[1:], 1)
                              if trusted[k] and rates[k] >= 0.99 and not math.isnan(m)]
                    best = min(others) if others else math.nan
                    p95_ratios.append((stream.name, medians[0], best, medians[0] / best if others else math.nan))
        verdicts.append((f"<= 1 % false rollbacks per stage at {looks} looks: ours worst {pct(worst_false)}",
                         worst_false <= 0.01))
        verdicts.append((f">= 99 % of each regression detected within one stage at {looks} looks: ours worst "
                         f"{pct(worst_detection)}", worst_detection >= 0.99))
        for name, ours_n, best, ratio in p95_ratios:
            shown_ratio = "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"
            rows.append((f"{looks} looks, {name}", f"requests to detect: ours {ours_n:,.0f}, best other judge "
                                                   f"(<= 1 % false rollbacks, >= 99 % detected): "
                                                   f"{'none' if math.isnan(best) else f'{best:,.0f}'}, "
                                                   f"ratio {shown_ratio}"))
            if math.isnan(best):  # no other judge to measure against: no verdict either way
                rows.append((f"{looks} looks, {name}: <= 1.0x the best other judge's", "n/a"))
            elif math.isnan(ratio):  # the others detected it and ours never did
                verdicts.append((f"requests to detect {name} at {looks} looks <= 1.0x the best other judge's: "
                                 "ours never detected it", False))
            else:
                verdicts.append((f"requests to detect {name} at {looks} looks <= 1.0x the best other judge's: "
                                 f"{shown_ratio}", ratio <= 1.0))
    t = PLAN.thresholds
    rows += [("our plan", f"min samples {t.min_samples:,}/version to pass (rollbacks from "
                          f"{t.min_samples_to_roll_back}), latency margin {pct(t.latency_margin, 0)}, rollback alpha "
                          f"{t.rollback_alpha} per stage shared by the gates, advance confidence "
                          f"{t.advance_confidence}"),
             ("run", f"{sum(len(r) for r in results.values()):,} stages at {', '.join(f'{s:g}' for s in STAGES)} %, "
                     f"{elapsed:.0f} s on {WORKERS} processes")]
    report("the judge: ours vs confidence sequences (GrowthBook-style), Mann-Whitney (Kayenta-style), "
           "a threshold check (Flagger-style), per stage", rows, verdicts)


if __name__ == "__main__":
    main()
