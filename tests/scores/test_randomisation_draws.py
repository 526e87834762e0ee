"""The randomisation scores as the mean over independent re-initialisations (draws), their
spread logged: a hand-made case whose maps per draw are chosen, and the draws' weights."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from src.common.tf_runtime import reset, tensorflow
from src.scores import randomisation
from src.scores.registry import Context, Evaluation

TRAINED = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]]).reshape(2, 2, 2, 1)
# After the one layer is re-initialised: draw 0 keeps the ranking (Spearman 1), draw 1
# reverses it (-1; the same values, so the same entropy), draw 2 blanks every map (0).
RANDOMISED = [TRAINED, 5.0 - TRAINED, np.full_like(TRAINED, 0.5)]


def one_layer_model():
    reset(0)
    keras = tensorflow().keras
    return keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(2, name="out")])


def scored(explain, draws: int) -> Evaluation:
    """The randomisation score of the trained maps, ``explain`` giving the randomised ones."""
    settings = OmegaConf.create({"draws": draws, "n_examples": 1, "emprt_bins": 100})
    context = Context(
        None,
        one_layer_model(),
        TRAINED,
        None,
        np.zeros(2, int),
        None,
        TRAINED,
        explain,
        "gradient",
        0,
    )
    result = Evaluation()
    randomisation.Randomisation().compute(context, settings, result)
    return result


def test_the_scores_are_the_mean_over_draws_and_their_spread_is_logged(monkeypatch):
    drawn = []

    def cascade(model, seed, draw=0):
        drawn.append(draw)
        yield "out"

    monkeypatch.setattr(randomisation, "cascade", cascade)

    def explain(images, classes, what):
        return RANDOMISED[drawn[-1]]

    result = scored(explain, draws=3)
    assert drawn == [0, 1, 2]
    # Per image (1 - 1 + 0) / 3; the draws' means 1, -1, 0: sample sd 1.
    np.testing.assert_allclose(result.per_image["mprt"], [0.0, 0.0], atol=1e-12)
    assert result.scores["mprt_draw_sd"] == pytest.approx(1.0)
    assert result.scores["mprt_blank_fraction_full"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(result.curves["mprt_blank_fraction"], [1 / 3])
    # eMPRT per draw: 0, 0 (a permutation keeps the histogram), -1 (entropy to 0).
    np.testing.assert_allclose(result.per_image["emprt"], [-1 / 3, -1 / 3])
    assert result.scores["emprt_draw_sd"] == pytest.approx(np.sqrt(1 / 3))
    # The figure shows the first draw.
    np.testing.assert_array_equal(result.randomisation_examples[1], TRAINED[:1])


def test_one_draw_has_no_spread(monkeypatch):
    monkeypatch.setattr(randomisation, "cascade", lambda model, seed, draw=0: iter(["out"]))
    result = scored(lambda images, classes, what: 5.0 - TRAINED, draws=1)
    assert result.scores["mprt"] == -1.0
    assert np.isnan(result.scores["mprt_draw_sd"])


def test_each_draw_reinitialises_with_its_own_seeds_and_the_same_draw_again_with_the_same():
    model = one_layer_model()
    trained = model.get_weights()[0].copy()

    def weights_of(draw):
        for _ in randomisation.cascade(model, seed=0, draw=draw):
            return model.get_weights()[0].copy()

    first, second, again = weights_of(0), weights_of(1), weights_of(0)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(model.get_weights()[0], trained)  # restored each time
