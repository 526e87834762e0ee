"""The earth mover's score (src/scores/localisation.py, XAI-TRIS's) on hand-made 3x3 maps with
distances worked out by hand, and against SciPy's linear program on random maps and masks."""

from __future__ import annotations

import numpy as np
import pytest

from src.scores.localisation import emd_scores, localisation

FARTHEST = np.hypot(2, 2)  # corner to corner of a 3x3 image


def one_hot(*pixels: tuple[int, int], weights=None) -> np.ndarray:
    image = np.zeros((3, 3))
    for pixel, weight in zip(pixels, weights or [1.0] * len(pixels), strict=True):
        image[pixel] = weight
    return image.ravel()


def test_emd_scores_by_hand():
    corner = one_hot((0, 0)).astype(bool)
    cases = [
        (one_hot((0, 0)), corner, 1.0),  # all relevance on the mask: nothing moves
        (one_hot((2, 2)), corner, 0.0),  # all of it as far as two pixels can be
        # Half at distance 2 (pixel (0, 2)): EMD = 0.5 x 2 = 1.
        (one_hot((0, 0), (0, 2), weights=[0.5, 0.5]), corner, 1 - 1 / FARTHEST),
        # Relevance 3 : 1 on (0, 0) and (1, 1): a quarter moves √2: EMD = √2 / 4.
        (one_hot((0, 0), (1, 1), weights=[3.0, 1.0]), corner, 1 - np.sqrt(2) / 4 / FARTHEST),
        # A two-pixel mask takes half each: from (0, 0) half moves 1 to (0, 1).
        (one_hot((0, 0)), one_hot((0, 0), (0, 1)).astype(bool), 1 - 0.5 / FARTHEST),
        (np.zeros(9), corner, 0.0),  # a blank map localises nothing
    ]
    maps = np.stack([case[0] for case in cases])
    truth = np.stack([case[1] for case in cases])
    np.testing.assert_allclose(emd_scores(maps, truth, (3, 3)), [c[2] for c in cases], atol=1e-12)


def linprog_emd(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """The transport problem as SciPy's linear program: min <cost, x> with x's rows summing
    to a, its columns to b, x >= 0."""
    from scipy.optimize import linprog

    n, m = cost.shape
    rows = np.kron(np.eye(n), np.ones(m))
    columns = np.kron(np.ones(n), np.eye(m))
    solved = linprog(
        cost.ravel(), A_eq=np.vstack([rows, columns]), b_eq=np.concatenate([a, b]), method="highs"
    )
    assert solved.status == 0
    return solved.fun


def test_emd_agrees_with_scipys_linear_program():
    rng = np.random.default_rng(0)
    shape = (4, 5)
    pixels = np.stack(np.indices(shape), axis=-1).reshape(-1, 2).astype(float)
    cost = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1)
    maps = rng.random((6, 20)) ** 3  # skewed relevance
    truth = rng.random((6, 20)) < 0.3
    truth[:, 0] = True  # no empty mask
    ours = emd_scores(maps, truth, shape)
    for values, inside, score in zip(maps, truth, ours, strict=True):
        a = values / values.sum()
        b = inside / inside.sum()
        expected = 1 - linprog_emd(a, b, cost) / np.hypot(3, 4)
        assert score == pytest.approx(expected, abs=1e-7)  # HiGHS stops at ~1e-9


def test_the_other_localisation_scores_do_not_compute_it():
    heatmaps = np.zeros((1, 3, 3, 1))
    heatmaps[0, 2, 2, 0] = -5.0
    masks = np.zeros((1, 3, 3), dtype=bool)
    masks[0, 0, 0] = True
    scores = localisation(heatmaps, masks)
    assert "emd_score" not in scores  # its own score (evaluate.scores.emd): it costs a program
    assert scores["relevance_rank_accuracy"] == pytest.approx([0.0])
    # |relevance|: the sign does not count; all of it at the far corner from the mask.
    assert emd_scores(np.abs(heatmaps).reshape(1, -1), masks.reshape(1, -1), (3, 3)) == (
        pytest.approx([0.0])
    )
