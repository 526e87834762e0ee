"""Every analyzer follows the randomisation cascade: after each step the map of the one
explainer the score built before the cascade equals the map of an explainer built afresh on a
fresh copy of the model holding the same randomised weights; integrated gradients' maps keep
its completeness (the map sums to f(x) - f(0)) at every step.

iNNvestigate's augment-and-reduce wrappers (integrated gradients, SmoothGrad) did not: their
analyzer model, called again on the augmented inputs, kept the weights of its build
(:func:`src.common.internals.live_variable_reads`)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from src.common.paths import CONFIG_DIR, group_options
from src.common.tf_runtime import reset, tensorflow
from src.explain.analyzers import is_baseline
from src.explain.configured import analyzer_of
from src.explain.heatmaps import Explainer
from src.models.canonical import explainable
from src.scores.randomisation import cascade

# Quick to build and to run: with the common ones in make test, the rest in the slow suite.
FAST = {"gradient", "integrated_gradients", "smoothgrad", "lrp_epsilon"}
# Ignore the model: nothing to follow (iNNvestigate's ``random`` is the input plus noise drawn
# afresh at each call).
IGNORE_THE_MODEL = {"random"}


def analyzers() -> list:
    names = []
    for name in group_options("analyzer"):
        config = OmegaConf.load(CONFIG_DIR / "analyzer" / f"{name}.yaml")
        if is_baseline(config.method) or name in IGNORE_THE_MODEL:
            continue
        names.append(name if name in FAST else pytest.param(name, marks=pytest.mark.slow))
    return names


def small_cnn():
    """The seed CNN's kinds of layer, small: convolution, pooling, two dense layers, softmax."""
    reset(0)
    layers = tensorflow().keras.layers
    return tensorflow().keras.Sequential(
        [
            layers.Input((8, 8, 1)),
            layers.Conv2D(4, 3, activation="relu", name="conv"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(8, activation="relu", name="hidden"),
            layers.Dense(3, activation="softmax", name="out"),
        ]
    )


def explainer_on(model, name: str) -> Explainer:
    config = OmegaConf.create(
        {"seed": 0, "analyzer": OmegaConf.load(CONFIG_DIR / "analyzer" / f"{name}.yaml")}
    ).analyzer
    params = OmegaConf.to_container(config.params, resolve=True)
    for key, fewer in (("steps", 16), ("augment_by_n", 8)):  # the same arithmetic, less of it
        if key in params:
            params[key] = fewer
    return Explainer(analyzer_of(model, config.method, params, "true_label"), "true_label")


def fresh_copy(model):
    copy = tensorflow().keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


@pytest.mark.parametrize("name", analyzers())
def test_after_each_cascade_step_the_map_is_that_of_a_fresh_model_with_those_weights(name):
    model = small_cnn()
    images = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype(np.float32)
    classes = np.array([0, 1, 2, 0, 1])
    explainer = explainer_on(model, name)  # built once, before the cascade, as the score does
    trained = explainer.explain(images, classes, 5).heatmaps
    steps = []
    for step in cascade(model, seed=0):
        steps.append(step)
        maps = explainer.explain(images, classes, 5).heatmaps
        copy = fresh_copy(model)
        expected = explainer_on(copy, name).explain(images, classes, 5).heatmaps
        np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6, err_msg=step)
        if name == "integrated_gradients":
            logits = explainable(copy)
            rise = logits.predict(images, verbose=0) - logits.predict(0 * images, verbose=0)
            sums = maps.reshape(len(maps), -1).sum(axis=1)
            # 16 steps of a Riemann sum over ReLU kinks: close, not exact.
            np.testing.assert_allclose(sums, rise[np.arange(5), classes], atol=0.05, err_msg=step)
    assert steps == ["out", "hidden", "conv"]
    assert not np.array_equal(maps, trained)  # the weights moved the map
