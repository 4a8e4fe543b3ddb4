"""The statistics behind every interval and p-value the kit prints, in one place, on scipy and statsmodels.

Wilson intervals for a rate (statsmodels), exact binomial / McNemar p-values
(statsmodels), ROC AUC from the Mann-Whitney U statistic (scipy), and one
percentile bootstrap (`scipy.stats.bootstrap`, paired resampling, vectorised,
seeded) that the cluster, label-metric and paired-difference intervals all use.
metrics.py builds classification scores and paired tests on these; results.py
its summaries. scipy and statsmodels are imported when first used, so
`import promptkit` stays quick.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .errors import GraderError

# Rows a resampling batch may hold (batch x rows), so a bootstrap of thousands of rows stays within memory.
BATCH_CELLS = 2_000_000


@dataclass(frozen=True)
class Interval:
    """A confidence interval: `low`..`high` at `level`, and how it was computed."""

    low: float
    high: float
    level: float = 0.95
    method: str = ""

    def __str__(self) -> str:
        return f"[{self.low:.3f}, {self.high:.3f}]"


def check_level(level: float) -> float:
    """The confidence level, checked: a clear error instead of a NaN interval."""
    if not 0 < level < 1:
        raise GraderError(f"confidence level must be between 0 and 1, got {level!r}")
    return level


# ---------------------------------------------------------------- closed forms


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for a proportion: sensible near 0 and 1 and for small n, unlike p +/- 1.96 se."""
    if n <= 0 or not 0 <= successes <= n:
        raise GraderError(f"wilson_interval needs 0 <= successes <= n and n > 0, got successes={successes}, n={n}")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=1 - check_level(level), method="wilson")
    low = 0.0 if successes == 0 else max(0.0, float(low))  # exact ends, not 1e-17 from rounding
    high = 1.0 if successes == n else min(1.0, float(high))
    return Interval(low, high, level, "wilson")


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact McNemar p-value from the discordant counts: each such row a fair coin flip under "no difference"."""
    from statsmodels.stats.contingency_tables import mcnemar

    return float(mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k or fewer successes (or as extreme) in n fair coin flips."""
    if not 0 <= k <= n:
        raise GraderError(f"binomial_two_sided needs 0 <= k <= n, got k={k}, n={n}")
    return mcnemar_p(k, n - k)


def roc_auc(gold: Sequence[Any], scores: Sequence[float], positive: Any = True) -> float:
    """Area under the ROC curve: the chance a random positive row scores above a random negative one.

    Ties count one half (the Mann-Whitney U statistic over average ranks). Shows
    whether likelihood scores separate the classes even when the argmax label
    is the same for every row.
    """
    gold = list(gold)
    scores = [float(s) for s in scores]
    if len(gold) != len(scores):
        raise GraderError(f"gold has {len(gold)} rows but scores has {len(scores)}")
    if any(math.isnan(s) for s in scores):
        raise GraderError("scores contain NaN; drop or fix those rows before computing ROC AUC")
    pos = [s for g, s in zip(gold, scores) if g == positive]
    neg = [s for g, s in zip(gold, scores) if g != positive]
    if not pos or not neg:
        raise GraderError(
            f"ROC AUC needs both classes in gold; got {len(pos)} rows equal to positive={positive!r} and "
            f"{len(neg)} others"
        )
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(pos, neg, method="asymptotic").statistic  # U of the positives
    return float(u) / (len(pos) * len(neg))


# ---------------------------------------------------------------- the bootstrap


@dataclass(frozen=True)
class Bootstrap:
    """A percentile bootstrap: the interval(s) and the resampled values behind them (last axis: resamples)."""

    low: Any
    high: Any
    distribution: Any


def bootstrap(
    statistic: Callable[..., Any],
    *samples: Any,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    rng: np.random.Generator | None = None,
) -> Bootstrap:
    """Percentile bootstrap of `statistic(*samples, axis=-1)`, resampling rows (the same rows of every sample).

    `statistic` takes arrays whose last axis is the rows and may return several
    values at once (shape (m, resamples)). The draws come from
    `np.random.default_rng(seed)` (or `rng`, to continue one stream), in
    batches of at most BATCH_CELLS rows x resamples.
    """
    check_level(level)
    samples = tuple(np.asarray(s) for s in samples)
    n = samples[0].shape[-1]
    rng = np.random.default_rng(seed) if rng is None else rng
    if n < 2:  # every resample of one row is that row (scipy asks for two)
        one = np.asarray(statistic(*(s[None, ...] for s in samples), axis=-1))
        dist = np.repeat(one, n_boot, axis=-1)
        return Bootstrap(one[..., 0][()], one[..., 0][()], dist)
    from scipy.stats import bootstrap as scipy_bootstrap

    res = scipy_bootstrap(
        samples, statistic, n_resamples=n_boot, batch=max(1, BATCH_CELLS // n), vectorized=True, paired=True,
        axis=-1, confidence_level=level, method="percentile", rng=rng,
    )
    return Bootstrap(res.confidence_interval.low, res.confidence_interval.high, res.bootstrap_distribution)


def bootstrap_p_value(distribution: Any, observed: float) -> float:
    """Share of resampled values at least as far from `observed` as it is from 0 (the null-shifted bootstrap).

    +1 smoothing, so it is never exactly 0.
    """
    d = np.asarray(distribution, float)
    extreme = int(np.sum(np.abs(d - observed) >= abs(observed) - 1e-12))
    return (extreme + 1) / (d.shape[-1] + 1)


def cluster_bootstrap(
    scores: Any, clusters: Any, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI, resampling clusters (dataset rows) so repeats are not counted as new evidence."""
    scores = np.asarray(scores, float)
    if len(scores) == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(scores))
    ids, inverse = np.unique(clusters, return_inverse=True)
    k = len(ids)
    if k < 2:
        return mean, math.nan, math.nan
    sums = np.bincount(inverse, weights=scores, minlength=k)
    counts = np.bincount(inverse, minlength=k).astype(float)
    b = bootstrap(lambda s, c, axis: s.sum(axis=axis) / c.sum(axis=axis), sums, counts,
                  n_boot=n_boot, seed=seed, level=level)
    return mean, float(b.low), float(b.high)
