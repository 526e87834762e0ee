"""The judgement of a comparison on hand-made scores (src/report/judgement.py): Holm's
adjustment, bootstrap intervals inside a score's range, analyzers tested against each other,
the agreement of criteria, the ranking's stability and the pairs a test would need."""

from __future__ import annotations

import math

import numpy as np
import pytest

from src.report import judgement


def test_holm_multiplies_the_kth_smallest_by_m_minus_k_plus_1_and_keeps_the_order():
    # Sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> non-decreasing: 0.06.
    np.testing.assert_allclose(judgement.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(judgement.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    assert judgement.holm([]).size == 0


def test_a_bootstrap_interval_stays_inside_the_scores_range():
    """Two seeds whose runs scored 0.1 and 0.5 on every image: a t interval over the two
    seeds is 0.3 ± 2.54; resampling seeds gives means 0.1, 0.3 or 0.5 (1/4, 1/2, 1/4)."""
    per_seed = [np.full(10, 0.1), np.full(10, 0.5)]
    assert judgement.bootstrap_interval(per_seed) == pytest.approx((0.1, 0.5))
    # One seed, images 0 and 1: means 0, 0.5 or 1.
    assert judgement.bootstrap_interval([np.array([0.0, 1.0])]) == pytest.approx((0.0, 1.0))
    # Undefined images are left out; none defined: no interval.
    assert judgement.bootstrap_interval([np.array([0.4, np.nan])]) == pytest.approx((0.4, 0.4))
    assert all(math.isnan(x) for x in judgement.bootstrap_interval([np.array([np.nan])]))


def test_an_analyzer_that_beats_every_other_is_best():
    """a - b = 1, 2, ..., 20 on the 20 images (no ties): the exact two-sided p is 2 / 2^20;
    c = b: p = 1. Holm over the three pairs: 3 x, 2 x (then non-decreasing), 1 x."""
    b = np.linspace(0.0, 0.19, 20)
    a = b + np.arange(1, 21)
    ranking = judgement.rank({"a": [a], "b": [b], "c": [b.copy()]}, higher_is_better=True)
    assert ranking.order[0] == "a" and ranking.best == "a" and ranking.tied_best == ["a"]
    p = 2 / 2**20
    assert ranking.adjusted["a", "b"] == pytest.approx(3 * p)
    assert ranking.adjusted["a", "c"] == pytest.approx(3 * p)  # 2p, raised to the one before
    assert ranking.adjusted[tuple(ranking.order[1:])] == 1.0
    assert ranking.pairs == 20
    # Lower is better: the same scores put b and c on top, tied.
    lower = judgement.rank({"a": [a], "b": [b], "c": [b.copy()]}, higher_is_better=False)
    assert lower.best is None and sorted(lower.tied_best) == ["b", "c"]


def test_overlapping_analyzers_are_tied_best_not_starred():
    """b's mean is higher by 0.005, but image by image it is as often below as above a."""
    rng = np.random.default_rng(0)
    a = rng.random(40)
    b = a + np.where(np.arange(40) % 2, 0.3, -0.3)
    b[0] += 0.2  # the means: 0.2 / 40 apart
    ranking = judgement.rank({"a": [a], "b": [b]}, higher_is_better=True)
    assert ranking.order == ["b", "a"]
    assert ranking.best is None and ranking.tied_best == ["b", "a"]
    # With one analyzer there is no runner-up: nobody is best.
    assert judgement.rank({"a": [a]}, higher_is_better=True).tied_best == []


def test_seeds_pair_image_by_image_and_undefined_pairs_are_left_out():
    first = [np.array([1.0, np.nan, 3.0]), np.array([5.0])]
    second = [np.array([0.5, 1.0, np.nan]), np.array([4.0])]
    np.testing.assert_array_equal(judgement.paired_differences(first, second), [0.5, 1.0])


def test_the_pairs_needed_to_separate_two_analyzers_by_hand():
    # Differences of mean 0.5 and standard deviation 1: ((1.95996 + 0.84162) / 0.5)^2 = 31.40,
    # divided by 3/pi = 32.88 -> 33.
    difference = np.array([0.5 - 1 / math.sqrt(2), 0.5 + 1 / math.sqrt(2)])
    assert judgement.pairs_needed(difference) == 33
    assert judgement.pairs_needed(np.array([-1.0, 1.0])) == math.inf  # no difference to find
    assert math.isnan(judgement.pairs_needed(np.array([1.0])))


def test_kendalls_tau_between_criteria_by_hand():
    means = {"x": {"a": 3.0, "b": 2.0, "c": 1.0}, "y": {"a": 1.0, "b": 2.0, "c": 3.0}}
    means["z"] = {"a": 3.0, "b": 1.0, "c": 2.0}  # one of three pairs swapped: (2 - 1) / 3
    matrix = judgement.kendall_matrix(means)
    assert matrix["x", "x"] == 1.0 and matrix["x", "y"] == -1.0
    assert matrix["x", "z"] == pytest.approx(1 / 3)
    assert math.isnan(judgement.kendall_matrix({"x": {"a": 1.0}, "y": {"a": 2.0}})["x", "y"])


def test_an_analyzer_far_ahead_ranks_top_in_every_resample():
    rng = np.random.default_rng(1)
    ahead = [rng.random(30) + 5, rng.random(30) + 5]
    behind = [rng.random(30), rng.random(30)]
    assert judgement.top_shares({"a": ahead, "b": behind}, True) == {"a": 1.0, "b": 0.0}
    assert judgement.top_shares({"a": ahead, "b": behind}, False) == {"a": 0.0, "b": 1.0}
    # Two equal analyzers share the top about evenly.
    same = judgement.top_shares({"a": behind, "b": [rng.random(30), rng.random(30)]}, True)
    assert 0.1 < same["a"] < 0.9 and same["a"] + same["b"] == pytest.approx(1.0)
