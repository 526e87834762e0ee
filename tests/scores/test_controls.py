"""Controls made from a run's own maps (src/scores/controls.py): each transform by hand, and the
scores that declare a control scoring it, its criteria kept per image under its own key."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from src.scores import controls
from src.scores.registry import Better, Context, Evaluation, Metric, Score


def test_a_blurred_map_keeps_its_sum_spreads_a_point_evenly_and_stays_in_its_image():
    maps = np.zeros((2, 9, 9, 1), np.float32)
    maps[0, 4, 4, 0] = 1.0  # a point in the middle of image 0; image 1 blank
    blurred = controls.blurred(maps, sigma=1.0)
    assert blurred[0].sum() == pytest.approx(1.0, abs=1e-6)
    assert blurred[0, 4, 4, 0] == blurred[0].max()
    # Symmetric about the point: the four neighbours alike, the diagonals alike and smaller.
    ring = [blurred[0, 3, 4, 0], blurred[0, 5, 4, 0], blurred[0, 4, 3, 0], blurred[0, 4, 5, 0]]
    assert np.ptp(ring) < 1e-7 and blurred[0, 3, 3, 0] < ring[0]
    # 1-D Gaussian weights at 0 and 1 (sigma 1): their ratio is exp(-1/2) per axis.
    assert ring[0] / blurred[0, 4, 4, 0] == pytest.approx(np.exp(-0.5), rel=1e-3)
    assert not blurred[1].any()  # nothing leaks into the next image


class Recorder(Score):
    """Scores the sum of each map and, if asked, the randomised model's maps' sum."""

    name = "recorder"
    needs = frozenset({"heatmaps", "explain"})
    metrics = (Metric("total", "the sum of the map", Better.HIGHER, criterion="c", short="T"),)
    controls = frozenset({"inverted", "blank_like"})

    def compute(self, context, settings, result):
        totals = context.heatmaps.reshape(len(context.heatmaps), -1).sum(axis=1)
        randomised = context.explain(context.images, context.classes, "randomised 1/1")
        totals = totals + randomised.reshape(len(randomised), -1).sum(axis=1)
        result.record("total", totals)


def test_each_control_is_scored_by_the_scores_that_declare_it_and_kept_per_image():
    maps = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)
    context = Context(
        None,
        None,
        maps,
        None,
        np.zeros(2, int),
        None,
        maps,
        lambda images, classes, what: np.ones_like(maps),
        "gradient",
        0,
    )
    context.logit_model = None
    cfg = OmegaConf.create(
        {"controls": {"names": ["inverted", "blurred", "blank_like"], "blur_sigma": 1.0}}
    )
    result = Evaluation()
    controls.score_controls(
        {"recorder": Recorder()}, {"recorder": True}, cfg, context, result, lambda line: None
    )
    # Image sums 6 and 22; the randomised maps (ones) add 4 each.
    np.testing.assert_array_equal(result.per_image["control.inverted.total"], [-6 + 4, -22 + 4])
    np.testing.assert_array_equal(result.per_image["control.blank_like.total"], [6, 22])
    assert "control.blurred.total" not in result.per_image  # not declared by the score


def test_the_blank_like_control_explains_nothing_for_the_randomised_model():
    asked = []

    def explain(images, classes, what):
        asked.append(what)
        return np.ones(images.shape, np.float32)

    maps = np.ones((2, 3, 3, 1), np.float32)
    context = Context(None, None, maps, None, np.zeros(2, int), None, maps, explain, "g", 0)
    context.logit_model = None
    blank = controls.controlled(context, "blank_like", None).explain
    assert not blank(maps, np.zeros(2, int), "randomised 3/5, draw 2/3").any()
    assert blank(maps, np.zeros(2, int), "random logit").all()
    assert asked == ["random logit"]  # the randomised model was never explained


def test_an_unknown_control_names_the_controls():
    with pytest.raises(ValueError, match="no control 'sharpened'; the controls: inverted, "):
        controls.controlled(None, "sharpened", None)
