"""The analyzer of a run's config (``cfg.analyzer``) on a model's explainable form, checked
before training, and the explanation of the run's fixed test images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.common.errors import UserError
from src.common.paths import CONFIG_DIR, group_options
from src.data import Dataset
from src.explain.analyzers import PERIODIC_NOISE, takes_only_convnet_layers
from src.explain.heatmaps import (
    Explainer,
    Explanation,
    NotExplainable,
    build_analyzer,
    create_analyzer,
    images_per_batch,
    images_per_call,
    select_images,
)
from src.models.canonical import explainable, has_depthwise

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Explained:
    indices: np.ndarray  # which test images were explained
    predictions: np.ndarray  # the model's classes for them
    explanation: Explanation


def analyzer_for(cfg: DictConfig, model, neuron_selection: str | None = None, check: bool = False):
    return analyzer_of(
        model,
        cfg.analyzer.method,
        OmegaConf.to_container(cfg.analyzer.params, resolve=True),
        neuron_selection or cfg.analyzer.neuron_selection,
        check,
    )


def analyzer_of(model, method: str, params: dict, neuron_selection: str, check: bool = False):
    """The analyzer on the model's explainable form; with ``check``, also built where only
    building tells whether it can be (a depthwise convolution written for LRP)."""
    convnet_only = takes_only_convnet_layers(method)
    analyzer = create_analyzer(
        explainable(model, depthwise_as_conv=convnet_only), method, params, neuron_selection
    )
    if check and convnet_only and has_depthwise(model):
        build_analyzer(analyzer)
    return analyzer


def analysis_batch(cfg: DictConfig, batch_size: int) -> int:
    """Images per batch of ``batch_size`` samples (SmoothGrad's noise period)."""
    return images_per_batch(batch_size, OmegaConf.to_container(cfg.analyzer.params, resolve=True))


def explainer_for(
    cfg: DictConfig, model, batch_size: int, neuron_selection: str | None = None
) -> tuple[Explainer, int]:
    """The run's analyzer on ``model``, built, and the images per call to explain with: whole
    batches of ``batch_size`` samples (:func:`images_per_call`), SmoothGrad's noise repeating
    every batch, so the maps are those of one batch per call, bit for bit."""
    params = OmegaConf.to_container(cfg.analyzer.params, resolve=True)
    call = images_per_call(batch_size, params, model.input_shape[1:])
    if cfg.analyzer.method in PERIODIC_NOISE:
        params = {**params, "noise_period": images_per_batch(batch_size, params)}
    selection = neuron_selection or cfg.analyzer.neuron_selection
    analyzer = analyzer_of(model, cfg.analyzer.method, params, selection)
    return Explainer(analyzer, selection), call


def check_analyzer(cfg: DictConfig, model) -> None:
    """Create the analyzer once on the untrained model (and build it where only building
    tells), so bad params fail before training, and a model the analyzer cannot explain fails
    naming the analyzers that can."""
    try:
        analyzer_for(cfg, model, check=True)
    except NotExplainable as error:
        able = [name for name in group_options("analyzer") if _can_explain(name, cfg, model)]
        raise UserError(
            f"analyzer={cfg.analyzer.name}: {error}; the analyzers that can explain it: "
            f"{', '.join(able) or 'none'}"
        ) from error


def _can_explain(option: str, cfg: DictConfig, model) -> bool:
    """Whether the analyzer config ``conf/analyzer/<option>.yaml`` accepts ``model``."""
    analyzer = OmegaConf.create(
        {"seed": cfg.seed, "analyzer": OmegaConf.load(CONFIG_DIR / "analyzer" / f"{option}.yaml")}
    ).analyzer
    try:
        analyzer_of(
            model,
            analyzer.method,
            OmegaConf.to_container(analyzer.params, resolve=True),
            analyzer.neuron_selection,
            check=True,
        )
    except Exception:  # noqa: BLE001 - iNNvestigate refuses models with several exception types
        return False
    return True


def explain_model(cfg: DictConfig, data: Dataset, model) -> Explained:
    """Explain the fixed test images (the same in every run on the same data)."""
    indices = select_images(data.test_labels, cfg.explain.n_images)
    images, labels = data.test_images[indices], data.test_labels[indices]
    predictions = model.predict(images, batch_size=cfg.explain.batch_size, verbose=0).argmax(axis=1)
    by_label = cfg.analyzer.neuron_selection == "true_label"
    explainer, per_call = explainer_for(cfg, model, cfg.explain.batch_size)
    explanation = explainer.explain(images, labels if by_label else predictions, per_call)
    return Explained(indices, predictions, explanation)
