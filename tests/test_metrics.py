from __future__ import annotations

import numpy as np
import pytest

from src.compare import mean_std_text, seed_stability
from src.metrics import rank_correlation


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
