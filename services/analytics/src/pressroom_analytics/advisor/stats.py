"""The advisor's statistics, pure: empirical-Bayes slot estimates and comparison confidences.

Why empirical Bayes: a brand's "best hour" from raw means is whichever hour had two lucky
posts. Each slot (an hour, a weekday) is treated as a draw from the brand's distribution of
slots (normal-normal model): the slot's true mean ``theta_j ~ N(mu, tau^2)`` and its posts
``y ~ N(theta_j, sigma^2)``. The posterior mean shrinks a slot's raw mean towards the
brand's mean, the more the fewer posts it has::

    posterior_j = (n_j * mean_j + k * mu) / (n_j + k),   k = sigma^2 / tau^2

``sigma^2`` is the pooled within-slot variance, ``tau^2`` the between-slot variance by the
one-way random-effects ANOVA estimator ``(MSB - MSW) / n0`` (weighted by slot size, so small
slots do not inflate it the way an unweighted variance of slot means would). When ``tau^2``
is 0 the slots do not differ beyond noise: every posterior is ``mu`` and nothing stands out.

Confidence says how sure the ranking is *and* how much data it stands on:
``separation * n / (n + N_HALF)``, where ``separation = 2 * Phi(z) - 1`` for ``z`` the gap
between the best and the runner-up over their combined posterior standard deviation, and
``n / (n + N_HALF)`` grows with the posts behind it (half at ``N_HALF`` posts).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# The sample size at which the sample factor of a confidence is one half: posts, weeks.
N_HALF = 30.0
WEEKS_HALF = 8.0


@dataclass(frozen=True)
class Slot(Generic[K]):
    """One slot's raw and shrunk estimates."""

    key: K
    n: int
    raw_mean: float
    posterior_mean: float
    posterior_var: float


@dataclass(frozen=True)
class Shrunk(Generic[K]):
    """Every slot's estimates plus the model's parameters."""

    slots: list[Slot[K]]
    grand_mean: float
    within_var: float
    between_var: float
    n: int

    @property
    def k(self) -> float:
        """The prior's weight in posts (``inf`` when slots do not differ)."""
        return math.inf if self.between_var <= 0 else self.within_var / self.between_var

    def ranked(self) -> list[Slot[K]]:
        return sorted(self.slots, key=lambda s: (-s.posterior_mean, -s.n))


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def variance(values: Sequence[float]) -> float:
    """The sample variance (n - 1), 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def phi(z: float) -> float:
    """The standard normal CDF."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def sample_factor(n: int, half: float = N_HALF) -> float:
    """``n / (n + half)``: 0 without data, one half at ``half``, towards 1 with more."""
    return n / (n + half) if n > 0 else 0.0


def shrink(groups: dict[K, list[float]]) -> Shrunk[K]:
    """Empirical-Bayes estimates of each group's mean (see the module's docstring)."""
    groups = {key: values for key, values in groups.items() if values}
    all_values = [v for values in groups.values() for v in values]
    n_total = len(all_values)
    grand = mean(all_values)
    j = len(groups)
    if n_total == 0:
        return Shrunk([], 0.0, 0.0, 0.0, 0)
    means = {key: mean(values) for key, values in groups.items()}
    ss_within = sum((v - means[key]) ** 2 for key, values in groups.items() for v in values)
    within = ss_within / (n_total - j) if n_total > j else variance(all_values)
    between = 0.0
    if j > 1:
        msb = sum(len(values) * (means[key] - grand) ** 2 for key, values in groups.items()) / (
            j - 1
        )
        n0 = (n_total - sum(len(values) ** 2 for values in groups.values()) / n_total) / (j - 1)
        if n0 > 0:
            between = max(0.0, (msb - within) / n0)
    slots = []
    for key, values in groups.items():
        n = len(values)
        if between <= 0 or within <= 0:
            # No spread between slots (or none within: identical posts): everything is the
            # brand's mean, or exactly the slot's mean when the posts never vary.
            post_mean = grand if between <= 0 else means[key]
            post_var = 0.0
        else:
            k = within / between
            post_mean = (n * means[key] + k * grand) / (n + k)
            post_var = 1.0 / (n / within + 1.0 / between)
        slots.append(Slot(key, n, means[key], post_mean, post_var))
    return Shrunk(slots, grand, within, between, n_total)


def separation(best: Slot[K], runner_up: Slot[K] | None) -> float:
    """``2 * Phi(z) - 1`` for the best slot against the runner-up: 0 when they cannot be
    told apart, towards 1 when the gap is many standard deviations."""
    if runner_up is None:
        return 0.0
    gap = best.posterior_mean - runner_up.posterior_mean
    spread = math.sqrt(best.posterior_var + runner_up.posterior_var)
    if gap <= 0:
        return 0.0
    if spread == 0:
        return 1.0
    return 2.0 * phi(gap / spread) - 1.0


def best_slot_confidence(shrunk: Shrunk[K]) -> float:
    ranked = shrunk.ranked()
    if len(ranked) < 2 or shrunk.between_var <= 0:
        return 0.0
    return clamp01(separation(ranked[0], ranked[1]) * sample_factor(shrunk.n))


@dataclass(frozen=True)
class Comparison:
    """Two groups' means (``a`` against ``b``) and how sure the difference is."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    lift: float  # (mean_a - mean_b) / mean_b, 0 when mean_b is 0
    confidence: float


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's z for the difference of means, turned into a confidence as above (the sample
    factor on the smaller group: a comparison is as good as its thinner side)."""
    mean_a, mean_b = mean(a), mean(b)
    se = math.sqrt(variance(a) / max(len(a), 1) + variance(b) / max(len(b), 1))
    gap = abs(mean_a - mean_b)
    sep = (1.0 if gap > 0 else 0.0) if se == 0 else 2.0 * phi(gap / se) - 1.0
    lift = (mean_a - mean_b) / mean_b if mean_b else 0.0
    confidence = clamp01(sep * sample_factor(min(len(a), len(b))))
    return Comparison(len(a), len(b), mean_a, mean_b, lift, confidence)


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson's r, 0 when either side is constant."""
    if len(xs) < 2:
        return 0.0
    mx, my = mean(xs), mean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


def correlation_confidence(r: float, n: int, half: float = WEEKS_HALF) -> float:
    """How sure ``r`` is not 0 (its t statistic as a normal z), times the sample factor of
    its ``n`` points (weeks: half at ``WEEKS_HALF``)."""
    if n < 3 or r == 0:
        return 0.0
    if abs(r) >= 1:
        return clamp01(sample_factor(n, half))
    t = abs(r) * math.sqrt((n - 2) / (1 - r * r))
    return clamp01((2.0 * phi(t) - 1.0) * sample_factor(n, half))


def clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


def rounded(values: Iterable[float], digits: int = 2) -> list[float]:
    return [round(v, digits) for v in values]
