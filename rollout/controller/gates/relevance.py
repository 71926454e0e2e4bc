"""Relevance: the candidate is non-inferior to the baseline within a margin δ, on whichever sources have data.

It replaces the similarity floor as the quality gate: raw cosine similarity sits on each
model's own scale, and disagreement with the baseline (shadow overlap) says the candidate
differs, not that it is worse. The sources (each optional, see `rollout.relevance`):

- judge: pairwise verdicts on shadow disagreements; the candidate's win rate (a tie counts
  half) must be shown ≥ 0.5 − δ;
- feedback: positive rate of explicit feedback, candidate minus baseline ≥ −δ;
- probes: known-item hit rate, candidate minus baseline ≥ −δ;
- golden: the latest `rollout eval`'s paired nDCG@10 difference ≥ −δ (the standard error taken from
  its 95 % bootstrap interval, read at the gate's own levels: the same eval is seen at every stage).

Each source is judged overall and per category where a category has enough data: it fails
when the (1 − rollback_alpha) bound shows the candidate worse than −δ (per-category checks
share alpha, Bonferroni), passes when the advance_confidence bound shows it within δ, and
holds otherwise. Any failure rolls back; else a source that shows non-inferiority passes the
gate (sources still inconclusive are reported beside it: a source with little data, such as
feedback at a 10 % stage, must not hold a candidate the others have cleared); else hold.
No source with data: hold, and say so. Every result names the sources that decided.

`relevance_gate` is a pure function of a `RelevanceEvidence`, so a verdict can be replayed and the
gate can be registered in a gate registry as it stands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from scipy.stats import norm

from rollout.controller.gates.result import Findings, GateResult, GateStatus
from rollout.controller.outcome import Outcome

NAME = "relevance"
SOURCES = ("judge", "feedback", "probes", "golden")


@dataclass(frozen=True)
class Proportions:
    """Successes out of trials for the baseline and the candidate (feedback positives, probe hits)."""

    baseline_successes: int
    baseline_trials: int
    candidate_successes: int
    candidate_trials: int

    @property
    def trials(self) -> int:
        return min(self.baseline_trials, self.candidate_trials)

    def difference(self, z_low: float, z_high: float) -> tuple[float, float, float]:
        """Candidate minus baseline, with bounds (Agresti-Caffo: one success and one failure added to each)."""
        pb = (self.baseline_successes + 1) / (self.baseline_trials + 2)
        pc = (self.candidate_successes + 1) / (self.candidate_trials + 2)
        se = math.sqrt(pb * (1 - pb) / (self.baseline_trials + 2) + pc * (1 - pc) / (self.candidate_trials + 2))
        raw = (self.candidate_successes / self.candidate_trials if self.candidate_trials else 0.0) - (
            self.baseline_successes / self.baseline_trials if self.baseline_trials else 0.0)
        return raw, pc - pb - z_low * se, pc - pb + z_high * se


@dataclass(frozen=True)
class Verdicts:
    """Pairwise judge verdicts from the candidate's side."""

    wins: int
    losses: int
    ties: int

    @property
    def trials(self) -> int:
        return self.wins + self.losses + self.ties

    def win_rate(self, z_low: float, z_high: float) -> tuple[float, float, float]:
        """Win rate (a tie is half a win), with normal bounds from the scores' own variance."""
        n = self.trials
        rate = (self.wins + self.ties / 2) / n
        second = (self.wins + self.ties / 4) / n  # mean of the squared scores (1, 0.25, 0)
        se = math.sqrt(max(second - rate * rate, 1 / (4 * n * n)) / n)  # never zero: n scores are not certainty
        return rate, rate - z_low * se, rate + z_high * se


@dataclass(frozen=True)
class Golden:
    """The latest eval: the paired nDCG@10 difference and its two-sided interval at `confidence`."""

    difference: float
    low: float
    high: float
    queries: int


@dataclass(frozen=True)
class RelevanceEvidence:
    """Per source, per category ('' : all categories). A source left empty has no data."""

    judge: Mapping[str, Verdicts] = field(default_factory=dict)
    feedback: Mapping[str, Proportions] = field(default_factory=dict)
    probes: Mapping[str, Proportions] = field(default_factory=dict)
    golden: Golden | None = None


@dataclass(frozen=True)
class RelevancePolicy:
    margin: float = 0.05                 # δ
    rollback_alpha: float = 0.001
    advance_confidence: float = 0.95
    min_judgements: int = 30             # per source and category, before it is judged
    min_feedback: int = 50
    min_probes: int = 30
    min_golden_queries: int = 20


def _z(probability: float) -> float:
    return float(norm.ppf(probability))


def relevance_gate(evidence: RelevanceEvidence, policy: RelevancePolicy = RelevancePolicy()) -> GateResult:
    p = policy
    limits = {"margin": p.margin, "rollback_alpha": p.rollback_alpha, "advance_confidence": p.advance_confidence,
              "min_judgements": p.min_judgements, "min_feedback": p.min_feedback, "min_probes": p.min_probes}
    findings = Findings()
    values: dict[str, object] = {}
    deciding: dict[str, list[str]] = {"failed": [], "unproven": [], "passed": []}
    floor = -p.margin
    checks = []  # (source, category, statistic name, estimate function)
    for source, table, minimum in (("judge", evidence.judge, p.min_judgements),
                                   ("feedback", evidence.feedback, p.min_feedback),
                                   ("probes", evidence.probes, p.min_probes)):
        judged = {c: x for c, x in table.items() if x.trials >= minimum}
        categories = [c for c in judged if c]
        if len(categories) < 2:  # one category is the whole: nothing to look at apart
            judged = {c: x for c, x in judged.items() if not c}
        for category, data in judged.items():
            checks.append((source, category, data, len(categories)))
    for source, category, data, category_count in checks:
        # per-category looks share the rollback alpha (Bonferroni) so more categories mean no more false rollbacks
        alpha = p.rollback_alpha / category_count if category and category_count else p.rollback_alpha
        z_fail, z_pass = _z(1 - alpha), _z(p.advance_confidence)
        if isinstance(data, Verdicts):
            estimate, low, high = data.win_rate(z_pass, z_fail)
            label, shifted = "judge win rate", 0.5
        else:
            estimate, low, high = data.difference(z_pass, z_fail)
            label = "feedback positive rate difference" if source == "feedback" else "probe hit rate difference"
            shifted = 0.0
        where = f" in {category}" if category else ""
        key = f"{source}{'_' + category if category else ''}"
        values.update({key: estimate, f"{key}_lower": low, f"{key}_upper": high, f"{key}_n": data.trials})
        limit = shifted + floor
        if high < limit:
            findings.failed.append(f"{source}: {label}{where} {estimate:+.3f} is below {limit:+.3f} "
                                   f"(upper bound {high:+.3f}, n={data.trials})")
            deciding["failed"].append(key)
        elif not category:
            if low >= limit:
                findings.fine.append(f"{source}: {label} {estimate:+.3f} within the margin (lower bound {low:+.3f}, "
                                     f"n={data.trials})")
                deciding["passed"].append(key)
            else:
                findings.unproven.append(f"{source}: {label} {estimate:+.3f} not yet shown within the margin "
                                         f"(lower bound {low:+.3f} < {limit:+.3f}, n={data.trials})")
                deciding["unproven"].append(key)
    golden = evidence.golden
    if golden is not None and golden.queries >= p.min_golden_queries:
        # the eval keeps a 95 % interval; its width gives the standard error, read at this gate's own levels
        se = (golden.high - golden.low) / (2 * _z(0.975))
        low, high = golden.difference - _z(p.advance_confidence) * se, golden.difference + _z(1 - p.rollback_alpha) * se
        values.update({"golden": golden.difference, "golden_lower": low, "golden_upper": high,
                       "golden_n": golden.queries})
        if high < floor:
            findings.failed.append(f"golden: nDCG@10 difference {golden.difference:+.3f} is below {floor:+.3f} "
                                   f"(upper bound {high:+.3f})")
            deciding["failed"].append("golden")
        elif low >= floor:
            findings.fine.append(f"golden: nDCG@10 difference {golden.difference:+.3f} within the margin")
            deciding["passed"].append("golden")
        else:
            findings.unproven.append(f"golden: nDCG@10 difference {golden.difference:+.3f} not yet shown within "
                                     f"the margin (lower bound {low:+.3f})")
            deciding["unproven"].append("golden")
    if not (deciding["failed"] or deciding["unproven"] or deciding["passed"]):
        findings.unproven.append("no relevance evidence yet (no source has enough data: judge, feedback, probes, "
                                 "golden)")
    if deciding["passed"] and not deciding["failed"]:  # one source proves it; the unsure ones are reported
        findings.fine += [f"(not yet conclusive) {reason}" for reason in findings.unproven]
        findings.unproven = []
    result = findings.result(NAME, Outcome.ROLLBACK, values, limits)
    decided_by = {GateStatus.FAILED: deciding["failed"], GateStatus.NOT_ENOUGH_DATA: deciding["unproven"],
                  GateStatus.PASSED: deciding["passed"]}[result.status]
    return GateResult(result.name, result.status, result.on_failure, result.reason,
                      {**result.values, "decided_by": sorted(decided_by)}, result.thresholds)
