"""The randomisation cascade on any model: every weight re-initialised by its own layer's
initializers (BatchNorm included), layers without initializers skipped and said, and after
each step the maps of the randomised weights, whatever the analyzer."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from support import SMALL

from src.common.tf_runtime import reset, tensorflow
from src.data import load_dataset
from src.explain.configured import analyzer_for
from src.explain.heatmaps import Explainer
from src.models.canonical import explainable
from src.models.configured import build_model, train_model
from src.scores.configured import evaluate_model
from src.scores.randomisation import cascade, randomisable_layers


def keras():
    return tensorflow().keras


def batchnorm_model():
    reset(0)
    layers = keras().layers
    model = keras().Sequential(
        [
            layers.Input((6, 6, 1)),
            layers.Conv2D(2, 3, name="conv"),
            layers.BatchNormalization(name="bn"),
            layers.Flatten(),
            layers.Dense(3, name="out"),
        ]
    )
    bn = model.get_layer("bn")
    bn.set_weights([np.full(2, value, np.float32) for value in (3.0, 2.0, 0.5, 4.0)])
    return model


def test_the_cascade_reinitialises_batchnorm_with_its_own_initializers_and_restores_it():
    """gamma -> ones, beta -> zeros, moving mean -> zeros, moving variance -> ones (the
    layer's initializers); the trained values come back at the end. Before, the cascade asked
    every layer for ``kernel_initializer`` and crashed on BatchNorm."""
    model = batchnorm_model()
    bn = model.get_layer("bn")
    steps = []
    for name in cascade(model, seed=0):
        steps.append(name)
        if name == "bn":
            gamma, beta, mean, variance = bn.get_weights()
            np.testing.assert_array_equal(gamma, [1.0, 1.0])
            np.testing.assert_array_equal(beta, [0.0, 0.0])
            np.testing.assert_array_equal(mean, [0.0, 0.0])
            np.testing.assert_array_equal(variance, [1.0, 1.0])
    assert steps == ["out", "bn", "conv"]
    np.testing.assert_array_equal(bn.get_weights()[0], [3.0, 3.0])


def test_a_layer_without_initializers_is_skipped_with_the_reason():
    reset(0)

    class Scale(keras().layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(name="scale", shape=(), initializer="ones")

        def call(self, inputs):
            return inputs * self.scale

    layers = keras().layers
    model = keras().Sequential(
        [layers.Input((4,)), Scale(name="scale_layer"), layers.Dense(2, name="out")]
    )
    layers_kept, skipped = randomisable_layers(model)
    assert [layer.name for layer in layers_kept] == ["out"]
    assert skipped == {"scale_layer": "its weight 'scale' has no initializer"}


@pytest.fixture(scope="module")
def digits_model():
    from hydra import compose, initialize_config_dir

    from src.common.paths import CONFIG_DIR

    def config(*overrides: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(
                config_name="config",
                overrides=[
                    *SMALL,
                    "train.epochs=1",
                    "evaluate.n_images=6",
                    "evaluate.randomisation.n_examples=6",
                    *[
                        f"evaluate.scores.{name}=false"
                        for name in ("perturbation", "faithfulness_correlation", "road")
                        + ("random_logit", "complexity", "conservation", "blank_maps")
                    ],
                    *overrides,
                ],
            )

    data = load_dataset("digits", train_size=300)
    cfg = config()
    model = build_model(cfg, data.input_shape, data.num_classes)
    train_model(cfg, data, model)
    return config, data, model


@pytest.mark.parametrize(
    "analyzer, options",
    [
        ("integrated_gradients", ["analyzer.params.steps=16"]),
        pytest.param("smoothgrad", ["analyzer.params.augment_by_n=8"], marks=pytest.mark.slow),
        # A plain analyzer (not augment-and-reduce).
        pytest.param("lrp_epsilon", [], marks=pytest.mark.slow),
    ],
)
def test_after_each_cascade_step_the_maps_are_those_of_the_randomised_weights(
    digits_model, analyzer, options
):
    """Through the score itself (tests/scores/test_cascade_every_analyzer.py: every
    analyzer, on a small model): the maps the cascade compares equal the maps of a freshly
    built explainer on a copy of the model holding the same randomised weights."""
    config, data, model = digits_model
    cfg = config(f"analyzer={analyzer}", *options)
    trained = model.get_weights()
    evaluation = evaluate_model(cfg, data, model)
    np.testing.assert_array_equal(model.get_weights()[-1], trained[-1])  # restored
    images, classes = data.test_images[:6], data.test_labels[:6]
    if cfg.analyzer.neuron_selection != "true_label":
        classes = model.predict(images, verbose=0).argmax(axis=1)
    copy = keras().models.clone_model(model)
    copy.set_weights(trained)
    for step, _ in enumerate(cascade(copy, cfg.seed), start=1):
        fresh = Explainer(analyzer_for(cfg, copy, "true_label"), "true_label")
        expected = fresh.explain(images, classes, 6).heatmaps
        logged = evaluation.randomisation_examples[step]
        np.testing.assert_allclose(logged, expected, rtol=1e-4, atol=1e-6)
        if analyzer == "integrated_gradients":  # completeness: sum = f(x) - f(0)
            form = explainable(copy)  # the logits IG integrates
            rise = form.predict(images, verbose=0) - form.predict(0 * images, verbose=0)
            explained = rise[np.arange(len(classes)), classes]
            sums = logged.reshape(len(logged), -1).sum(axis=1)
            np.testing.assert_allclose(sums, explained, atol=0.035)  # logit units
        if step == 2:
            break


@pytest.mark.slow
def test_a_batchnorm_model_is_scored_for_randomisation_and_says_what_it_skipped(caplog):
    """Every weighted layer of a BatchNorm network is randomised; the run says how many."""
    from hydra import compose, initialize_config_dir

    from src.common.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                "dataset=digits",
                "dataset.train_size=200",
                "model=resnet",
                "train.epochs=1",
                "evaluate.n_images=8",
                "analyzer=lrp_epsilon",
            ],
        )
    data = load_dataset("digits", train_size=200)
    model = build_model(cfg, data.input_shape, data.num_classes)
    train_model(cfg, data, model)
    with caplog.at_level(logging.INFO):
        evaluation = evaluate_model(cfg, data, model)
    weighted = [layer.name for layer in reversed(model.layers) if layer.weights]
    assert evaluation.randomised_layers == weighted
    assert any(name.endswith("_bn") for name in weighted)
    assert len(evaluation.curves["mprt_curve"]) == len(weighted)
    assert np.isfinite(evaluation.scores["mprt"]) and np.isfinite(evaluation.scores["aopc"])
    assert f"randomisation: {len(weighted)} layers" in caplog.text
