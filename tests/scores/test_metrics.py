from __future__ import annotations

import numpy as np
import pytest

from src.scores.compare import mean_std_text, seed_stability
from src.scores.metrics import (
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
    # Two seeds, one pair: a mean, no spread (the table shows no "± 0.000").
    mean, std = seed_stability({0: base, 1: same})
    assert mean == pytest.approx(1.0) and np.isnan(std)


def test_mean_std_text():
    assert mean_std_text(0.81234, 0.0041) == "0.812 ± 0.004"
    assert mean_std_text(0.81234, float("nan")) == "0.812"
    assert mean_std_text(float("nan"), float("nan")) == "–"


def test_aopc_by_hand():
    from src.scores.metrics import aopc

    assert aopc([1.0, 0.5, 0.0]) == pytest.approx(0.5)  # (0 + 0.5 + 1) / 3
    assert aopc([0.9, 0.9, 0.9, 0.9]) == 0.0  # perturbing changed nothing
    assert aopc([0.8, 0.9]) == pytest.approx(-0.05)  # the score went up


def test_gini_by_hand():
    from src.scores.properties import gini  # Quantus's Sparseness

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


def test_gini_is_quantus_sparseness_to_the_bit():
    from src.scores.libraries import _quantus
    from src.scores.properties import gini

    rng = np.random.default_rng(11)
    maps = rng.normal(size=(70, 6, 5, 1)).astype(np.float32)  # more than Quantus's batch of 64
    maps[3] = 0.0  # a blank map among others
    theirs = _quantus().Sparseness(abs=True, normalise=False, disable_warnings=True)(
        model=None,
        x_batch=np.moveaxis(maps, -1, 1),
        y_batch=np.zeros(len(maps), dtype=int),
        a_batch=np.moveaxis(maps, -1, 1),
        channel_first=True,
    )
    np.testing.assert_array_equal(gini(maps), np.asarray(theirs, dtype=np.float64))
    # Quantus refuses a batch of negative maps; their |relevance| has a Gini index all the same.
    np.testing.assert_array_equal(gini(-np.abs(maps)), gini(np.abs(maps)))


def test_conservation_error_by_hand():
    from src.scores.metrics import conservation_error

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
    from src.scores.libraries import _quantus

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


# --- More evidence: faithfulness from both ends, ROAD, localisation (hand-made arrays) ---


def linear_logits(weights):
    """A one-class 'model' whose logit is sum(weights * x), for any image shape."""
    weights = np.asarray(weights, dtype=np.float64)

    def predict(images):
        flat = images.reshape(len(images), -1)
        return (flat @ weights.ravel())[:, None]

    return predict


def test_faithfulness_correlation_by_hand():
    from src.scores.metrics import faithfulness_correlation

    # One 2x2 image with values 1, 2, 3, 4 (its minimum, 1, is the baseline) and logit = sum:
    # setting value i to 1 drops the logit by x_i - 1 = 0, 1, 2, 3.
    image = np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]])
    subsets = [np.array([[i]]) for i in range(4)]  # four runs, one value each
    predict = linear_logits([1, 1, 1, 1])
    classes = np.array([0])

    def score(relevance):
        heatmap = np.array(relevance, dtype=np.float64).reshape(1, 2, 2, 1)
        return faithfulness_correlation(predict, image, heatmap, classes, subsets)[0]

    assert score([0, 1, 2, 3]) == pytest.approx(1.0)  # exactly the drops
    assert score([0, 2, 4, 6]) == pytest.approx(1.0)  # any positive scale
    assert score([3, 2, 1, 0]) == pytest.approx(-1.0)  # backwards
    # Noise: deviations (.5, -.5, -.5, .5) against (-1.5, -.5, .5, 1.5): covariance 0.
    assert score([1, 0, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    # (0, 0, 0, 1) against the drops: cov = 1.5 * .75 = 1.125... r = 0.75 / sqrt(.75 * 5) * ...
    # by hand: x - mean = (-.25, -.25, -.25, .75), y - mean = (-1.5, -.5, .5, 1.5);
    # sum xy = .375 + .125 - .125 + 1.125 = 1.5; sum xx = .75; sum yy = 5: r = 1.5 / sqrt(3.75)
    assert score([0, 0, 0, 1]) == pytest.approx(1.5 / np.sqrt(3.75))
    assert score([0, 0, 0, 0]) == 0.0  # a blank map: no evidence, not NaN


def test_faithfulness_correlation_matches_quantus_given_the_same_subsets(monkeypatch):
    """Quantus 0.6's FaithfulnessCorrelation draws its subsets with np.random.choice; handed
    the same subsets, it gives the same correlations."""
    from src.scores.libraries import _quantus
    from src.scores.metrics import faithfulness_correlation, random_subsets

    quantus = _quantus()
    rng = np.random.default_rng(3)
    images = rng.random((6, 5, 5, 1))
    heatmaps = rng.normal(size=images.shape)
    weights = rng.normal(size=25)
    classes = np.zeros(6, dtype=int)
    subsets = list(random_subsets(np.random.default_rng(0), 7, 6, 25, 4))
    ours = faithfulness_correlation(linear_logits(weights), images, heatmaps, classes, subsets)

    draws = iter(row for subset in subsets for row in subset)
    monkeypatch.setattr(np.random, "choice", lambda *args, **kwargs: next(draws))

    class Model:  # Quantus's model interface: channel-first inputs, logits out
        def shape_input(self, x, shape, channel_first, batched):
            return x

        def predict(self, x, **kwargs):
            return linear_logits(weights)(np.moveaxis(x, 1, -1))

    metric = quantus.FaithfulnessCorrelation(nr_runs=7, subset_size=4, disable_warnings=True)
    theirs = metric.evaluate_batch(
        model=Model(),
        x_batch=np.moveaxis(images, -1, 1),
        y_batch=classes,
        a_batch=np.moveaxis(heatmaps, -1, 1),
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_random_subsets_are_distinct_values_of_each_image():
    from src.scores.metrics import random_subsets

    first = list(random_subsets(np.random.default_rng(1), 3, 5, 10, 4))
    again = list(random_subsets(np.random.default_rng(1), 3, 5, 10, 4))
    assert len(first) == 3
    for subset, same in zip(first, again, strict=True):
        np.testing.assert_array_equal(subset, same)  # seeded: the same draws
        assert subset.shape == (5, 4)
        assert all(len(set(row)) == 4 and row.max() < 10 for row in subset)
    # Every value is drawn about equally often over many runs.
    counts = np.bincount(
        np.concatenate([s[0] for s in random_subsets(np.random.default_rng(2), 2000, 1, 10, 4)]),
        minlength=10,
    )
    assert counts.min() > 0.9 * 800 and counts.max() < 1.1 * 800


def test_road_removes_the_most_relevant_pixels_first():
    from src.scores.metrics import road_orders

    heatmap = np.array([[[4.0, 1.0], [3.0, 2.0]]])  # pixel ranks: 0, 2, 3, 1
    keys = np.array([[0.9, 0.1, 0.5, 0.3]])  # no ties: the keys change nothing
    orders = list(road_orders(heatmap, [25, 50, 100], keys))
    assert [order.tolist() for order in orders] == [[[0]], [[0, 2]], [[0, 2, 3, 1]]]


def test_tied_pixels_are_ranked_by_their_random_keys_not_by_position():
    from src.scores.metrics import ranked, road_orders

    # Pixel 2 first; 0, 1, 3 tie at 0 and come in the order of their keys: 1 (.1), 3 (.3), 0.
    values = np.array([[0.0, 0.0, 1.0, 0.0], [2.0, 2.0, 2.0, 1.0]])
    keys = np.array([[0.5, 0.1, 0.9, 0.3], [0.2, 0.8, 0.1, 0.5]])
    assert ranked(values, keys).tolist() == [[2, 1, 3, 0], [2, 0, 1, 3]]
    # ROAD's first half of a map that is zero but for one pixel: that pixel, then a tied one
    # by its key (a stable sort took pixel 0, whatever the keys).
    heatmap = np.array([[[0.0, 0.0], [5.0, 0.0]]])
    (half,) = road_orders(heatmap, [50], np.array([[0.7, 0.6, 0.5, 0.2]]))
    assert half.tolist() == [[2, 3]]


def test_every_order_of_a_tie_is_equally_likely():
    from src.scores.metrics import ranked

    keys = np.random.default_rng(0).random((6000, 3))
    orders = ranked(np.zeros((6000, 3)), keys)
    _, counts = np.unique(orders, axis=0, return_counts=True)
    assert len(counts) == 6  # 3! orders
    assert counts.min() > 900 and counts.max() < 1100  # 1000 each, ±3 sd


def test_noisy_linear_imputation_by_hand():
    from src.scores.metrics import noisy_linear_imputation

    no_noise = np.random.default_rng(0)
    flat = np.full((1, 3, 3, 1), 0.5)
    centre = np.array([[4]])
    # A constant image stays constant.
    np.testing.assert_allclose(noisy_linear_imputation(flat, centre, 0.0, no_noise), flat)
    # A ramp x[r, c] = c: the weighted mean of the centre's neighbours is 1 (symmetric weights).
    ramp = np.tile(np.arange(3.0), (3, 1))[None, :, :, None]
    filled = noisy_linear_imputation(ramp, centre, 0.0, no_noise)
    assert filled[0, 1, 1, 0] == pytest.approx(1.0)
    # Two unknowns side by side on a 4-wide ramp solve jointly, and stay on the ramp.
    ramp4 = np.tile(np.arange(4.0), (3, 1))[None, :, :, None]
    both = noisy_linear_imputation(ramp4, np.array([[5, 6]]), 0.0, no_noise)
    np.testing.assert_allclose(both, ramp4, atol=1e-12)
    # A corner pixel has 3 neighbours: (1/6 * 2 + 1/12 * 4) / (1/6 + 1/6 + 1/12) = 0.8 + 0.2.
    corner = np.array([[[[9.0], [2.0]], [[2.0], [4.0]]]])
    imputed = noisy_linear_imputation(corner, np.array([[0]]), 0.0, no_noise)
    assert imputed[0, 0, 0, 0] == pytest.approx((2 / 6 + 2 / 6 + 4 / 12) / (5 / 12))
    # The noise is N(0, noise^2) from the generator given.
    noisy = noisy_linear_imputation(flat, centre, 0.1, np.random.default_rng(5))
    expected = 0.5 + 0.1 * np.random.default_rng(5).standard_normal((1, 1))[0, 0]
    assert noisy[0, 1, 1, 0] == pytest.approx(expected)


def test_noisy_linear_imputation_matches_quantus():
    from src.scores.libraries import _quantus
    from src.scores.metrics import noisy_linear_imputation, road_orders

    quantus = _quantus()
    rng = np.random.default_rng(2)
    images = rng.random((3, 9, 7, 1))
    for percentage in (20, 60, 90):
        removed = next(road_orders(rng.random(images.shape), [percentage], rng.random((3, 63))))
        ours = noisy_linear_imputation(images, removed, 0.0, rng)
        for image, pixels, mine in zip(images, removed, ours, strict=True):
            theirs = quantus.functions.perturb_func.noisy_linear_imputation(
                np.moveaxis(image, -1, 0), pixels, noise=0.0
            )
            np.testing.assert_allclose(mine, np.moveaxis(theirs, 0, -1), atol=1e-9)


def test_rank_correlation_is_scipys_spearman():
    from scipy.stats import spearmanr

    from src.scores.metrics import rank_correlation

    rng = np.random.default_rng(4)
    first = np.round(rng.normal(size=(20, 6, 6)), 1)  # rounded: ties, averaged as scipy does
    second = first + rng.normal(size=first.shape)
    first[3] = 0.0  # constant: undefined
    ours = rank_correlation(first, second)
    for index, (x, y) in enumerate(zip(first, second, strict=True)):
        if index == 3:
            assert np.isnan(ours[index])
        else:
            expected = spearmanr(np.abs(x).ravel(), np.abs(y).ravel()).statistic
            assert ours[index] == pytest.approx(expected, abs=1e-12)


def test_localisation_scores_by_hand():
    from src.scores.localisation import localisation

    mask = np.zeros((1, 3, 3), dtype=bool)
    mask[0, 0, :2] = True  # two pixels
    exact = localisation(mask.astype(float), mask)
    for name in ("relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game"):
        assert exact[name][0] == pytest.approx(1.0), name
    noise = np.array([[[0.1, -0.9, 0.3], [0.8, 0.2, 0.5], [0.4, 0.6, 0.7]]])
    scores = localisation(noise, mask)
    # |relevance| inside (0.1 + 0.9) of all (4.5); top 2 are 0.9 (in) and 0.8 (out);
    # the largest |relevance|, 0.9, is inside.
    assert scores["relevance_mass_accuracy"][0] == pytest.approx(1.0 / 4.5)
    assert scores["relevance_rank_accuracy"][0] == pytest.approx(0.5)
    assert scores["pointing_game"][0] == 1.0
    elsewhere = localisation(np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 1.0]]]), mask)
    # Top 2: the 1 outside, then one of the eight tied zeros, two of which are inside: 2/8.
    assert elsewhere["relevance_rank_accuracy"][0] == pytest.approx(0.25 / 2)
    assert elsewhere["relevance_mass_accuracy"][0] == 0.0
    assert elsewhere["pointing_game"][0] == 0.0
    # Two equal maxima, one inside: half a hit (Quantus: a whole one, whichever came first).
    split = localisation(np.array([[[0, 1.0, 0], [0, 0, 0], [0, 0, 1.0]]]), mask)
    assert split["pointing_game"][0] == pytest.approx(0.5)
    # A blank map points at nothing (Quantus's pointing game calls every pixel its maximum).
    blank = localisation(np.zeros((1, 3, 3)), mask)
    assert [blank[name][0] for name in sorted(blank)] == [0.0, 0.0, 0.0]


def test_localisation_agrees_with_quantus_on_maps_without_ties():
    from src.scores.libraries import _quantus
    from src.scores.localisation import localisation

    quantus = _quantus()
    rng = np.random.default_rng(6)
    maps = rng.normal(size=(8, 6, 6))  # continuous: no ties
    masks = np.zeros((8, 6, 6), dtype=bool)
    for index in range(8):
        row, column = rng.integers(0, 4, size=2)
        masks[index, row : row + 2, column : column + 2] = True
    ours = localisation(maps, masks)
    arguments = dict(
        model=None,
        x_batch=maps[:, None],
        y_batch=np.zeros(8, int),
        a_batch=maps[:, None],
        s_batch=masks[:, None],
        channel_first=True,
    )
    for name, metric in (
        ("relevance_mass_accuracy", quantus.RelevanceMassAccuracy),
        ("relevance_rank_accuracy", quantus.RelevanceRankAccuracy),
        ("pointing_game", quantus.PointingGame),
    ):
        theirs = metric(abs=True, disable_warnings=True)(**arguments)
        np.testing.assert_allclose(ours[name], theirs, atol=1e-12, err_msg=name)


def test_discrete_entropy_bins_as_numpys_histogram():
    from scipy.stats import entropy

    from src.scores.metrics import discrete_entropy

    rng = np.random.default_rng(7)
    maps = rng.normal(size=(30, 6, 6))
    maps[1] = 0.0  # constant: numpy widens the range, one full bin: entropy 0
    maps[2] = np.round(maps[2], 1)  # values on the bin edges
    maps[3, :3] = maps[3].max()  # many at the top edge (the last bin is closed)
    expected = [entropy(np.histogram(m.ravel(), bins=10)[0]) for m in maps]
    np.testing.assert_allclose(discrete_entropy(maps, 10), expected, rtol=0, atol=1e-12)
    # By hand: values 0, 0, 1, 1 in 2 bins: two equal halves, ln 2.
    assert discrete_entropy(np.array([[[0.0, 0.0], [1.0, 1.0]]]), 2)[0] == pytest.approx(np.log(2))


def test_the_docs_score_table_is_the_registrys():
    from src.common.paths import PROJECT_ROOT
    from src.scores import SCORES
    from src.scores.registry import markdown_table

    readme = (PROJECT_ROOT / "docs" / "scores.md").read_text()
    start = readme.index("<!-- scores table: generated by python -m src.scores -->\n")
    end = readme.index("\n<!-- end of the scores table -->")
    shown = readme[start:end].split("\n", 1)[1]
    assert shown == markdown_table(SCORES), "regenerate it: python -m src.scores"


def test_every_score_is_registered_once_with_what_the_verdict_needs():
    from src.scores import SCORES
    from src.scores.registry import NEEDS, Better

    assert list(SCORES)[:3] == ["perturbation", "faithfulness_correlation", "road"]
    names = [m.name for score in SCORES.values() for m in score.metrics]
    assert len(names) == len(set(names))
    for score in SCORES.values():
        assert score.needs <= set(NEEDS), score.name
        for m in score.metrics:
            assert isinstance(m.better, Better), m.name
            if m.criterion:  # judged in the verdict: needs a direction and a column heading
                assert m.better is not Better.NEITHER and m.short, m.name


class TopLeftModel:
    """Class 1 if the top-left pixel is bright, else class 0 (softmax-like outputs)."""

    def predict(self, images, **_):
        bright = images[:, 0, 0, 0] > 0.5
        return np.stack([~bright, bright], axis=1).astype(np.float32)


def test_road_score_by_hand():
    from omegaconf import OmegaConf

    from src.scores.registry import Context, Evaluation
    from src.scores.road import Road

    image = np.zeros((1, 3, 3, 1), dtype=np.float32)
    image[0, 0, 0, 0] = 1.0  # the only thing the model looks at
    settings = OmegaConf.create({"percentages": [20, 50], "noise": 0.0})

    def road(heatmap):
        context = Context(
            cfg=OmegaConf.create({"batch_size": 8}),
            model=TopLeftModel(),
            images=image,
            labels=np.array([1]),
            classes=np.array([1]),
            logits=None,
            heatmaps=np.asarray(heatmap, dtype=np.float32).reshape(1, 3, 3, 1),
            explain=None,
            method="",
            seed=0,
        )
        result = Evaluation()
        Road().compute(context, settings, result)
        return result.per_image["road"][0], result.curves["road_accuracy"]

    # The map that is exactly the model's evidence: 20% (1 pixel) removes it, imputed from its
    # dark neighbours; wrong from then on: 1 - mean(1, 0, 0) = 2/3.
    score, curve = road(image)
    assert score == pytest.approx(2 / 3) and curve.tolist() == [1.0, 0.0, 0.0]
    # A map that ranks the evidence last: 50% (4 pixels) never reaches it: 0.
    score, curve = road(np.arange(9.0))
    assert score == 0.0 and curve.tolist() == [1.0, 1.0, 1.0]


def test_the_default_config_switches_each_score_as_the_registry_says():
    from omegaconf import OmegaConf

    from src.common.paths import CONFIG_DIR
    from src.scores import SCORES

    switches = OmegaConf.load(CONFIG_DIR / "evaluate" / "default.yaml").scores
    assert dict(switches) == {name: score.default for name, score in SCORES.items()}
    off = OmegaConf.load(CONFIG_DIR / "evaluate" / "off.yaml").scores
    assert set(off) == set(SCORES) and not any(off.values())


def test_noisy_linear_imputation_fills_every_channel_of_a_colour_pixel():
    """Quantus 0.6's ROAD indexes a colour image's values as if they were pixels; here a
    removed pixel is imputed in each channel from that channel's neighbours."""
    from src.scores.metrics import noisy_linear_imputation

    image = np.zeros((1, 3, 3, 3))
    image[..., 0], image[..., 1], image[..., 2] = 0.2, 0.5, 0.9
    image[0, 1, 1] = (1.0, 0.0, 0.0)  # the pixel to remove, different in every channel
    filled = noisy_linear_imputation(image, np.array([[4]]), 0.0, np.random.default_rng(0))
    np.testing.assert_allclose(filled[0, 1, 1], [0.2, 0.5, 0.9])
    np.testing.assert_array_equal(
        np.delete(filled.reshape(9, 3), 4, 0), np.delete(image.reshape(9, 3), 4, 0)
    )


def test_a_baseline_curve_is_drawn_in_the_panel_of_the_curve_it_is_the_baseline_of():
    from src.scores.registry import Curve, Panel, panels

    drawn = panels(
        (
            Curve("morf", "accuracy after k regions perturbed"),
            Curve("random", "the same, random order", baseline_of="morf", label="random order"),
            Curve("mprt", "similarity after k layers", 1),
        ),
        prefix="eval_",
    )
    assert drawn == (
        Panel("eval_morf", "accuracy after k regions perturbed", 0, "eval_random", "random order"),
        Panel("eval_mprt", "similarity after k layers", 1),
    )


class ZeroedRegions:
    """A model that says which 2 x 2 regions of a 4 x 4 image of 0.5 are zeroed: predict()
    records it, and answers class 0."""

    def __init__(self) -> None:
        self.zeroed: list[list[int]] = []

    def predict(self, images, batch_size=None, verbose=0):
        regions = images.reshape(len(images), 2, 2, 2, 2).transpose(0, 1, 3, 2, 4)
        self.zeroed.append(np.flatnonzero(regions.reshape(len(images), 4, 4).max(axis=2) == 0))
        return np.tile([1.0, 0.0], (len(images), 1))


def test_regions_of_equal_relevance_are_perturbed_in_the_order_of_their_random_keys():
    from omegaconf import OmegaConf

    from src.scores.faithfulness import _region_ranks, perturbation_correct
    from src.scores.registry import TIE_BREAK, Context, generator

    # By hand: regions 0, 1, 3 tie at 1 and come by their keys (.1 < .2 < .4), region 2 last.
    regions = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])
    keys = np.array([[[[0.4, 0.2], [0.9, 0.1]]]])
    assert _region_ranks(keys)(regions).tolist() == [[[[2, 1], [3, 0]]]]
    # Through iNNvestigate's Perturbation: a blank map (every region tied) loses first the
    # region with the smallest key of the run's stream (NumPy's sort took region 0).
    seed = 1
    first = int(np.argmin(generator(seed, TIE_BREAK).random((1, 1, 2, 2))))
    assert first != 0  # the seed chosen so that position would not do
    model = ZeroedRegions()
    images = np.full((1, 4, 4, 1), 0.5, np.float32)
    context = Context(
        OmegaConf.create({"batch_size": 8}),
        model,
        images,
        np.zeros(1, int),
        np.zeros(1, int),
        None,
        None,
        None,
        "gradient",
        seed,
    )
    settings = OmegaConf.create({"steps": 2, "region_shape": [2, 2], "function": "zeros"})
    perturbation_correct(context, settings, np.zeros_like(images))
    assert model.zeroed[1].tolist() == [first]
    assert first in model.zeroed[2].tolist() and len(model.zeroed[2]) == 2
