from __future__ import annotations

import numpy as np
import pytest

from src.compare import mean_std_text, seed_stability
from src.metrics import (
    aopc,
    aopc_per_image,
    blank,
    blowup_share,
    discrete_entropy,
    emprt,
    off_classes,
    randomisation_similarity,
    rank_correlation,
    relevance_ratio,
)


def test_rank_correlation_is_one_for_monotone_maps_and_minus_one_for_reversed():
    maps = np.arange(2 * 3 * 3, dtype=float).reshape(2, 3, 3) + 1
    np.testing.assert_allclose(rank_correlation(maps, maps**2), [1.0, 1.0])
    np.testing.assert_allclose(rank_correlation(maps, 1 / maps), [-1.0, -1.0])


def test_rank_correlation_uses_absolute_values_and_sums_channels():
    first = np.array([[[[1.0, 0.0], [-2.0, 0.0]], [[3.0, 0.0], [-4.0, 0.0]]]])  # (1, 2, 2, 2)
    second = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # |first| summed over channels: 1, 2, 3, 4
    np.testing.assert_allclose(rank_correlation(first, second), [1.0])


def test_rank_correlation_by_hand():
    # ranks of x: 1 2 3 4; ranks of y: 2 1 4 3 -> d^2 = 4 -> rho = 1 - 6*4 / (4*15) = 0.6
    x = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    y = np.array([[[2.0, 1.0], [4.0, 3.0]]])
    np.testing.assert_allclose(rank_correlation(x, y), [0.6])


def test_a_constant_map_has_no_correlation():
    assert np.isnan(rank_correlation(np.ones((1, 2, 2)), np.arange(4.0).reshape(1, 2, 2))[0])


def test_seed_stability_averages_over_seed_pairs():
    base = np.arange(1, 10, dtype=float).reshape(1, 3, 3)
    same, reversed_ = base * 2, 10 - base
    mean, std = seed_stability({0: base, 1: same, 2: reversed_})
    # pairs: (0,1) = 1, (0,2) = -1, (1,2) = -1
    assert mean == pytest.approx(-1 / 3)
    assert std == pytest.approx(np.std([1, -1, -1]))
    assert all(np.isnan(seed_stability({0: base})))


def test_mean_std_text():
    assert mean_std_text(0.81234, 0.0041) == "0.812 ± 0.004"
    assert mean_std_text(0.81234, float("nan")) == "0.812"
    assert mean_std_text(float("nan"), float("nan")) == "–"


def test_aopc_by_hand():
    from src.metrics import aopc

    assert aopc([1.0, 0.5, 0.0]) == pytest.approx(0.5)  # (0 + 0.5 + 1) / 3
    assert aopc([0.9, 0.9, 0.9, 0.9]) == 0.0  # perturbing changed nothing
    assert aopc([0.8, 0.9]) == pytest.approx(-0.05)  # the score went up


def test_gini_by_hand():
    from src.evaluate import gini  # Quantus's Sparseness

    maps = np.array(
        [
            [[0.0, 0.0], [0.0, 1.0]],  # all on one pixel of four: 1 - 1/4
            [[1.0, 1.0], [1.0, 1.0]],  # spread evenly: 0
            [[0.0, -2.0], [0.0, 0.0]],  # the sign does not matter
            [[0.0, 0.0], [0.0, 0.0]],  # nothing: 0 by convention
            [[1.0, 3.0], [0.0, 0.0]],  # sorted 0 0 1 3 / 4: 1 - 2(1/4 * 3/8 + 3/4 * 1/8) = 0.625
        ]
    )
    np.testing.assert_allclose(gini(maps), [0.75, 0.0, 0.75, 0.0, 0.625], atol=1e-6)
    np.testing.assert_allclose(gini(maps[..., None]), gini(maps))  # a channel axis is summed
    np.testing.assert_array_equal(gini(np.zeros((3, 2, 2))), [0, 0, 0])  # Quantus would refuse


def test_conservation_error_by_hand():
    from src.metrics import conservation_error

    maps = np.array([[[1.0, 1.0], [0.5, 0.5]], [[2.0, -1.0], [0.0, 0.0]]])  # totals 3 and 1
    np.testing.assert_allclose(conservation_error(maps, [3.0, 2.0]), [0.0, 0.5])
    np.testing.assert_allclose(conservation_error(maps, [-3.0, 1.0]), [2.0, 0.0])


# MPRT's similarity: Spearman of |maps|, where a map that goes blank counts as changed.


def test_identical_maps_are_fully_similar():
    maps = np.array([[[1.0, -2.0], [3.0, 0.5]], [[0.0, 1.0], [2.0, 3.0]]])
    np.testing.assert_allclose(randomisation_similarity(maps, maps), [1.0, 1.0])


def test_a_map_that_goes_blank_counts_as_completely_changed_not_dropped():
    original = np.array([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]])
    randomised = np.array([[[0.0, 0.0], [0.0, 0.0]], [[4.0, 3.0], [2.0, 1.0]]])
    # image 0 went blank -> 0; image 1 is exactly reversed -> -1; the mean is -0.5, where a
    # nan-mean that drops the blank image would say -1.
    similarity = randomisation_similarity(original, randomised)
    np.testing.assert_allclose(similarity, [0.0, -1.0])
    assert np.isnan(rank_correlation(original, randomised)[0])  # what used to be dropped


def test_two_constant_maps_are_the_same_after_max_normalisation_or_not():
    zero, flat, ramp = np.zeros((1, 2, 2)), np.full((1, 2, 2), 5.0), np.arange(4.0).reshape(1, 2, 2)
    assert randomisation_similarity(zero, zero)[0] == 1.0  # blank before and after: unchanged
    assert randomisation_similarity(flat, 2 * flat)[0] == 1.0  # both normalise to all ones
    assert randomisation_similarity(flat, zero)[0] == 0.0
    assert randomisation_similarity(zero, ramp)[0] == 0.0  # a blank original gained structure


def test_blank_marks_constant_maps():
    maps = np.stack([np.zeros((2, 2)), np.full((2, 2), 3.0), np.eye(2)])
    np.testing.assert_array_equal(blank(maps), [True, True, False])


# eMPRT: the relative rise of the discrete entropy (100 bins between each map's min and max).


def test_discrete_entropy_by_hand():
    # Values 0, 0, 1, 1 in two bins: p = (1/2, 1/2) -> ln 2. Values 0, 0, 0, 1: (3/4, 1/4).
    maps = np.array([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]]])
    expected = [np.log(2), -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)), 0.0]
    np.testing.assert_allclose(discrete_entropy(maps, n_bins=2), expected)


def test_discrete_entropy_agrees_with_quantus():
    from src.evaluate import _quantus

    maps = np.random.default_rng(0).normal(size=(3, 8, 8))
    quantus = _quantus()
    expected = [
        quantus.functions.complexity_func.discrete_entropy(a=m, x=m, n_bins=100) for m in maps
    ]
    np.testing.assert_allclose(discrete_entropy(maps), expected)


def test_emprt_by_hand():
    two_values = np.array([[[0.0, 0.0], [1.0, 1.0]]])  # H = ln 2 (2 bins)
    four_values = np.array([[[0.0, 1.0], [2.0, 3.0]]])  # H = ln 4 (4 bins of 4 -> one each)
    # (ln 4 - ln 2) / ln 2 = 1: the entropy doubled.
    np.testing.assert_allclose(emprt(two_values, four_values, n_bins=4), [1.0])
    # Identical maps: no rise; a map that goes blank: entropy 0, a fall of -1.
    np.testing.assert_allclose(emprt(four_values, four_values, n_bins=4), [0.0])
    np.testing.assert_allclose(emprt(four_values, np.zeros((1, 2, 2)), n_bins=4), [-1.0])
    # A constant original has no entropy to rise from: undefined, reported as NaN.
    assert np.isnan(emprt(np.zeros((1, 2, 2)), four_values, n_bins=4)[0])


# The random-logit test's other class, the alpha-beta blow-up, per-image AOPC.


def test_off_classes_are_never_the_explained_class_and_cover_the_others():
    classes = np.zeros(3000, dtype=int) + 7
    others = off_classes(classes, 10, np.random.default_rng(0))
    assert not np.any(others == 7)
    assert set(others) == set(range(10)) - {7}
    # Seeded: the same generator seed draws the same classes.
    np.testing.assert_array_equal(others, off_classes(classes, 10, np.random.default_rng(0)))


def test_blowup_share_by_hand():
    heatmaps = np.array(
        [[[1.0, 1.0]], [[3.0, 2.0]], [[-5.0, 0.0]], [[0.5, 0.0]]]
    )  # sums 2, 5, -5, 0.5
    logits = np.array([2.0, 2.0, 2.0, 2.0])
    # ratios 1, 2.5, -2.5, 0.25 -> two of four above 2 in size
    np.testing.assert_allclose(relevance_ratio(heatmaps, logits), [1.0, 2.5, -2.5, 0.25])
    assert blowup_share(heatmaps, logits) == 0.5


def test_aopc_per_image_by_hand_and_its_mean_is_the_curves_aopc():
    # steps 0..2 for three images: right throughout; wrong from step 1; wrong from step 2.
    correct = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 0]], dtype=bool)
    per_image = aopc_per_image(correct)
    np.testing.assert_allclose(per_image, [0.0, 2 / 3, 1 / 3])
    assert per_image.mean() == pytest.approx(aopc(correct.mean(axis=1)))
