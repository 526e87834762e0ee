"""Explanations: iNNvestigate analyzers built by name from the `analyzer` config."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.common import internals
from src.common.errors import UserError
from src.common.progress import progress_bar
from src.explain import analyzers


def validate_analyzer_method(method: str, known: Iterable[str]) -> None:
    """Reject an iNNvestigate analyzer name that the installed iNNvestigate does not have."""
    known = sorted(known)
    if method not in known:
        raise UserError(
            f"iNNvestigate has no analyzer {method!r} (analyzer.method); choose one of: "
            + ", ".join(known)
        )


class NotExplainable(UserError):
    """iNNvestigate refuses the model for this analyzer (e.g. Deep Taylor on tanh units)."""


@dataclass(frozen=True)
class Explanation:
    heatmaps: np.ndarray  # same shape as the images: relevance per pixel
    explained_classes: np.ndarray  # the output neuron each heatmap explains
    build_time_s: float  # building the analyzer's graph
    analysis_time_s: float  # the analyze() calls alone

    @property
    def images_per_second(self) -> float:
        return (
            len(self.heatmaps) / self.analysis_time_s if self.analysis_time_s > 0 else float("inf")
        )


def select_images(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` test images: the first of each class in class order, then the
    earliest unused ones.

    The choice depends only on the labels, so every run on the same data explains the same
    images (one per class, 0 to 9, with the default 10).
    """
    count = min(count, len(labels))
    firsts = [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)][:count]
    taken = set(firsts)
    rest = [index for index in range(len(labels)) if index not in taken][: count - len(firsts)]
    return np.array(firsts + rest, dtype=np.int64)


# An analyzer that draws samples of each image (SmoothGrad's noisy copies, Integrated Gradients'
# path) is called with several batches of images at once, up to CALL_ROWS samples and
# CALL_BYTES of input per call: at the default 256 samples per batch SmoothGrad explained 4
# images per call at 128-140 images/s, 16 per call at 147-149 and 64 at 155-156, the gradient's
# 10,000 images/s over its 64 copies (issue 30, 2 cores). Images over 16 KiB (64x64 colour and
# larger) stay at one batch per call.
CALL_ROWS = 1024
CALL_BYTES = 16 * 2**20


def samples_per_image(params: Mapping[str, Any]) -> int:
    """The samples an analyzer draws per image: SmoothGrad's ``augment_by_n`` noisy copies,
    Integrated Gradients' ``steps`` points on its path; 1 for the others."""
    return max(1, int(params.get("augment_by_n", 1)) * int(params.get("steps", 1)))


def images_per_batch(batch_size: int, params: Mapping[str, Any]) -> int:
    """Images per batch so that at most ``batch_size`` samples go through the graph."""
    return max(1, batch_size // samples_per_image(params))


def images_per_call(batch_size: int, params: Mapping[str, Any], image_shape) -> int:
    """Images per analyze() call: one batch (:func:`images_per_batch`) for an analyzer that
    draws no samples; for one that does, as many whole batches as ``CALL_ROWS`` samples and
    ``CALL_BYTES`` of input allow (at least one). Whole batches: SmoothGrad's noise repeats
    every batch (``noise_period``), so its maps do not depend on the call's size."""
    batch = images_per_batch(batch_size, params)
    samples = samples_per_image(params)
    if samples == 1:
        return batch
    rows = min(CALL_ROWS, CALL_BYTES // (4 * int(np.prod(image_shape))))
    return batch * max(1, rows // (batch * samples))


def create_analyzer(
    model_wo_softmax: Any, method: str, params: Mapping[str, Any], neuron_selection: str
) -> Any:
    """The analyzer ``method`` (the project's own, else iNNvestigate's) with ``params``; bad
    params -> UserError."""
    validate_analyzer_method(method, analyzers.known_methods())
    from innvestigate.analyzer.base import NotAnalyzeableModelException

    mode = "index" if neuron_selection == "true_label" else "max_activation"
    try:
        # iNNvestigate warns which layers fail a check, then raises without saying it.
        with warnings.catch_warnings(record=True) as checks:
            warnings.simplefilter("always")
            return analyzers.create(method, model_wo_softmax, neuron_selection_mode=mode, **params)
    except (NotAnalyzeableModelException, NotImplementedError) as error:
        said = str(error).strip() or " ".join(str(check.message) for check in checks)
        raise NotExplainable(f"{method} cannot explain this model: {_reason(said)}") from error
    except (TypeError, ValueError) as error:
        raise UserError(
            f"analyzer {method!r} rejects analyzer.params {dict(params)}: {error}"
        ) from error


def _reason(said: str) -> str:
    """iNNvestigate's check message in one line, the layers named by their kind:
    "LRP is only tested ... Check triggered by layers: [<keras...Rescaling object at ...>]"
    -> "LRP is only tested ... (layers: Rescaling)"."""
    if not said:
        return "unsupported layers"
    message = said.splitlines()[0].strip()
    kinds = sorted(set(re.findall(r"\.(\w+) object at", said)))
    return f"{message} (layers: {', '.join(kinds)})" if kinds else message


def build_analyzer(analyzer: Any) -> None:
    """Build the analyzer's graph, reading the model's weights where they are at each call
    (:func:`src.common.internals.live_variable_reads`: else integrated gradients' and
    SmoothGrad's maps keep the weights of the build, and do not follow the randomisation
    cascade's); a model it cannot be built for -> NotExplainable."""
    from tensorflow.errors import OpError

    try:
        with internals.live_variable_reads():
            analyzer.create_analyzer_model()
    except (ValueError, NotImplementedError, OpError) as error:
        said = str(error)
        if "PartitionedCall" in said:  # TensorFlow's grouped convolution is a function call
            said = (
                "TensorFlow 2.14 cannot differentiate the gradient of a grouped convolution, "
                "which this rule needs (a depthwise convolution, written as one for LRP)"
            )
        name = type(analyzer).__name__
        raise NotExplainable(f"{name} cannot be built for this model: {_reason(said)}") from error


class Explainer:
    """An analyzer, its graph built once (iNNvestigate's relevance analyzers refuse to build
    twice), that explains images in batches."""

    def __init__(self, analyzer: Any, neuron_selection: str) -> None:
        self.analyzer = analyzer
        self.by_index = neuron_selection == "true_label"
        started = time.perf_counter()
        build_analyzer(analyzer)
        self.build_time_s = time.perf_counter() - started

    def explain(
        self,
        images: np.ndarray,
        classes: np.ndarray,
        batch_size: int,
        description: str = "explaining",
    ) -> Explanation:
        """Heatmaps of ``images``, ``batch_size`` at a time. ``classes`` are the output neurons
        explained: passed to the analyzer when it selects by index, else a record of what its
        max-activation selection picks (the predicted classes)."""
        batches = []
        bar = progress_bar(len(images), description, "img")
        started = time.perf_counter()
        try:
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                if self.by_index:
                    selection = classes[start : start + batch_size]
                    batches.append(self.analyzer.analyze(batch, neuron_selection=selection))
                else:
                    batches.append(self.analyzer.analyze(batch))
                bar.update(len(batch))
        finally:
            bar.close()
        return Explanation(
            heatmaps=np.concatenate(batches).astype(np.float32, copy=False),
            explained_classes=classes,
            build_time_s=self.build_time_s,
            analysis_time_s=time.perf_counter() - started,
        )
