"""In one process: each score the project shares with Quantus 0.6, as Quantus computes it and as
the project does, side by side on the same trained model, images and maps.

    python -m benchmarks.peer --data data.npz --n-images 500 --reps 2

The model is trained once (one epoch), the analyzer is ``gradient`` (its maps are the same
for both), and the two sides alternate, ``--reps`` times. The project's side is the score as a
run computes it (``src.scores.evaluate`` with that score alone switched on; its own clock,
``Evaluation.seconds``); Quantus's side is its metric called as its documentation shows
(``metric(model=, x_batch=, y_batch=, a_batch=, explain_func=)``, its TensorFlow model path,
its defaults except where the project's settings differ: the same patch size, steps,
percentages, runs, samples and noise). Quantus re-explains perturbed or randomised inputs
through ``explain_func``: here an iNNvestigate analyzer of the model it is handed, built once
per model object, as a user of both libraries would write it. Prints one JSON object.

Agreement: the two sides' means, and a word on why they may differ: where both draw at random
(subsets, off classes, noise) they draw differently; where Quantus's TensorFlow path is known
to be wrong (MPRT and eMPRT re-initialise the whole model copy) its number is not the score.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import warnings
from collections.abc import Callable
from unittest import mock

import numpy as np

from benchmarks.analysis import config
from src.common.tf_runtime import configure_threads
from src.data import load_dataset
from src.explain.configured import analyzer_for
from src.explain.heatmaps import Explainer
from src.models.configured import build_model, train_model
from src.scores import evaluate
from src.scores.libraries import _quantus

# Every score of the project that Quantus 0.6 has: the project's score (its switch in
# conf/evaluate), the metric it is read from, and Quantus's metrics for it.
SHARED = {
    # Both curves on both sides: the project's score is the most relevant regions first and,
    # as its baseline (aopc_random), the same in a random order; Quantus's RegionPerturbation
    # draws one order per call.
    "region perturbation (AOPC)": (
        "perturbation",
        "aopc",
        ("RegionPerturbation", "RegionPerturbation random"),
    ),
    "faithfulness correlation": (
        "faithfulness_correlation",
        "faithfulness_correlation",
        ("FaithfulnessCorrelation",),
    ),
    "ROAD": ("road", "road", ("ROAD",)),
    "MPRT + eMPRT": ("randomisation", "mprt", ("MPRT", "EfficientMPRT")),
    "random logit": ("random_logit", "random_logit", ("RandomLogit",)),
    "sparseness (Gini)": ("complexity", "gini", ("Sparseness",)),
    "max-sensitivity + local Lipschitz": (
        "robustness",
        "max_sensitivity",
        ("MaxSensitivity", "LocalLipschitzEstimate"),
    ),
    "localisation (mass, rank, pointing)": (
        "localisation",
        "relevance_mass_accuracy",
        ("RelevanceMassAccuracy", "RelevanceRankAccuracy", "PointingGame"),
    ),
}
# Why the two sides' numbers may differ, per row.
AGREEMENT = {
    "region perturbation (AOPC)": "another quantity: the project's AOPC is of the accuracy "
    "after iNNvestigate's Gaussian perturbation of 7x7 regions, Quantus's of the logit drop; "
    "both sides compute the curve in a random order too (the project's aopc_random)",
    "faithfulness correlation": "the same definition, other random subsets (tests: equal given "
    "the same subsets)",
    "ROAD": "the same imputation (tests: to 1e-9), other noise draws; Quantus's number is its "
    "mean accuracy over the percentages, the project's the area over the same curve",
    "MPRT + eMPRT": "Quantus 0.6's TensorFlow path re-initialises the whole model copy at the "
    "first step (a known defect): not the score (tests: equal given the project's cascade)",
    "random logit": "the same similarity (SSIM), other off classes (tests: equal given the "
    "same classes)",
    "sparseness (Gini)": "the same definition (tests: equal)",
    "max-sensitivity + local Lipschitz": "Quantus's computation (tests: equal to the bit given "
    "the same draws), other noise draws; the project's value is max-sensitivity's; its local "
    "Lipschitz normalises each map by its own max, Quantus's default the batch's",
    "localisation (mass, rank, pointing)": "equal on maps without ties (tests); the project's "
    "value is relevance mass accuracy",
}
# The project's settings, which Quantus's side is given (conf/evaluate/default.yaml).
PATCH, STEPS = 7, 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--n-images", type=int, default=500)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    configure_threads(None)  # as a run sets them (src.train)

    cfg = config(
        args.data,
        f"evaluate.n_images={args.n_images}",
        f"train.epochs={args.epochs}",
        "analyzer=gradient",
        "evaluate=full",
        "evaluate.controls.names=[]",  # Quantus has no controls: the same work on both sides
        "evaluate.perturbation.lerf=false",
        "evaluate.randomisation.draws=1",  # Quantus draws one cascade
    )
    data = load_dataset("mnist", path=args.data)
    model = build_model(cfg, data.input_shape, data.num_classes)
    train_model(cfg, data, model)
    count = min(args.n_images, len(data.test_images))
    images, labels = data.test_images[:count], data.test_labels[:count]
    explainers: dict[int, Explainer] = {}

    def explainer(network) -> Explainer:
        if id(network) not in explainers:
            explainers[id(network)] = Explainer(
                analyzer_for(cfg, network, "true_label"), "true_label"
            )
        return explainers[id(network)]

    def explain(inputs: np.ndarray, classes: np.ndarray, _: str = "") -> np.ndarray:
        return explainer(model).explain(inputs, np.asarray(classes), 256).heatmaps

    maps = explain(images, labels)
    masks = boxes(count, images.shape[1:3], np.random.default_rng(0))

    def project(score: str) -> tuple[float, dict[str, float]]:
        scores = {name: name == score for name in cfg.evaluate.scores}
        settings = cfg.evaluate.copy()
        settings.scores = scores
        done = evaluate(
            settings, model, images, labels, explain, True, cfg.analyzer.method, cfg.seed, masks
        )
        return done.seconds[score], done.scores

    def peer(names: tuple[str, ...]) -> tuple[float, dict[str, float]]:
        seconds, values = 0.0, {}
        for name in names:
            started = time.perf_counter()
            found = quantus_score(name, model, images, labels, maps, masks, explainer)
            seconds += time.perf_counter() - started
            values[name] = found
        return seconds, values

    rows = {}
    for label, (score, metric, names) in SHARED.items():
        times = {"project": [], "quantus": []}
        for _ in range(args.reps):
            ours, our_scores = project(score)
            theirs, their_values = peer(names)
            times["project"].append(ours)
            times["quantus"].append(theirs)
        rows[label] = {
            "project_s": statistics.median(times["project"]),
            "quantus_s": statistics.median(times["quantus"]),
            "times": times,
            "project_value": float(our_scores.get(metric, float("nan"))),  # NaN: none defined
            "quantus_values": their_values,
            "agreement": AGREEMENT[label],
        }
    print(json.dumps({"n_images": count, "analyzer": "gradient", "rows": rows}))


def boxes(count: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A 7x7 ground-truth box per image at a random place: masks for the localisation scores,
    the same for both sides."""
    masks = np.zeros((count, *shape), dtype=bool)
    for index in range(count):
        row, column = rng.integers(0, shape[0] - PATCH), rng.integers(0, shape[1] - PATCH)
        masks[index, row : row + PATCH, column : column + PATCH] = True
    return masks


def quantus_score(
    name: str,
    model,
    images: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    explainer: Callable,
) -> float:
    """One Quantus metric on the batch, as its documentation calls it; its mean."""
    quantus = _quantus()

    def explain_func(model, inputs, targets, **_):
        channels_first = inputs.shape[1:] != images.shape[1:]
        inputs = np.moveaxis(inputs, 1, -1) if channels_first else inputs
        found = explainer(model).explain(
            np.ascontiguousarray(inputs, np.float32), np.asarray(targets), 256
        )
        return np.moveaxis(found.heatmaps, -1, 1) if channels_first else found.heatmaps

    common = {"disable_warnings": True}
    metrics = {
        "RegionPerturbation": lambda: quantus.RegionPerturbation(
            patch_size=PATCH, regions_evaluation=STEPS, **common
        ),
        "RegionPerturbation random": lambda: quantus.RegionPerturbation(
            patch_size=PATCH, regions_evaluation=STEPS, order="random", **common
        ),
        "FaithfulnessCorrelation": lambda: quantus.FaithfulnessCorrelation(
            nr_runs=50, subset_size=224, return_aggregate=False, **common
        ),
        "ROAD": lambda: quantus.ROAD(percentages=[10, 30, 50, 70, 90], noise=0.01, **common),
        "MPRT": lambda: quantus.MPRT(abs=True, normalise=True, **common),
        "EfficientMPRT": lambda: quantus.EfficientMPRT(
            complexity_func_kwargs={"n_bins": 100}, **common
        ),
        "RandomLogit": lambda: quantus.RandomLogit(
            num_classes=10, normalise_func_kwargs={"normalise_axes": (1, 2, 3)}, **common
        ),
        "Sparseness": lambda: quantus.Sparseness(normalise=False, **common),
        "MaxSensitivity": lambda: quantus.MaxSensitivity(nr_samples=20, lower_bound=0.2, **common),
        "LocalLipschitzEstimate": lambda: quantus.LocalLipschitzEstimate(
            nr_samples=20, perturb_std=0.1, **common
        ),
        "RelevanceMassAccuracy": lambda: quantus.RelevanceMassAccuracy(**common),
        "RelevanceRankAccuracy": lambda: quantus.RelevanceRankAccuracy(**common),
        "PointingGame": lambda: quantus.PointingGame(**common),
    }
    robustness = name in ("MaxSensitivity", "LocalLipschitzEstimate")
    n = 100 if robustness else len(images)  # the project's robustness.n_images
    # Quantus moves the (channels-last) images' channels first itself, not the maps and masks.
    inputs = dict(
        model=model,
        x_batch=images[:n],
        y_batch=labels[:n],
        a_batch=np.moveaxis(maps[:n], -1, 1),
        explain_func=explain_func,
        channel_first=False,
    )
    if name.startswith("Relevance") or name == "PointingGame":
        inputs["s_batch"] = masks[:n, None]
    with warnings.catch_warnings(), contextlib.ExitStack() as fixes:
        warnings.simplefilter("ignore")
        if name == "EfficientMPRT":
            # Quantus 0.6's EfficientMPRT predicts on its channels-first copy of the images,
            # which a channels-last Keras model refuses (it stops with a ValueError): the
            # smallest fix that lets it run, its images' channels moved back.
            wrapper = quantus.helpers.model.tf_model.TensorFlowModel
            fixes.enter_context(
                mock.patch.object(
                    wrapper,
                    "predict",
                    lambda self, x, **_: self.model.predict(np.moveaxis(x, 1, -1), verbose=0),
                )
            )
        result = metrics[name]()(**inputs)
    if isinstance(result, dict):  # MPRT: per layer; ROAD: per percentage
        values = list(result.values())
        result = values[-1] if name == "MPRT" else np.mean([np.mean(v) for v in values])
    return float(np.nanmean(np.asarray(result, dtype=np.float64)))


if __name__ == "__main__":
    main()
