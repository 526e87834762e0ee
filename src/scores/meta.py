"""The run's side of the meta-evaluation (``evaluate=meta``; MetaQuantus, Hedström et al., TMLR
2023): each criterion scored again under perturbations of the input and of the model, minor ones
it should be resilient to and disruptive ones it should react to. The sweep's verdict turns these
per-image scores into each criterion's IAC, IEC and MC scores across the analyzers
(:mod:`src.report.meta`); one run alone has nothing to rank its analyzer against.

The four tests, each ``evaluate.meta.perturbations`` times (MetaQuantus's K), with MetaQuantus's
settings for MNIST-sized data by default:

- ``input_resilience`` / ``input_adversary``: uniform noise in [-a, a] added to the images
  (a = ``input.minor``, 0.001, or ``input.disruptive``, 5.0), clipped to the images' range;
- ``model_resilience`` / ``model_adversary``: every trainable weight multiplied by noise drawn
  from N(1, σ²) (σ = ``model.minor``, 0.001, or ``model.disruptive``, 2.0), restored after.

Each criterion is computed as the run computes it (the registry's scores, their settings and
seeds), on the first ``evaluate.meta.n_images`` scored images, unperturbed and perturbed; the
maps are made anew for the perturbed input or model. An image counts in a resilience test where
the perturbation left the model's prediction as it was, in an adversary test where it changed
it (``meta.<test>.<k>.kept``), as in MetaQuantus. The noise of perturbation k of a test comes
from (seed, META, test, k): every analyzer of the sweep meets the same perturbed inputs and
models, which the inter-consistency's ranking of analyzers needs.

Where this departs from MetaQuantus 0.5's code, with why:

- the input tests explain the *perturbed* images (MetaQuantus explains the unperturbed ones and
  scores those maps on the perturbed images): a criterion is asked about the maps of what it
  scores;
- the clip is to the images' range at both ends (MetaQuantus clips below to the images' minimum
  and above to the perturbed images' own maximum, which clips nothing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from src.common.progress import quiet_bars
from src.scores.registry import Context, Evaluation, Score, criterion_values, run_scores

PREFIX = "meta"
UNPERTURBED = "unperturbed"
KEPT = "kept"
# The random stream of the perturbations (beside the scores' own, src/scores/registry.py).
META = 11


@dataclasses.dataclass(frozen=True)
class Test:
    name: str
    space: str  # "input" or "model"
    minor: bool  # minor (resilience expected) or disruptive (reaction expected)


TESTS = (
    Test("input_resilience", "input", True),
    Test("input_adversary", "input", False),
    Test("model_resilience", "model", True),
    Test("model_adversary", "model", False),
)


def key(test: str, draw: int, metric: str) -> str:
    """A perturbed per-image score (``metric``: a criterion, or ``kept``)."""
    return f"{PREFIX}.{test}.{draw}.{metric}"


def unperturbed_key(metric: str) -> str:
    return f"{PREFIX}.{UNPERTURBED}.{metric}"


def noise(seed: int, test: int, draw: int) -> np.random.Generator:
    return np.random.default_rng([seed, META, test, draw])


def perturbed_images(
    images: np.ndarray, half_width: float, generator: np.random.Generator
) -> np.ndarray:
    """``images`` plus uniform noise in [-half_width, half_width], clipped to their range."""
    noisy = images + generator.uniform(-half_width, half_width, size=images.shape)
    return np.clip(noisy, images.min(), images.max()).astype(images.dtype)


@contextlib.contextmanager
def perturbed_weights(model, std: float, generator: np.random.Generator) -> Iterator[None]:
    """Within the block, every trainable weight of ``model`` multiplied elementwise by noise
    from N(1, std²) (MetaQuantus's multiplicative model noise; moving statistics are not
    parameters and stay); the weights are restored after, also on failure."""
    layers = [layer for layer in model.layers if layer.trainable_weights]
    original = [layer.get_weights() for layer in layers]
    try:
        for layer, weights in zip(layers, original, strict=True):
            trainable = {id(w) for w in layer.trainable_weights}
            layer.set_weights(
                [
                    value * generator.normal(1.0, std, size=value.shape).astype(value.dtype)
                    if id(variable) in trainable
                    else value
                    for variable, value in zip(layer.weights, weights, strict=True)
                ]
            )
        yield
    finally:
        for layer, weights in zip(layers, original, strict=True):
            layer.set_weights(weights)


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """The scores' own lines and bars left out: the meta-evaluation says its progress in one
    line per test instead of a screenful per perturbation."""
    logger = logging.getLogger("src.scores")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with quiet_bars():
            yield
    finally:
        logger.setLevel(level)


def _subset(context: Context, count: int) -> Context:
    """The context cut to its first ``count`` images, nothing kept with the model (the
    perturbed models are not the model)."""
    return context.replaced(
        images=context.images[:count],
        labels=context.labels[:count],
        classes=context.classes[:count],
        logits=context.logits[:count],
        heatmaps=context.heatmaps[:count],
        masks=None if context.masks is None else context.masks[:count],
        model_only=None,
    )


def _on_images(context: Context, images: np.ndarray, what: str) -> Context:
    return context.replaced(
        images=images,
        logits=context.predict_logits(images),
        heatmaps=context.explain(images, context.classes, what),
    )


def _on_model(context: Context, what: str) -> Context:
    """The context with the maps and logits of the model as its weights now are."""
    return _on_images(context, context.images, what)


def meta_scores(registry: Mapping[str, Score], enabled: Any, settings: Any) -> dict[str, Score]:
    """The enabled scores with criteria that the meta-evaluation scores again: all of them, or
    those ``evaluate.meta.scores`` names."""
    chosen = set(settings.meta.scores or registry)
    return {
        name: score
        for name, score in registry.items()
        if enabled.get(name) and name in chosen and any(m.criterion for m in score.metrics)
    }


def _perturbed(
    base: Context,
    test: Test,
    strength: float,
    generator: np.random.Generator,
    what: str,
    scores: Mapping[str, Score],
    enabled: Any,
) -> tuple[Evaluation, np.ndarray]:
    """The scores under one perturbation of ``test``, and the perturbed predictions."""
    settings = base.cfg
    if test.space == "input":
        perturbed = _on_images(base, perturbed_images(base.images, strength, generator), what)
        return run_scores(scores, enabled, settings, perturbed, _silent), _classes(perturbed)
    with perturbed_weights(base.model, strength, generator):
        perturbed = _on_model(base, what)
        return run_scores(scores, enabled, settings, perturbed, _silent), _classes(perturbed)


def _classes(context: Context) -> np.ndarray:
    return context.logits.argmax(axis=1)


def _silent(line: str) -> None:
    """run_scores' line per score, left out."""


def score_meta(
    registry: Mapping[str, Score],
    enabled: Any,
    settings: Any,
    context: Context,
    result: Evaluation,
    log: Callable[[str], None],
) -> None:
    """Score the criteria of :func:`meta_scores` on the unperturbed images and under every
    perturbation of :data:`TESTS`, keeping their per-image values in ``result``."""
    meta = settings.meta
    scores = meta_scores(registry, enabled, settings)
    if not scores:
        return
    base = _subset(context, min(int(meta.n_images), len(context.images)))
    predicted = _classes(base)
    draws = int(meta.perturbations)

    def keep(evaluation: Evaluation, name: Callable[[str], str]) -> None:
        for metric, values in criterion_values(scores, evaluation).items():
            result.per_image[name(metric)] = values

    log(
        f"meta-evaluation: {', '.join(scores)} on {len(base.images)} images, "
        f"{len(TESTS)} tests x {draws} perturbations"
    )
    started = time.perf_counter()
    with _quietly():
        keep(run_scores(scores, enabled, settings, base, _silent), unperturbed_key)
    for index, test in enumerate(TESTS):
        strength = float(meta[test.space]["minor" if test.minor else "disruptive"])
        test_started, counted = time.perf_counter(), []
        for draw in range(draws):
            what = f"meta {test.name} {draw + 1}/{draws}"
            with _quietly():
                evaluation, now = _perturbed(
                    base, test, strength, noise(base.seed, index, draw), what, scores, enabled
                )
            kept = now == predicted if test.minor else now != predicted
            counted.append(kept.mean())
            result.per_image[key(test.name, draw, KEPT)] = kept.astype(np.float64)
            keep(evaluation, lambda metric: key(test.name, draw, metric))  # noqa: B023
        seconds = time.perf_counter() - test_started
        which = "prediction kept" if test.minor else "prediction changed"
        log(
            f"meta-evaluation: {test.name}, {draws} perturbations, {seconds:.1f} s; "
            f"{np.mean(counted):.0%} of the images count ({which})"
        )
    result.seconds["meta"] = time.perf_counter() - started
