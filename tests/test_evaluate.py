"""Explanation-quality scores on a small trained model (TensorFlow, no MLflow)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from src.data import load_dataset
from src.evaluate import evaluate, perturbation_curve
from src.experiment import build_model, evaluate_model, train_model
from src.explain import Explainer, create_analyzer
from src.metrics import aopc, conservation_error, rank_correlation
from src.tf_runtime import innvestigate, tensorflow

OVERRIDES = ["dataset=digits", "train.epochs=3", "evaluate.n_images=200"]


def config(*overrides: str):
    from hydra import compose, initialize_config_dir

    from src.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*OVERRIDES, *overrides])


@pytest.fixture(scope="module")
def trained():
    """The seed CNN after 3 epochs on the digits (about 0.85 test accuracy), with its config."""
    cfg = config()
    data = load_dataset("digits")
    model = build_model(cfg)
    train_model(cfg, data, model)
    return cfg, data, model


def scores_of(trained, analyzer: str):
    _, data, model = trained
    return evaluate_model(config(f"analyzer={analyzer}"), data, model)


def test_input_times_gradient_beats_the_random_order_and_random_heatmaps_do_not(trained):
    explained = scores_of(trained, "input_t_gradient")
    random = scores_of(trained, "random")
    assert explained.scores["aopc_random"] < explained.scores["aopc"]
    assert explained.scores["aopc_gain"] > 0.1
    assert random.scores["aopc"] < explained.scores["aopc"]
    # The curves start from the unperturbed accuracy and end lower.
    assert explained.perturbation_curve[0] == pytest.approx(explained.random_curve[0])
    assert explained.perturbation_curve[-1] < explained.perturbation_curve[0]
    assert len(explained.perturbation_curve) == trained[0].evaluate.perturbation.steps + 1


def test_randomisation_decorrelates_noise_and_restores_the_trained_weights(trained):
    cfg, data, model = trained
    weights_before = model.get_weights()
    random = scores_of(trained, "random")
    gradient = scores_of(trained, "gradient")
    assert abs(random.scores["randomisation_spearman"]) < 0.1  # noise has nothing to lose
    assert gradient.scores["randomisation_spearman"] > random.scores["randomisation_spearman"]
    assert random.randomised_layers == ["output", "dense1", "conv3", "conv2", "conv1"]
    assert len(gradient.randomisation_curve) == 5
    # Cascading: each further layer re-initialised moves the heatmaps further from the original.
    assert gradient.randomisation_curve[-1] < gradient.randomisation_curve[0] - 0.03
    assert len(gradient.randomisation_examples) == 6  # the original, then one per layer
    for before, after in zip(weights_before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_an_unrandomised_model_correlates_perfectly_with_itself(trained):
    cfg, data, model = trained
    explainer = Explainer(
        create_analyzer(innvestigate().model_wo_softmax(model), "gradient", {}, "true_label"),
        "true_label",
    )
    images, labels = data.test_images[:50], data.test_labels[:50]
    first = explainer.explain(images, labels, 16).heatmaps
    second = explainer.explain(images, labels, 16).heatmaps
    np.testing.assert_allclose(rank_correlation(first, second), 1.0)


def test_each_part_can_be_switched_off(trained):
    cfg, data, model = trained
    evaluation = evaluate(
        OmegaConf.merge(
            cfg.evaluate, {"perturbation": {"enabled": False}, "randomisation": {"enabled": False}}
        ),
        model,
        data.test_images[:20],
        data.test_labels[:20],
        lambda images, classes, _: images - 0.5,
        by_label=False,
        method="lrp.z",
        seed=0,
    )
    assert set(evaluation.scores) == {"gini", "conservation_error"}
    assert evaluation.perturbation_curve is None and evaluation.randomisation_curve is None


def test_lrp_z_conserves_the_logit_on_a_bias_free_network():
    # Built in the current graph (no reset: the module's trained model lives there too).
    keras = tensorflow().keras
    model = keras.Sequential(
        [
            keras.layers.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", use_bias=False),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu", use_bias=False),
            keras.layers.Dense(10, activation="softmax", use_bias=False),
        ]
    )
    images = np.random.default_rng(0).random((8, 28, 28, 1)).astype(np.float32)
    wo_softmax = innvestigate().model_wo_softmax(model)
    logits = wo_softmax.predict(images, verbose=0)
    classes = logits.argmax(axis=1)
    explainer = Explainer(create_analyzer(wo_softmax, "lrp.z", {}, "true_label"), "true_label")
    heatmaps = explainer.explain(images, classes, 4).heatmaps
    errors = conservation_error(heatmaps, logits[np.arange(8), classes])
    assert errors.max() < 1e-3
    # ...while a heatmap that is not relevance does not conserve it.
    assert conservation_error(images, logits[np.arange(8), classes]).min() > 0.1


def test_perturbation_curve_uses_innvestigates_perturbation_on_the_given_heatmaps(trained):
    cfg, data, model = trained
    images, labels = data.test_images[:64], data.test_labels[:64]
    # Relevance = the image itself: perturbing the brightest regions first hurts most.
    by_brightness = perturbation_curve(cfg.evaluate, model, images, labels, images)
    by_darkness = perturbation_curve(cfg.evaluate, model, images, labels, 1 - images)
    assert aopc(by_brightness) > aopc(by_darkness)
    assert by_brightness[0] == pytest.approx(model.evaluate(images, labels, verbose=0)[1])
