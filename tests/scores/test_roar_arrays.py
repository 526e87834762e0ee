"""Remove-and-retrain's arrays (src/scores/roar.py) on hand-made images and maps: the pixel order
with its ties, the pixels ROAR and KAR remove, the fill, the areas and gains; every expected
value worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from src.scores import roar

# One 2x2 image of two channels; its map summed over channels: [[3, 1], [4, 1]] -> flat
# [3, 1, 4, 1]: pixel 2 the most relevant, then 0, then the tie 1 / 3.
MAP = np.array([[[[1.0, 2.0], [0.5, 0.5]], [[4.0, 0.0], [1.0, 0.0]]]])


def test_the_order_is_by_summed_relevance_and_ties_follow_their_keys():
    first = roar.pixel_order(MAP, np.array([[0.0, 0.2, 0.0, 0.1]]))
    np.testing.assert_array_equal(first, [[2, 0, 3, 1]])  # the tie 1/3: key 0.1 before 0.2
    second = roar.pixel_order(MAP, np.array([[0.0, 0.1, 0.0, 0.2]]))
    np.testing.assert_array_equal(second, [[2, 0, 1, 3]])
    assert first.dtype == np.uint16  # 4 pixels: the smallest type that holds them
    assert roar.pixel_order(np.zeros((1, 300, 300, 1)), np.zeros((1, 90000))).dtype == np.uint32


def test_roar_removes_the_first_of_the_order_and_kar_the_last():
    order = np.array([[2, 0, 3, 1], [1, 3, 0, 2]])
    # 50% of 4 pixels: 2. ROAR: pixels 2, 0 of the first image, 1, 3 of the second.
    np.testing.assert_array_equal(
        roar.removed(order, 50, "roar"), [[True, False, True, False], [False, True, False, True]]
    )
    # KAR keeps the two most relevant, so removes the last two: 3, 1 and 0, 2.
    np.testing.assert_array_equal(
        roar.removed(order, 50, "kar"), [[False, True, False, True], [True, False, True, False]]
    )
    # int(4 * 30 / 100) = 1 pixel; int(4 * 10 / 100) = 0: nothing removed.
    assert roar.removed(order, 30, "roar").sum(axis=1).tolist() == [1, 1]
    assert not roar.removed(order, 10, "kar").any()
    with pytest.raises(ValueError, match="the modes: roar, kar"):
        roar.removed(order, 50, "both")


def test_removed_pixels_take_each_channels_training_mean_and_the_input_is_untouched():
    images = np.arange(16, dtype=np.float32).reshape(2, 2, 2, 2)  # (N, H, W, C)
    # Channel 0 holds 0, 2, ..., 14 (mean 7); channel 1 holds 1, 3, ..., 15 (mean 8).
    fill = roar.channel_means(images)
    np.testing.assert_allclose(fill, [7.0, 8.0])
    mask = np.array([[True, False, False, False], [False, False, False, True]])
    out = roar.degraded(images, mask, fill)
    expected = images.copy()
    expected[0, 0, 0] = [7, 8]  # image 0, flat pixel 0 = (row 0, column 0)
    expected[1, 1, 1] = [7, 8]  # image 1, flat pixel 3 = (row 1, column 1)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(images, np.arange(16).reshape(2, 2, 2, 2))


def test_the_digest_tells_degraded_sets_apart():
    a = np.zeros((2, 2), np.float32)
    b = a.copy()
    b[0, 0] = 1
    assert roar.digest(a) == roar.digest(a.copy())
    assert roar.digest(a) != roar.digest(b)
    assert roar.digest(a) != roar.digest(a.reshape(4))  # the shape counts too


def test_areas_and_gains_by_hand():
    fractions = [0, 50, 90]
    # Trapezoids over 0..0.5 and 0.5..0.9: (1 + .6) / 2 * .5 + (.6 + .2) / 2 * .4 = .4 + .16.
    assert roar.area(fractions, [1.0, 0.6, 0.2]) == pytest.approx(0.56)
    # The order of the points does not matter.
    assert roar.area([90, 0, 50], [0.2, 1.0, 0.6]) == pytest.approx(0.56)
    # A flat curve at 1 over 0..90%: 0.9.
    assert roar.area(fractions, [1, 1, 1]) == pytest.approx(0.9)
    random = [1.0, 0.8, 0.6]  # area .45 + .28 = .73
    # ROAR: the random ranking keeps .73 - .56 = .17 more: the analyzer's pixels mattered.
    assert roar.gain(fractions, [1.0, 0.6, 0.2], random, "roar") == pytest.approx(0.17)
    # KAR: the analyzer keeps .56, the random ranking .73: the gain is -.17.
    assert roar.gain(fractions, [1.0, 0.6, 0.2], random, "kar") == pytest.approx(-0.17)
