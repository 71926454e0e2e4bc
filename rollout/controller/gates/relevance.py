"""Relevance: the candidate is non-inferior to the baseline within a margin δ, on whichever sources have data.

It replaces the similarity floor as the quality gate: raw cosine similarity sits on each
model's own scale, and disagreement with the baseline (shadow overlap) says the candidate
differs, not that it is worse. The sources (each optional, see `rollout.relevance`):

- judge: pairwise verdicts on shadow disagreements; the candidate's win rate (a tie counts
  half) must be shown ≥ 0.5 − δ;
- feedback: positive rate of explicit feedback, candidate minus baseline ≥ −δ;
- probes: known-item hit rate, candidate minus baseline ≥ −δ;
- golden: the latest `rollout eval`'s paired nDCG@10 difference ≥ −δ (its standard error taken from
  the eval's 95 % bootstrap interval).

Every bound is a one-sided confidence sequence (`rollout.controller.sequences`, the normal
mixture; each decision reads one side: the upper bound to roll back, the lower to pass), so
the controller may read the gate at every evaluation of a stage and its chance of a false
rollback stays within the alpha the gate registry gives it. That alpha is split evenly among
the sources configured for the deployment (`RelevancePolicy.sources`, fixed before any data:
a judge set, probes scheduled, feedback, a required golden set), whether or not they have data
yet, so a source arriving mid-stage takes nothing from the others and a source that can never
report takes nothing at all. Within a source, three quarters go to the overall check (most
regressions are global) and a quarter is shared by its categories (those present in the
evidence); the golden set has no categories and keeps its whole share. `alpha_shares` is that
bookkeeping; the shares never add up to more than the gate's alpha. Each mixture is tuned to the
sample size a source typically has when it decides (`RelevancePolicy.tuned_for`); it is valid at
every size.

The advance side reads each source's lower bound at 1 − advance_confidence (the chance of passing
a candidate that is worse than −δ on that source's measure), from the same kind of sequence, so
passing stays honest however often the controller reads the gate.

Each source is judged overall and per category where a category has enough data: it fails
when the rollback-side bound shows the candidate worse than −δ, passes when the
advance_confidence bound shows it within δ, and holds otherwise. Any failure rolls back; else
a source that shows non-inferiority passes the gate (sources still inconclusive are reported
beside it: a source with little data, such as feedback at a 10 % stage, must not hold a
candidate the others have cleared); else hold. No source with data: hold, and say so. Every
result names the sources that decided.

The result's headline (statistic, bound, limit) is the deciding check's, on one axis for every
source: candidate minus the bar's centre (the judge's win rate minus 0.5), its rollback-side
(upper) bound, and −δ. With no data the statistic is 0 (no difference shown) and the bound 1
(the widest a difference of shares can be).

`relevance_gate` is a pure function of a `RelevanceEvidence`, so a verdict can be replayed and the
gate can be registered in a gate registry as it stands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from rollout.controller.gates.result import Findings, GateResult
from rollout.controller.outcome import Outcome
from rollout.controller.sequences import normal_bounds, share_difference_bounds
from rollout.controller.thresholds import Thresholds

NAME = "relevance"
SOURCES = ("judge", "feedback", "probes", "golden")
OVERALL_SHARE = 0.75  # of a source's alpha, for its overall check; its categories share the rest
GOLDEN_Z95 = 1.959963984540054  # the eval's interval is a 95 % one: its half-width over this is the standard error


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

    def difference(self, fail_alpha: float, pass_alpha: float, tuned_for: float) -> tuple[float, float, float]:
        """Candidate minus baseline: (estimate, lower bound at pass_alpha, upper bound at fail_alpha)."""
        counts = (self.candidate_successes, self.candidate_trials, self.baseline_successes, self.baseline_trials)
        estimate, _, upper = share_difference_bounds(*counts, fail_alpha, tuned_for, one_sided=True)
        _, lower, _ = share_difference_bounds(*counts, pass_alpha, tuned_for, one_sided=True)
        return estimate, lower, upper


@dataclass(frozen=True)
class Verdicts:
    """Pairwise judge verdicts from the candidate's side."""

    wins: int
    losses: int
    ties: int

    @property
    def trials(self) -> int:
        return self.wins + self.losses + self.ties

    def win_rate(self, fail_alpha: float, pass_alpha: float, tuned_for: float) -> tuple[float, float, float]:
        """Win rate (a tie is half a win): (estimate, lower bound at pass_alpha, upper bound at fail_alpha)."""
        n = self.trials
        rate = (self.wins + self.ties / 2) / n
        second = (self.wins + self.ties / 4) / n  # mean of the squared scores (1, 0.25, 0)
        sd = math.sqrt(max(second - rate * rate, 1 / (4 * n)))  # never zero: n equal scores are not certainty
        _, upper = normal_bounds(rate, sd, n, fail_alpha, tuned_for, one_sided=True)
        lower, _ = normal_bounds(rate, sd, n, pass_alpha, tuned_for, one_sided=True)
        return rate, max(lower, 0.0), min(upper, 1.0)


@dataclass(frozen=True)
class Golden:
    """The latest eval: the paired nDCG@10 difference and its two-sided 95 % interval."""

    difference: float
    low: float
    high: float
    queries: int

    def bounds(self, fail_alpha: float, pass_alpha: float, tuned_for: float) -> tuple[float, float, float]:
        """(difference, lower bound at pass_alpha, upper bound at fail_alpha), indexed by the labelled queries:
        a golden set that grows between evals stays covered."""
        sd = (self.high - self.low) / (2 * GOLDEN_Z95) * math.sqrt(self.queries)
        _, upper = normal_bounds(self.difference, sd, self.queries, fail_alpha, tuned_for, one_sided=True)
        lower, _ = normal_bounds(self.difference, sd, self.queries, pass_alpha, tuned_for, one_sided=True)
        return self.difference, max(lower, -1.0), min(upper, 1.0)


@dataclass(frozen=True)
class RelevanceEvidence:
    """Per source, per category ('' : all categories). A source left empty has no data."""

    judge: Mapping[str, Verdicts] = field(default_factory=dict)
    feedback: Mapping[str, Proportions] = field(default_factory=dict)
    probes: Mapping[str, Proportions] = field(default_factory=dict)
    golden: Golden | None = None


def _tuned_for() -> dict[str, int]:
    # about the samples a source has when it decides a stage: a thousand judged disagreements,
    # a couple of hundred feedback answers (a few % of the candidate's answers) and probes (a
    # round per category every hour), a golden set of tens of queries
    return {"judge": 1000, "feedback": 200, "probes": 200, "golden": 40}


@dataclass(frozen=True)
class RelevancePolicy:
    margin: float = 0.05                 # δ
    rollback_alpha: float = 0.001        # the whole gate's (its share from the gate registry)
    advance_confidence: float = 0.95
    min_judgements: int = 30             # per source and category, before it is judged
    min_feedback: int = 50
    min_probes: int = 30
    min_golden_queries: int = 20
    tuned_for: Mapping[str, int] = field(default_factory=_tuned_for)  # per source: where its mixture is tightest
    sources: tuple[str, ...] = SOURCES   # configured for the deployment: only these share the alpha and are read

    @classmethod
    def of(cls, thresholds: Thresholds, rollback_alpha: float) -> RelevancePolicy:
        """The policy a plan's thresholds give the gate, at its share of the rollback alpha."""
        return cls(margin=thresholds.relevance_margin, rollback_alpha=rollback_alpha,
                   advance_confidence=thresholds.advance_confidence, sources=thresholds.relevance_sources)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sources) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown relevance sources {unknown}: known are {list(SOURCES)}")


@dataclass(frozen=True)
class Reading:
    """One check of one source (and category): the estimate, its bounds and the bar it is held to."""

    key: str
    source: str
    category: str
    label: str
    estimate: float
    lower: float        # at advance_confidence: passing needs it at or above the limit
    upper: float        # at the check's share of the rollback alpha: below the limit rolls back
    limit: float
    centre: float       # the bar's centre (0.5 for a win rate, 0 for a difference): the headline's origin
    margin: float
    n: int

    @property
    def where(self) -> str:
        return f" in {self.category}" if self.category else ""

    def headline(self) -> dict[str, float]:
        return {"statistic": self.estimate - self.centre, "bound": self.upper - self.centre,
                "limit": -self.margin}


LABELS = {"judge": "judge win rate", "feedback": "feedback positive rate difference",
          "probes": "probe hit rate difference", "golden": "nDCG@10 difference"}


def _tables(evidence: RelevanceEvidence) -> dict[str, Mapping[str, Verdicts] | Mapping[str, Proportions]]:
    return {"judge": evidence.judge, "feedback": evidence.feedback, "probes": evidence.probes}


def alpha_shares(evidence: RelevanceEvidence, p: RelevancePolicy) -> dict[str, float]:
    """The rollback alpha of every check the evidence could hold (by reading key), for the configured sources
    only: each configured source gets an equal part of the gate's alpha, whether it has data or not."""
    source_alpha = p.rollback_alpha / max(len(p.sources), 1)
    shares: dict[str, float] = {}
    for source, table in _tables(evidence).items():
        if source not in p.sources:
            continue
        shares[source] = source_alpha * OVERALL_SHARE
        present = [c for c in table if c]
        shares.update({f"{source}_{c}": source_alpha * (1 - OVERALL_SHARE) / len(present) for c in present})
    if "golden" in p.sources:
        shares["golden"] = source_alpha
    return shares


def _readings(evidence: RelevanceEvidence, p: RelevancePolicy) -> list[Reading]:
    """Every check the evidence supports, each at its share of the gate's rollback alpha."""
    shares = alpha_shares(evidence, p)
    pass_alpha = 1 - p.advance_confidence
    readings: list[Reading] = []
    minimums = {"judge": p.min_judgements, "feedback": p.min_feedback, "probes": p.min_probes}
    for source, table in _tables(evidence).items():
        if source not in p.sources:
            continue
        judged = {c: x for c, x in table.items() if x.trials >= minimums[source]}
        if len([c for c in judged if c]) < 2:  # one category is the whole: nothing to look at apart
            judged = {c: x for c, x in judged.items() if not c}
        centre = 0.5 if source == "judge" else 0.0
        for category, data in judged.items():
            alpha = shares[f"{source}_{category}" if category else source]
            tuned = p.tuned_for[source]
            if isinstance(data, Verdicts):
                estimate, lower, upper = data.win_rate(alpha, pass_alpha, tuned)
            else:
                estimate, lower, upper = data.difference(alpha, pass_alpha, tuned)
            readings.append(Reading(f"{source}{'_' + category if category else ''}", source, category,
                                    LABELS[source], estimate, lower, upper, centre - p.margin, centre, p.margin,
                                    data.trials))
    golden = evidence.golden
    if "golden" in p.sources and golden is not None and golden.queries >= p.min_golden_queries:
        estimate, lower, upper = golden.bounds(shares["golden"], pass_alpha, p.tuned_for["golden"])
        readings.append(Reading("golden", "golden", "", LABELS["golden"], estimate, lower, upper, -p.margin, 0.0,
                                p.margin, golden.queries))
    return readings


def relevance_gate(evidence: RelevanceEvidence, policy: RelevancePolicy = RelevancePolicy()) -> GateResult:
    p = policy
    limits = {"margin": p.margin, "rollback_alpha": p.rollback_alpha, "advance_confidence": p.advance_confidence,
              "min_judgements": p.min_judgements, "min_feedback": p.min_feedback, "min_probes": p.min_probes,
              "min_golden_queries": p.min_golden_queries}
    findings = Findings()
    values: dict[str, object] = {}
    failed: list[Reading] = []
    unproven: list[Reading] = []
    passed: list[Reading] = []
    for r in _readings(evidence, p):
        values.update({r.key: r.estimate, f"{r.key}_lower": r.lower, f"{r.key}_upper": r.upper, f"{r.key}_n": r.n})
        shown = f"{r.source}: {r.label}{r.where} {r.estimate:+.3f}"
        if r.upper < r.limit:
            findings.failed.append(f"{shown} is below {r.limit:+.3f} (upper bound {r.upper:+.3f}, n={r.n})")
            failed.append(r)
        elif r.category:
            continue  # categories can only fail: passing is the whole's
        elif r.lower >= r.limit:
            findings.fine.append(f"{shown} within the margin (lower bound {r.lower:+.3f}, n={r.n})")
            passed.append(r)
        else:
            findings.unproven.append(f"{shown} not yet shown within the margin "
                                     f"(lower bound {r.lower:+.3f} < {r.limit:+.3f}, n={r.n})")
            unproven.append(r)
    if not (failed or unproven or passed):
        findings.unproven.append("no relevance evidence yet (no configured source has enough data: "
                                 f"{', '.join(p.sources) or 'none configured'})")
    if passed and not failed:  # one source proves it; the unsure ones are reported
        findings.fine += [f"(not yet conclusive) {reason}" for reason in findings.unproven]
        findings.unproven = []
    if failed:
        deciding, headline = failed, min(failed, key=lambda r: r.upper - r.limit).headline()
    elif passed:
        deciding, headline = passed, max(passed, key=lambda r: r.lower - r.limit).headline()
    elif unproven:
        deciding, headline = unproven, min(unproven, key=lambda r: r.upper - r.limit).headline()
    else:
        deciding, headline = [], {"statistic": 0.0, "bound": 1.0, "limit": -p.margin}
    values["decided_by"] = sorted(r.key for r in deciding)
    values["sources"] = list(p.sources)
    return findings.result(NAME, Outcome.ROLLBACK, values, limits, **headline)
