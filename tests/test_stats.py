"""stats.py: the scipy/statsmodels statistics agree with their textbook definitions computed by hand here."""
from __future__ import annotations

import math
import random
from fractions import Fraction
from itertools import product

import numpy as np
import pytest

from promptkit import stats
from promptkit.errors import GraderError


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def test_wilson_matches_the_formula_and_has_exact_ends():
    for n in (1, 3, 10, 57):
        for k in range(n + 1):
            ci = stats.wilson_interval(k, n)
            lo, hi = wilson_by_hand(k, n)
            assert (ci.low, ci.high) == pytest.approx((max(lo, 0.0), min(hi, 1.0)), abs=1e-12)
    assert stats.wilson_interval(0, 9).low == 0.0 and stats.wilson_interval(9, 9).high == 1.0
    with pytest.raises(GraderError, match="confidence level"):
        stats.wilson_interval(1, 2, level=1.5)


def test_binomial_and_mcnemar_equal_the_exact_sum():
    for n in range(0, 25):
        for k in range(n + 1):
            m = min(k, n - k)
            exact = float(min(Fraction(1), 2 * Fraction(sum(math.comb(n, i) for i in range(m + 1)), 2 ** n)))
            assert stats.binomial_two_sided(k, n) == pytest.approx(exact, rel=1e-12)
            assert stats.mcnemar_p(k, n - k) == pytest.approx(exact, rel=1e-12)
    with pytest.raises(GraderError, match="0 <= k <= n"):
        stats.binomial_two_sided(5, 3)


def test_roc_auc_counts_every_positive_negative_pair():
    rnd = random.Random(3)
    for _ in range(20):
        gold = [rnd.random() < 0.5 for _ in range(15)] + [True, False]
        scores = [rnd.choice([0.1, 0.2, 0.5, 0.7, 0.9]) for _ in gold]  # many ties
        pairs = [(s, t) for (g, s), (h, t) in product(zip(gold, scores), repeat=2) if g and not h]
        by_hand = sum(1.0 if s > t else 0.5 if s == t else 0.0 for s, t in pairs) / len(pairs)
        assert stats.roc_auc(gold, scores) == pytest.approx(by_hand, abs=1e-12)


def test_bootstrap_is_the_seeded_percentile_of_rows_resampled_together():
    rnd = np.random.default_rng(1)
    x, y = rnd.normal(size=40), rnd.normal(size=40)
    b = stats.bootstrap(lambda u, v, axis: (u - v).mean(axis=axis), x, y, n_boot=500, seed=4)
    idx = np.random.default_rng(4).integers(0, 40, (500, 40))  # the draws, by hand
    by_hand = (x[idx] - y[idx]).mean(axis=1)
    assert np.allclose(b.distribution, by_hand)
    assert (b.low, b.high) == pytest.approx(tuple(np.quantile(by_hand, [0.025, 0.975])))
    assert b.low < (x - y).mean() < b.high


def test_bootstrap_batches_draw_the_same_resamples(monkeypatch):
    x = np.arange(301, dtype=float) % 7
    whole = stats.bootstrap(lambda u, axis: u.mean(axis=axis), x, n_boot=200, seed=2)
    monkeypatch.setattr(stats, "BATCH_CELLS", 301 * 7)  # batches of 7 resamples
    parts = stats.bootstrap(lambda u, axis: u.mean(axis=axis), x, n_boot=200, seed=2)
    assert np.array_equal(whole.distribution, parts.distribution)


def test_bootstrap_of_one_row_is_that_row_and_cluster_bootstrap_needs_two_clusters():
    b = stats.bootstrap(lambda u, axis: u.mean(axis=axis), np.array([0.25]), n_boot=10)
    assert b.low == b.high == 0.25 and b.distribution.shape == (10,)
    assert math.isnan(stats.cluster_bootstrap([1.0, 0.0], ["r1", "r1"])[1])
    mean, lo, hi = stats.cluster_bootstrap([1, 0, 1, 1], ["a", "b", "c", "d"], n_boot=300)
    assert mean == 0.75 and 0.0 <= lo < mean < hi <= 1.0


def test_bootstrap_p_value_is_smoothed_and_two_sided():
    assert stats.bootstrap_p_value(np.full(99, 0.5), 0.5) == pytest.approx(1 / 100)  # never 0
    assert stats.bootstrap_p_value(np.zeros(99), 0.0) == 1.0
