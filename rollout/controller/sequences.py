"""Confidence sequences: bounds that stay valid however often the controller looks.

A fixed-sample interval at 99.9 % is wrong one time in a thousand *per look*; the controller
looks at the same growing window every few minutes, so over a stage its chance of a false
alarm grows with every look. A confidence sequence (Howard, Ramdas, McAuliffe & Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021) covers
the true value at every sample size at once with probability 1 - alpha: it comes from a
nonnegative martingale (a mixture of likelihood ratios) and Ville's inequality, so reading it
12 or 1,000 times a stage changes nothing.

Three sequences, all closed forms or one root search (scipy):
- `rate_bounds`: a Bernoulli rate (error rates), the beta-binomial mixture martingale
  (Robbins 1970; Howard et al. 2021, section 3) with a Beta prior centred on a reference rate.
- `quantile_bounds`: a quantile (p95 latency), from the same mixture on the count of samples
  below the true quantile, which is Binomial(n, q) whatever the distribution (Howard & Ramdas,
  "Sequential estimation of quantiles with applications to A/B-testing and best-arm
  identification", Bernoulli 2022, Theorem 1): order statistics at the rank bounds.
- `mean_bounds`: a mean (similarity, overlap), the asymptotic normal-mixture sequence of
  Waudby-Smith, Arnold, Wu, Howard & Ramdas ("Time-uniform central limit theory and asymptotic
  confidence sequences", Ann. Statist. 2024, Theorem 2.2), as GrowthBook and Eppo use;
  `normal_bounds` is the same sequence from an estimate and its spread (counts, a stored
  interval), `share_difference_bounds` for the difference of two shares (success counts).

Each mixture is tuned to be tightest near `tuned_for` samples; it is valid at every size.
The package `confseq` (by the authors of the first two papers) implements these, but ships
as a C++ source distribution at version 0.0.x; the formulas here are a few lines of scipy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq  # type: ignore[import-untyped]  # scipy ships no types
from scipy.special import betaln  # type: ignore[import-untyped]  # scipy ships no types

TUNED_FOR = 2000   # samples at which the mixtures are tightest (about where a regression should show)


def concentration(alpha: float, tuned_for: float = TUNED_FOR) -> float:
    """Beta prior strength whose spread matches the deviation detectable at `tuned_for` samples."""
    return max(tuned_for / (2 * math.log(1 / alpha)), 2.0)


def log_mixture(successes: float, n: float, p: float, strength: float, centre: float) -> float:
    """log of the beta-binomial mixture martingale for "the rate is p" after `successes` of `n`.

    Beta(strength * centre, strength * (1 - centre)) mixes the likelihood ratios q vs p; under
    p its expectation is 1 at every n, so it exceeds 1 / alpha with probability at most alpha.
    """
    a, b = strength * centre, strength * (1 - centre)
    return float(betaln(a + successes, b + n - successes) - betaln(a, b)
                 - successes * math.log(p) - (n - successes) * math.log1p(-p))


def rate_bounds(successes: int, n: int, alpha: float, *, centre: float,
                tuned_for: float = TUNED_FOR) -> tuple[float, float]:
    """(lower, upper): a 1 - alpha confidence sequence for a Bernoulli rate after `successes` of `n`."""
    if n <= 0:
        return 0.0, 1.0
    strength, level = concentration(alpha, tuned_for), math.log(1 / alpha)

    def excess(p: float) -> float:
        return log_mixture(successes, n, p, strength, centre) - level

    tiny = 1e-12
    estimate = min(max(successes / n, tiny), 1 - tiny)
    if excess(estimate) >= 0:   # the whole sequence is empty (probability <= alpha): report the estimate
        return estimate, estimate
    lower = 0.0 if successes == 0 or excess(tiny) < 0 else brentq(excess, tiny, estimate, xtol=1e-12)
    upper = 1.0 if successes == n or excess(1 - tiny) < 0 else brentq(excess, estimate, 1 - tiny, xtol=1e-12)
    return float(lower), float(upper)


def rank_bounds(n: int, q: float, alpha: float, tuned_for: float = TUNED_FOR) -> tuple[int, int]:
    """1-based ranks (low, high): at every n, with probability 1 - alpha, the true q-quantile lies
    at or above the low-th smallest of n samples and below the high-th (0 or n + 1: no bound)."""
    strength, level = concentration(alpha, tuned_for), math.log(1 / alpha)

    def excess(count: float) -> float:
        return log_mixture(count, n, q, strength, q) - level

    centre = n * q
    if excess(0.0) < 0:
        low = 0
    else:
        low = math.floor(brentq(excess, 0.0, centre)) + 1
    if excess(float(n)) < 0:
        high = n + 1
    else:
        high = math.ceil(brentq(excess, centre, float(n))) + 1
    return low, min(high, n + 1)


def quantile_bounds(values: np.ndarray, q: float, alpha: float, tuned_for: float = TUNED_FOR) -> tuple[float, float]:
    """(lower, upper): a 1 - alpha confidence sequence for the q-quantile of `values`' distribution
    (lower 0 and upper inf while there are too few samples to bound that side)."""
    n = len(values)
    if n == 0:
        return 0.0, math.inf
    low, high = rank_bounds(n, q, alpha, tuned_for)
    wanted = [k - 1 for k in (low, high) if 1 <= k <= n]
    picked = dict(zip(wanted, np.partition(values, wanted)[wanted], strict=False)) if wanted else {}
    lower = float(picked[low - 1]) if 1 <= low <= n else 0.0
    upper = float(picked[high - 1]) if 1 <= high <= n else math.inf
    return lower, upper


def mixture_rho(alpha: float, tuned_for: float = TUNED_FOR) -> float:
    """The normal mixture's spread that makes the sequence tightest at `tuned_for` samples."""
    log_term = -2 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term) + 1) / tuned_for)


def normal_radius(n: int, sd: float, alpha: float, tuned_for: float = TUNED_FOR, *, one_sided: bool = False) -> float:
    """Half-width, on the mean, of the normal-mixture sequence after n samples of spread sd: two-sided
    (both bounds hold together with probability 1 - alpha), or one-sided (only the bound a decision reads,
    the half-normal mixture of Howard et al. 2021, section 3.2: log(sqrt(n rho^2 + 1) / (2 alpha) + 1))."""
    if n <= 0:
        return math.inf
    rho2 = mixture_rho(alpha, tuned_for) ** 2
    spread = math.sqrt(n * rho2 + 1)
    level = math.log(spread / (2 * alpha) + 1) if one_sided else math.log(spread / alpha)
    return sd * math.sqrt(2 * (n * rho2 + 1) / (n * n * rho2) * level)


def mean_bounds(values: np.ndarray, alpha: float, tuned_for: float = TUNED_FOR) -> tuple[float, float, float]:
    """(mean, lower, upper): the asymptotic 1 - alpha confidence sequence for the mean of `values`."""
    n = len(values)
    if n < 2:
        return (float(values[0]) if n else math.nan), -math.inf, math.inf
    mean = float(np.mean(values))
    radius = normal_radius(n, float(np.std(values, ddof=1)), alpha, tuned_for)
    return mean, mean - radius, mean + radius


def difference_bounds(x: np.ndarray, y: np.ndarray, alpha: float, scale: float = 1.0,
                      tuned_for: float = TUNED_FOR) -> tuple[float, float, float]:
    """(difference, lower, upper): the asymptotic 1 - alpha confidence sequence for mean(x) - scale * mean(y),
    two independent samples drawn at a fixed ratio (a stage's split), indexed by the size of x."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return math.nan, -math.inf, math.inf
    difference = float(np.mean(x) - scale * np.mean(y))
    se = math.sqrt(float(np.var(x, ddof=1)) / n + scale * scale * float(np.var(y, ddof=1)) / m)
    radius = normal_radius(n, se * math.sqrt(n), alpha, tuned_for)
    return difference, difference - radius, difference + radius


def normal_bounds(estimate: float, sd: float, n: int, alpha: float, tuned_for: float = TUNED_FOR, *,
                  one_sided: bool = False) -> tuple[float, float]:
    """(lower, upper): the normal-mixture sequence around an estimate from n samples of spread sd each
    (one_sided: each bound alone holds with probability 1 - alpha, for a decision that reads only one)."""
    radius = normal_radius(n, sd, alpha, tuned_for, one_sided=one_sided)
    return estimate - radius, estimate + radius


def share_difference_bounds(successes_x: int, n_x: int, successes_y: int, n_y: int, alpha: float,
                            tuned_for: float = TUNED_FOR, *, one_sided: bool = False) -> tuple[float, float, float]:
    """(difference, lower, upper): the 1 - alpha sequence for the share of successes in x minus that in y,
    two independent samples at a fixed ratio, indexed by the size of x (as `difference_bounds`).

    The spread is taken from the shares with one success and one failure added to each side, so
    a sample of all successes (every probe a hit) still has some: n identical answers are not certainty.
    """
    if n_x <= 0 or n_y <= 0:
        return math.nan, -1.0, 1.0
    difference = successes_x / n_x - successes_y / n_y
    px, py = (successes_x + 1) / (n_x + 2), (successes_y + 1) / (n_y + 2)
    se = math.sqrt(px * (1 - px) / n_x + py * (1 - py) / n_y)
    lower, upper = normal_bounds(difference, se * math.sqrt(n_x), n_x, alpha, tuned_for, one_sided=one_sided)
    return difference, max(lower, -1.0), min(upper, 1.0)
def _log_slope(below: float, above: float, spread: float) -> float:
    """d log(x) / dF between two quantiles `2 * spread` apart: the inverse of x * density there, which turns a
    quantile's sampling error into an exceedance rate's."""
    return (math.log(max(above, 1e-12)) - math.log(max(below, 1e-12))) / (2 * spread)


def exceedance_bounds(candidate: np.ndarray, baseline: np.ndarray, q: float, alpha: float, scale: float = 1.0,
                      tuned_for: float = TUNED_FOR) -> tuple[float, float, float, float]:
    """(share, lower, upper, threshold): the asymptotic 1 - alpha confidence sequence for the share of
    candidate values above `scale` x the baseline's q-quantile, indexed by the candidate's sample size.

    The candidate's q-quantile is at most `scale` x the baseline's exactly when that share is at most
    1 - q, so a lower bound above 1 - q says the candidate's tail is beyond the margin. Unlike two
    separate quantile sequences (each paying its own width), one two-sample sequence pays the two
    samples' errors together: the share is a Bernoulli mean (variance s(1 - s) / n), and the baseline
    quantile's error adds q(1 - q) / m times the squared ratio of the two densities at the threshold
    (delta method; estimated from quantile spacings, and never taken below 1, the ratio when the
    candidate is the baseline scaled by the margin, so a noisy estimate cannot shrink the width).
    Asymptotic like `difference_bounds`: read it once each sample has a few dozen values in the tail.
    """
    n, m = len(candidate), len(baseline)
    if n < 2 or m < 2:
        return math.nan, -math.inf, math.inf, math.nan
    spread = max(0.01, min(q, 1 - q) / 4)
    base_below, base_q, base_above = np.quantile(baseline, [q - spread, q, q + spread])
    threshold = scale * float(base_q)
    share = float(np.count_nonzero(candidate > threshold)) / n
    level = min(max(1 - share, spread), 1 - spread)
    cand_below, cand_above = np.quantile(candidate, [level - spread, level + spread])
    ratio = max(1.0, _log_slope(float(base_below), float(base_above), spread)
                / max(_log_slope(float(cand_below), float(cand_above), spread), 1e-12))
    variance = max(share * (1 - share), q * (1 - q) / 4) / n + ratio * ratio * q * (1 - q) / m
    radius = normal_radius(n, math.sqrt(variance * n), alpha, tuned_for)
    return share, share - radius, share + radius, threshold
