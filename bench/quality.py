"""Relevance gate against today's similarity floor + overlap gate, in a simulated world with known relevance.

    python bench/quality.py [--trials 100] [--queries 20000] [--judged-share 1.0] [--seed 1]

The world: queries in four categories, each with 30 candidate documents of which three are
relevant (grades 3, 2, 1); a version ranks them by strength × grade + noise, and its strength
is set so its mean nDCG@10 sits where a scenario wants it. Scores live on each model's own
scale: the baseline's top cosine is around 0.8, the candidate's around 0.35. Scenarios:
candidate better (nDCG +0.05), equal, worse (nDCG -0.05), and worse in one category only
(-0.15 there, equal elsewhere).

Each trial is one rollout through the stages 10, 25, 50, 75 %; each stage gives fresh
evidence: `--queries` shadow-compared user queries (the candidate serves its share), the
pairwise judge on `--judged-share` of the disagreements (all of them by default: about 2,500
pairs a stage; rank-biased overlap < 0.7; a simulated judge that
sees the true quality with noise and leans to list A one time in ten, asked twice with the
order swapped), explicit feedback on 3 % of answers, 50 known-item probes per category (hit@10 near 0.9),
and one golden-set eval of 40 labelled queries per trial (run by `rollout eval`'s code). The
same evidence goes through the real gates of the gate registry, each with its alpha share as the
controller gives it (ROLLOUT_ROLLBACK_ALPHA's default shared among the guardrails that apply; the
relevance gate's alpha shared among its four sources, all configured in this world, as with a judge
set, probes scheduled and ROLLOUT_REQUIRE_EVAL):
today's `quality` (similarity floor 0.7 and shadow overlap 0.5) and `relevance` (confidence
sequences, δ = RELEVANCE_MARGIN's default).

Targets for the relevance gate: better and equal candidates advance in ≥ 99 % of stages;
a worse one is rolled back at its first stage in ≥ 99 % of trials; the one-category
regression is rolled back and that category named in ≥ 99 %; false rollbacks ≤ 1 %. Each
stage is read once, at its end. Beside the targets: a stage the relevance gate holds runs on
for as long again and is read a second time (the confidence sequences allow any number of
reads), as the controller does with a held stage.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import astuple, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import report  # noqa: E402

from rollout.config import Settings  # noqa: E402
from rollout.controller.evidence import Evidence, VersionEvidence  # noqa: E402
from rollout.controller.gates.registry import GATES, alpha_share, run  # noqa: E402
from rollout.controller.gates.relevance import (  # noqa: E402
    SOURCES,
    Golden,
    Proportions,
    RelevanceEvidence,
    Verdicts,
)
from rollout.controller.gates.result import GateResult, GateStatus  # noqa: E402
from rollout.controller.plan import RolloutPlan  # noqa: E402
from rollout.controller.thresholds import Thresholds  # noqa: E402
from rollout.relevance.golden import LabelledQuery, evaluate  # noqa: E402
from rollout.relevance.judging import combine  # noqa: E402

CATEGORIES = ("facilities", "pricing", "events", "support")
STAGES = (10.0, 25.0, 50.0, 75.0)
DOCS, K = 30, 10
GRADES = np.zeros(DOCS)
GRADES[:3] = (3, 2, 1)
DISCOUNT = 1 / np.log2(np.arange(2, K + 2))
IDEAL = ((2 ** np.sort(GRADES)[::-1][:K] - 1) * DISCOUNT).sum()
BASELINE_STRENGTH = 1.0
SCENARIOS = {"better": (0.05, None), "equal": (0.0, None), "worse": (-0.05, None),
             "one category worse": (0.0, ("pricing", -0.15))}
MAX_RBO, FEEDBACK_RATE, PROBES_PER_CATEGORY, GOLDEN_QUERIES = 0.7, 0.03, 50, 40
PROBE_EASE = 0.6  # a probe's source document is its grade-3 answer, found with this share of a query's strength:
                  # hit@10 about 0.90 for the baseline, so probes do not saturate
DEFAULTS = Settings.from_environ({})  # δ and the rollback alpha as configured by default
PLAN = RolloutPlan(thresholds=Thresholds(min_samples=1000, min_samples_to_roll_back=500, min_shadow_samples=200,
                                         relevance_margin=DEFAULTS.relevance_margin,
                                         rollback_alpha=DEFAULTS.rollout_rollback_alpha,
                                         relevance_sources=SOURCES))  # the world has all four: each is configured
JUDGED: dict[str, list[int]] = {}


def gate(name: str, evidence: Evidence) -> GateResult:
    """One registry gate's result on `evidence`, at the alpha share the controller's verdict gives it."""
    applying = tuple(g for g in GATES if g.applies(evidence))
    [entry] = [g for g in applying if g.name == name]
    return run(entry, evidence, PLAN, applying)


def relevance_alpha() -> float:
    evidence = Evidence(percentage=10, window_started_at=0, evaluated_at=1, v1=VersionEvidence(),
                        v2=VersionEvidence(), relevance=RelevanceEvidence())
    return alpha_share("relevance", PLAN.thresholds.rollback_alpha, evidence)


def rank(rng, strength, n):
    """Top-K document indexes of n queries for a version of this strength (per query)."""
    scores = np.asarray(strength, dtype=float).reshape(-1, 1) * GRADES + rng.normal(size=(n, DOCS))
    return np.argsort(-scores, axis=1)[:, :K]


def ndcg(top):
    return ((2 ** GRADES[top] - 1) * DISCOUNT).sum(axis=1) / IDEAL


def strength_for(target, rng):
    """The strength whose mean nDCG@10 is `target` (bisection on a large sample)."""
    low, high = 0.0, 5.0
    for _ in range(30):
        mid = (low + high) / 2
        if ndcg(rank(rng, mid, 40_000)).mean() < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def agreement(a, b):
    """Rank-biased overlap (p = 0.9, truncated at K) and Jaccard overlap of two top-K lists per query."""
    depth_a = np.zeros((len(a), DOCS), dtype=np.int8)
    depth_b = np.zeros_like(depth_a)
    rows = np.arange(len(a))
    shared = np.zeros((len(a), K))
    for d in range(K):
        depth_a[rows, a[:, d]] = 1
        depth_b[rows, b[:, d]] = 1
        shared[:, d] = (depth_a & depth_b).sum(axis=1)
    weights = 0.1 * 0.9 ** np.arange(K) / np.arange(1, K + 1)
    rbo = (shared * weights).sum(axis=1) / weights.sum()
    jaccard = shared[:, -1] / (2 * K - shared[:, -1])
    return rbo, jaccard


def ask(rng, gap):
    """One judge call on (list A, list B) with true quality gap A - B: 'first', 'second' or 'tie'."""
    seen = gap + rng.normal(0, 0.1, size=len(gap))
    choice = np.where(np.abs(seen) < 0.03, "tie", np.where(seen > 0, "first", "second"))
    return np.where(rng.random(len(gap)) < 0.1, "first", choice)  # leans to A one time in ten


def stage_evidence(rng, share, strengths, queries, golden, judged_share):
    """Both gates' evidence for one stage: (today's Evidence, our RelevanceEvidence)."""
    category = rng.integers(0, len(CATEGORIES), queries)
    base = rank(rng, strengths["baseline"][category], queries)
    cand = rank(rng, strengths["candidate"][category], queries)
    nd_b, nd_c = ndcg(base), ndcg(cand)
    rbo, jaccard = agreement(base, cand)
    served_by_candidate = rng.random(queries) < share / 100
    sims = {"baseline": 0.8 + 0.04 * rng.normal(size=queries) + 0.01 * GRADES[base[:, 0]],
            "candidate": 0.35 + 0.06 * rng.normal(size=queries) + 0.01 * GRADES[cand[:, 0]]}
    today = Evidence(percentage=share, window_started_at=0, evaluated_at=1,
                     v1=VersionEvidence(requests=int((~served_by_candidate).sum()),
                                        top_similarities=sims["baseline"][~served_by_candidate]),
                     v2=VersionEvidence(requests=int(served_by_candidate.sum()),
                                        top_similarities=sims["candidate"][served_by_candidate]),
                     shadow_overlaps=jaccard)

    judged = (rbo < MAX_RBO) & (rng.random(queries) < judged_share)
    gap = nd_b[judged] - nd_c[judged]
    winners = np.array([combine(f, b) for f, b in zip(ask(rng, gap), ask(rng, -gap), strict=False)])
    feedback = rng.random(queries) < FEEDBACK_RATE
    top_grade = np.where(served_by_candidate, GRADES[cand[:, 0]], GRADES[base[:, 0]])
    positive = (top_grade >= 2) ^ (rng.random(queries) < 0.1)
    probe_category = np.repeat(np.arange(len(CATEGORIES)), PROBES_PER_CATEGORY)
    hits = {v: (rank(rng, PROBE_EASE * strengths[v][probe_category], len(probe_category)) == 0).any(axis=1)
            for v in ("baseline", "candidate")}

    def per_category(select):
        cells = {"": select(np.ones(queries, bool), np.ones(len(probe_category), bool))}
        for i, name in enumerate(CATEGORIES):
            cells[name] = select(category == i, probe_category == i)
        return cells

    judge = per_category(lambda q, _: Verdicts(int((winners[q[judged]] == "candidate").sum()),
                                                int((winners[q[judged]] == "baseline").sum()),
                                                int((winners[q[judged]] == "tie").sum())))
    fb = per_category(lambda q, _: Proportions(int((positive & feedback & q & ~served_by_candidate).sum()),
                                               int((feedback & q & ~served_by_candidate).sum()),
                                               int((positive & feedback & q & served_by_candidate).sum()),
                                               int((feedback & q & served_by_candidate).sum())))
    probes = per_category(lambda _, p: Proportions(int(hits["baseline"][p].sum()), int(p.sum()),
                                                   int(hits["candidate"][p].sum()), int(p.sum())))
    return today, replace(today, relevance=RelevanceEvidence(judge=judge, feedback=fb, probes=probes, golden=golden))


def added(first: RelevanceEvidence, second: RelevanceEvidence) -> RelevanceEvidence:
    """The evidence of a stage that ran twice as long: the counts of both windows (the same golden eval)."""
    def cells(a, b, kind):
        return {key: kind(*(x + y for x, y in zip(astuple(a[key]), astuple(b[key]), strict=True))) for key in a}
    return RelevanceEvidence(judge=cells(first.judge, second.judge, Verdicts),
                             feedback=cells(first.feedback, second.feedback, Proportions),
                             probes=cells(first.probes, second.probes, Proportions), golden=first.golden)


def golden_eval(rng, strengths):
    """A labelled set of GOLDEN_QUERIES queries, run through `rollout eval`'s evaluate()."""
    category = rng.integers(0, len(CATEGORIES), GOLDEN_QUERIES)
    lists = {v: rank(rng, strengths[v][category], GOLDEN_QUERIES) for v in ("baseline", "candidate")}
    queries = [LabelledQuery(f"q{i}", {str(d): int(GRADES[d]) for d in range(3)}, CATEGORIES[c])
               for i, c in enumerate(category)]

    def search(version):
        return lambda text, depth: [str(d) for d in lists[version][int(text[1:])][:depth]]

    result = evaluate(queries, ("baseline", search("baseline")), ("candidate", search("candidate")),
                      draws=1000, seed=int(rng.integers(1 << 30)))
    diff = result.difference["ndcg@10"]
    return Golden(diff.mean, diff.low, diff.high, result.queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--queries", type=int, default=20000, help="Shadow-compared user queries per stage.")
    parser.add_argument("--judged-share", type=float, default=1.0,
                        help="Share of disagreeing pairs sent to the judge (RELEVANCE_JUDGE_SAMPLE_RATE).")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    base_ndcg = float(ndcg(rank(rng, BASELINE_STRENGTH, 40_000)).mean())
    results = {}
    for scenario, (delta, regression) in SCENARIOS.items():
        candidate = np.full(len(CATEGORIES), strength_for(base_ndcg + delta, rng))
        if regression is not None:
            candidate[CATEGORIES.index(regression[0])] = strength_for(base_ndcg + regression[1], rng)
        strengths = {"baseline": np.full(len(CATEGORIES), BASELINE_STRENGTH), "candidate": candidate}
        outcomes = {"ours": [], "today": [], "longer": []}  # per trial, per stage: (status, decided_by)
        for _ in range(args.trials):
            golden = golden_eval(rng, strengths)
            ours, today, longer = [], [], []
            for share in STAGES:
                old, new = stage_evidence(rng, share, strengths, args.queries, golden, args.judged_share)
                JUDGED.setdefault(scenario, []).append(new.relevance.judge[""].trials)
                result = gate("relevance", new)
                ours.append((result.status, result.values["decided_by"]))
                today.append((gate("quality", old).status, []))
                if result.status is GateStatus.NOT_ENOUGH_DATA:  # held: the stage runs on, the sequence is read again
                    _, more = stage_evidence(rng, share, strengths, args.queries, golden, args.judged_share)
                    result = gate("relevance", replace(new, relevance=added(new.relevance, more.relevance)))
                longer.append((result.status, result.values["decided_by"]))
            outcomes["ours"].append(ours)
            outcomes["today"].append(today)
            outcomes["longer"].append(longer)
        results[scenario] = outcomes
    elapsed = time.perf_counter() - started

    def advance_rate(gate, scenarios):
        stages = [s for name in scenarios for trial in results[name][gate] for s, _ in trial]
        return sum(s is GateStatus.PASSED for s in stages) / len(stages)

    def rollback_rate(gate, scenarios):
        stages = [s for name in scenarios for trial in results[name][gate] for s, _ in trial]
        return sum(s is GateStatus.FAILED for s in stages) / len(stages)

    def first_stage_rollback(gate, scenario, named=None):
        firsts = [trial[0] for trial in results[scenario][gate]]
        return sum(s is GateStatus.FAILED and (named is None or any(d.endswith(f"_{named}") for d in decided))
                   for s, decided in firsts) / len(firsts)

    def ratio(ours, today):
        return f"{ours / today:.2f}x" if today else "n/a (today 0)"

    rows = []
    for scenario in ("better", "equal"):
        o, t = advance_rate("ours", [scenario]), advance_rate("today", [scenario])
        rows.append((f"{scenario}: stages advanced (ours / today / ratio)", f"{o:.1%} / {t:.1%} / {ratio(o, t)}"))
    o, t = first_stage_rollback("ours", "worse"), first_stage_rollback("today", "worse")
    rows.append(("worse: rolled back at the first stage (ours / today / ratio)", f"{o:.1%} / {t:.1%} / {ratio(o, t)}"))
    for scenario in ("better", "equal"):
        rows.append((f"{scenario}: advanced once a held stage runs twice as long (ours)",
                     f"{advance_rate('longer', [scenario]):.1%}"))
    rows.append(("worse: stages advanced (ours / today)",
                 f"{advance_rate('ours', ['worse']):.1%} / {advance_rate('today', ['worse']):.1%}"))
    rows.append(("worse: rolled back in the first stage run twice as long when held (ours)",
                 f"{first_stage_rollback('longer', 'worse'):.1%}"))
    named = first_stage_rollback("ours", "one category worse", "pricing")
    o, t = first_stage_rollback("ours", "one category worse"), first_stage_rollback("today", "one category worse")
    rows.append(("one category worse: rolled back at the first stage (ours / today)", f"{o:.1%} / {t:.1%}"))
    rows.append(("one category worse: 'pricing' named (ours; today names none)", f"{named:.1%}"))
    false_ours, false_today = rollback_rate("ours", ["better", "equal"]), rollback_rate("today", ["better", "equal"])
    false_longer = rollback_rate("longer", ["better", "equal"])
    rows.append(("false rollbacks, better + equal stages (ours / today; ours, held stages run on)",
                 f"{false_ours:.1%} / {false_today:.1%}; {false_longer:.1%}"))
    judged = np.mean([n for name in results for n in JUDGED[name]])
    rows.append(("judged pairs per stage (mean; two judge calls each)", f"{judged:.0f}"))
    rows.append(("margin, relevance gate's alpha, trials per scenario, queries per stage, judged share, time",
                 f"{PLAN.thresholds.relevance_margin:g}, {relevance_alpha():g}, {args.trials}, {args.queries}, "
                 f"{args.judged_share:g}, {elapsed:.0f} s"))
    report(f"relevance gate vs similarity floor + overlap ({len(STAGES)} stages, baseline nDCG@10 {base_ndcg:.3f})",
           rows, [
               ("better and equal advance in >= 99 % of stages",
                min(advance_rate("ours", ["better"]), advance_rate("ours", ["equal"])) >= 0.99),
               ("worse rolled back within one stage in >= 99 %", first_stage_rollback("ours", "worse") >= 0.99),
               ("one-category regression found and named in >= 99 %", named >= 0.99),
               ("false rollbacks <= 1 %", false_ours <= 0.01),
           ])


if __name__ == "__main__":
    main()
