"""Explanation quality on the first ``evaluate.n_images`` test images: every score of the
registry (:mod:`src.scores.registry`), one class each in this package's family modules, in
the order the verdict shows them. ``evaluate.scores.<name>`` switches a score,
``evaluate.<name>`` configures it; ``python -m src.scores`` prints their table (docs/scores.md).

Every score is kept per image (``Evaluation.per_image``) so the verdict can test analyzers
against baselines image by image. Every random draw comes from a generator seeded by the run's
seed and the score's own stream (:func:`src.scores.registry.generator`), never NumPy's global
state.

Libraries do the work where they fit iNNvestigate's graph-mode Keras model: the perturbation of
regions is iNNvestigate's ``Perturbation``; the Gini index and the robustness scores are
Quantus's (``Sparseness``, ``MaxSensitivity``, ``LocalLipschitzEstimate``, the last two with
the run's own explainer and seeded noise); the random-logit similarity is Quantus's ``ssim``.
Written here, with the reason each time:

- the perturbation loop (iNNvestigate's ``PerturbationAnalysis`` reports only batch accuracy;
  the paired tests need each image's curve) and its Gaussian noise (iNNvestigate's draws from
  ``np.random``'s global state);
- faithfulness correlation and ROAD (:mod:`src.scores.metrics`): Quantus 0.6's draw their subsets
  and imputation noise from ``np.random``'s global state, ROAD solves one sparse system per
  image and percentage (seconds per analyzer) and indexes colour images' pixels wrongly; the
  arithmetic is Quantus's, and tests check it against Quantus's on the same draws;
- the randomisation tests: Quantus 0.6's TensorFlow ``MPRT`` copies the model with
  ``keras.models.clone_model``, which re-initialises *every* layer, so its cascade compares
  against an untrained network from the first step; and its averages drop the images whose
  map went blank (Spearman is NaN there), the very failures the test exists to find. The
  similarity and eMPRT follow Quantus otherwise (:mod:`src.scores.metrics`);
- the localisation scores: Quantus's break ties by pixel index (:func:`localisation`).
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from src.explain.analyzers import is_baseline
from src.models.canonical import explainable
from src.scores.controls import score_controls
from src.scores.meta import score_meta
from src.scores.registry import (
    Context,
    Evaluation,
    Explain,
    ModelOnly,
    registered,
    run_scores,
)

log = logging.getLogger(__name__)


def evaluate(
    cfg: DictConfig,
    model,
    images: np.ndarray,
    labels: np.ndarray,
    explain: Explain,
    by_label: bool,
    method: str,
    seed: int,
    masks: np.ndarray | None = None,
    model_only: ModelOnly | None = None,
) -> Evaluation:
    """Score the analyzer's heatmaps of ``images`` (``cfg`` is the ``evaluate`` config) with
    every score ``cfg.scores`` switches on.

    ``explain(images, classes, description)`` gives the heatmaps of the given output neurons
    of ``model``: the true labels if ``by_label``, else the predicted classes; the randomised
    model is explained for the same classes. ``masks`` (N, H, W) mark where the ground truth
    is (experiment=shortcut), for the localisation scores. ``model_only(name, compute)``
    keeps work that depends on the model alone for the other analyzers' runs.
    """
    logit_model = explainable(model)
    logits = logit_model.predict(images, batch_size=cfg.batch_size, verbose=0)
    classes = labels if by_label else logits.argmax(axis=1)
    context = Context(
        cfg=cfg,
        model=model,
        images=images,
        labels=labels,
        classes=classes,
        logits=logits,
        heatmaps=explain(images, classes, "scoring"),
        explain=explain,
        method=method,
        seed=seed,
        masks=masks,
        model_only=model_only,
    )
    context.logit_model = logit_model
    result = run_scores(registered(), cfg.scores, cfg, context, log.info)
    if not is_baseline(method):  # a baseline is what the controls are read against
        score_controls(dict(registered()), cfg.scores, cfg, context, result, log.info)
        if cfg.meta.enabled:  # the meta-evaluation ranks the analyzers, not the baselines
            score_meta(dict(registered()), cfg.scores, cfg, context, result, log.info)
    return result
