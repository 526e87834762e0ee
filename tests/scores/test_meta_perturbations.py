"""The run's side of the meta-evaluation (src/scores/meta.py): the perturbations of input and
model by hand, the same for every analyzer of a seed, the weights restored; each criterion kept
per image under every test, with the images that count in it."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from src.common.tf_runtime import reset, tensorflow
from src.scores import meta
from src.scores.registry import Better, Context, Evaluation, Metric, Score


def test_input_noise_is_uniform_within_its_half_width_and_clipped_to_the_images_range():
    images = np.linspace(0.0, 1.0, 200, dtype=np.float32).reshape(2, 10, 10, 1)
    noisy = meta.perturbed_images(images, 0.001, meta.noise(0, 0, 0))
    assert noisy.dtype == images.dtype
    assert np.abs(noisy - images).max() <= 0.001 + 1e-7
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    # Disruptive noise far wider than the range: clipped at both ends.
    loud = meta.perturbed_images(images, 5.0, meta.noise(0, 1, 0))
    assert loud.min() == 0.0 and loud.max() == 1.0
    # The same (seed, test, draw), the same noise; another draw, other noise.
    again = meta.perturbed_images(images, 0.001, meta.noise(0, 0, 0))
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, meta.perturbed_images(images, 0.001, meta.noise(0, 0, 1)))


def small_model():
    reset(0)
    keras = tensorflow().keras
    return keras.Sequential(
        [
            keras.layers.Input((4,)),
            keras.layers.Dense(3, name="hidden"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Dense(2, name="out"),
        ]
    )


def test_model_noise_multiplies_the_trainable_weights_and_is_undone_after():
    model = small_model()
    before = [w.copy() for w in model.get_weights()]
    generator = meta.noise(3, 2, 0)
    with meta.perturbed_weights(model, 2.0, generator):
        during = model.get_weights()
    expected_noise = meta.noise(3, 2, 0)
    names = [w.name for w in model.weights]
    for name, old, new in zip(names, before, during, strict=True):
        if "moving" in name:  # BatchNorm's statistics are not parameters: untouched
            np.testing.assert_array_equal(old, new)
    # The first weight (hidden's kernel) is multiplied elementwise by N(1, 2²) draws.
    factor = expected_noise.normal(1.0, 2.0, size=before[0].shape).astype(np.float32)
    np.testing.assert_allclose(during[0], before[0] * factor, rtol=1e-6)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_the_weights_are_restored_when_scoring_fails():
    model = small_model()
    before = model.get_weights()
    with pytest.raises(RuntimeError), meta.perturbed_weights(model, 0.5, meta.noise(0, 2, 0)):
        raise RuntimeError("a score failed")
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


class Output(Score):
    """The logit of the explained class, per image: moves with input and weights."""

    name = "output"
    needs = frozenset({"model"})
    metrics = (Metric("logit", "the explained logit", Better.HIGHER, criterion="o", short="O"),)

    def compute(self, context, settings, result):
        result.record("logit", context.logits[np.arange(len(context.logits)), context.classes])


class Property(Score):
    """Not a criterion: not scored again."""

    name = "property"
    needs = frozenset({"heatmaps"})
    metrics = (Metric("size", "the map's size", Better.NEITHER),)

    def compute(self, context, settings, result):
        result.record("size", np.full(len(context.heatmaps), context.heatmaps[0].size))


def scored(model, images: np.ndarray, seed: int = 0) -> tuple[Evaluation, list[str]]:
    logits = model.predict(images, verbose=0)
    asked = []

    def explain(batch, classes, what):
        asked.append(what)
        return np.zeros_like(batch)

    context = Context(
        OmegaConf.create({"batch_size": 8}),
        model,
        images,
        np.zeros(len(images), int),
        logits.argmax(axis=1),
        logits,
        np.zeros_like(images),
        explain,
        "gradient",
        seed,
    )
    context.logit_model = model
    settings = OmegaConf.create(
        {
            "batch_size": 8,
            "meta": {
                "n_images": 6,
                "perturbations": 2,
                "input": {"minor": 0.001, "disruptive": 5.0},
                "model": {"minor": 0.001, "disruptive": 2.0},
                "scores": [],
            },
        }
    )
    result = Evaluation()
    registry = {"output": Output(), "property": Property()}
    enabled = {"output": True, "property": True}
    meta.score_meta(registry, enabled, settings, context, result, lambda line: None)
    return result, asked


def test_every_criterion_is_scored_under_every_test_with_the_images_that_count():
    model = small_model()
    images = np.random.default_rng(0).uniform(size=(10, 4)).astype(np.float32)
    result, asked = scored(model, images)
    # The first n_images, unperturbed, as the run scores them.
    logits = model.predict(images[:6], verbose=0)
    np.testing.assert_allclose(
        result.per_image[meta.unperturbed_key("logit")],
        logits[np.arange(6), logits.argmax(axis=1)],
        rtol=1e-6,
    )
    assert not any(k.endswith(".size") for k in result.per_image)  # not a criterion
    for test in meta.TESTS:
        for k in range(2):
            values = result.per_image[meta.key(test.name, k, "logit")]
            counted = result.per_image[meta.key(test.name, k, meta.KEPT)]
            assert values.shape == (6,) and counted.shape == (6,)
            assert set(np.unique(counted)) <= {0.0, 1.0}
    # A minor input perturbation keeps every prediction and barely moves the logit; the
    # disruptive model perturbation moves it far.
    minor = result.per_image[meta.key("input_resilience", 0, "logit")]
    np.testing.assert_allclose(minor, result.per_image[meta.unperturbed_key("logit")], atol=0.01)
    assert result.per_image[meta.key("input_resilience", 0, meta.KEPT)].all()
    disrupted = result.per_image[meta.key("model_adversary", 0, "logit")]
    assert np.abs(disrupted - result.per_image[meta.unperturbed_key("logit")]).max() > 0.05
    # Maps made anew for each perturbed input and model, 4 tests x 2 draws.
    assert len(asked) == 8 and asked[0] == "meta input_resilience 1/2"
    assert "meta" in result.seconds


def test_every_analyzer_of_a_seed_meets_the_same_perturbations():
    model = small_model()
    images = np.random.default_rng(0).uniform(size=(10, 4)).astype(np.float32)
    first, _ = scored(model, images)
    second, _ = scored(model, images)
    assert first.per_image.keys() == second.per_image.keys()
    for name in first.per_image:
        np.testing.assert_array_equal(first.per_image[name], second.per_image[name])
    other_seed, _ = scored(model, images, seed=1)
    name = meta.key("model_adversary", 0, "logit")
    assert not np.array_equal(first.per_image[name], other_seed.per_image[name])
