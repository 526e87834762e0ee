"""XAI-TRIS's scenarios (src/data/xai_tris.py) on small hand-checked cases: the tetrominoes'
pixels and masks, the XOR's signs, the mix's normalisation, the published alpha, the seed."""

from __future__ import annotations

import numpy as np
import pytest

from src.common.errors import UserError
from src.data import load_xai_tris, xai_tris

# T at (1, 1): cells (0,0), (1,0), (1,1), (2,0) of [[1,0],[1,1],[1,0]], shifted by (1, 1).
T_PIXELS = {(1, 1), (2, 1), (2, 2), (3, 1)}
# L at (4, 5): cells (0,0), (1,0), (2,0), (2,1) of [[1,0],[1,0],[1,1]], shifted by (4, 5).
L_PIXELS = {(4, 5), (5, 5), (6, 5), (6, 6)}


def pixels(image: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(image), strict=True)}


def test_linear_signals_are_the_classes_tetromino_and_the_mask_both_places():
    labels = np.array([0, 1])
    signal, masks = xai_tris.signals("linear", labels, 8, np.random.default_rng(0))
    assert pixels(signal[0]) == T_PIXELS and pixels(signal[1]) == L_PIXELS
    assert pixels(masks[0]) == pixels(masks[1]) == T_PIXELS | L_PIXELS


def test_xor_has_both_tetrominoes_equal_signs_for_class_0_opposite_for_class_1():
    labels = np.array([0, 1] * 20)
    signal, masks = xai_tris.signals("xor", labels, 8, np.random.default_rng(1))
    t_sign = signal[:, 1, 1]
    l_sign = signal[:, 4, 5]
    assert set(np.abs(t_sign)) == set(np.abs(l_sign)) == {1.0}
    np.testing.assert_array_equal(t_sign == l_sign, labels == 0)
    assert {1.0, -1.0} <= set(t_sign[labels == 0])  # both (+,+) and (-,-) occur
    assert all(pixels(mask) == T_PIXELS | L_PIXELS for mask in masks)


def test_rigid_tetrominoes_are_turned_and_moved_and_their_mask_is_their_own():
    labels = np.array([0, 1] * 30)
    signal, masks = xai_tris.signals("rigid", labels, 8, np.random.default_rng(2))
    np.testing.assert_array_equal(masks, signal != 0)
    assert all(len(pixels(image)) == 4 for image in signal)
    assert len({frozenset(pixels(image)) for image in signal}) > 20  # many places and turns


def test_the_mix_by_hand():
    signal = np.zeros((2, 1, 2))
    signal[0, 0, 0] = 1.0  # Frobenius norm 1
    noise = np.array([[[3.0, 0.0]], [[0.0, 4.0]]])  # norm 5
    # alpha .5: .5 x signal + .5 x noise / 5 -> [[.8, 0]], [[0, .4]]; largest |x| .8.
    np.testing.assert_allclose(
        xai_tris.mixed("linear", signal, noise, 0.5), [[[1.0, 0.0]], [[0.0, 0.5]]]
    )
    # Multiplicative: 1 - .5 x signal = [[.5, 1]], [[1, 1]] (norm √3.25) times noise / 5:
    # [[.3, 0]], [[0, .8]] / √3.25; divided by the largest, .8 / √3.25.
    np.testing.assert_allclose(
        xai_tris.mixed("multiplicative", signal, noise, 0.5), [[[0.375, 0.0]], [[0.0, 1.0]]]
    )


def test_generated_sets_are_in_range_balanced_seeded_and_at_the_published_alpha():
    made = xai_tris.generate("xor", "correlated", 200, seed=3)
    assert made.alpha == 0.15  # the benchmark's 8x8 XOR on a correlated background
    assert made.images.shape == (200, 8, 8) and made.masks.shape == (200, 8, 8)
    assert made.images.min() >= 0 and made.images.max() <= 1
    assert np.abs(made.images * 2 - 1).max() == pytest.approx(1.0)  # [-1, 1] mapped to [0, 1]
    assert np.bincount(made.labels).tolist() == [100, 100]
    again = xai_tris.generate("xor", "correlated", 200, seed=3)
    np.testing.assert_array_equal(again.images, made.images)
    assert not np.array_equal(
        xai_tris.generate("xor", "correlated", 200, seed=4).images, made.images
    )
    assert xai_tris.generate("linear", "white", 20, seed=0, alpha=0.5).alpha == 0.5


def test_correlated_noise_is_smoother_than_white():
    rng = np.random.default_rng(0)
    for kind, low, high in (("white", -0.1, 0.1), ("correlated", 0.5, 1.0)):
        noise = xai_tris.background(kind, 200, 8, rng)
        neighbours = np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]
        assert low < neighbours < high, kind


def test_the_loader_splits_80_20_and_keeps_the_test_masks():
    loaded = load_xai_tris("linear", "white", images=100, seed=0)
    assert len(loaded.train_images) == 80 and len(loaded.test_images) == 20
    assert loaded.scaled and loaded.test_masks.shape == (20, 8, 8)
    assert loaded.class_names == ("T", "L")
    with pytest.raises(UserError, match=r"dataset.scenario=lin: choose one of: linear, "):
        load_xai_tris("lin", "white")
