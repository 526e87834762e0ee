"""One run: config -> data -> model -> train (or reuse) -> explain -> figures -> MLflow."""

from __future__ import annotations

import functools
import json
import logging
import os
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.common import names
from src.common.builders import build
from src.common.errors import UserError
from src.common.paths import CONFIG_DIR, group_options
from src.common.tf_runtime import intra_op_threads, reset
from src.config.checks import validate, validate_for_images
from src.data import Dataset, load_configured
from src.explain.analyzers import is_wrapper, takes_only_convnet_layers
from src.explain.heatmaps import (
    Explainer,
    Explanation,
    NotExplainable,
    build_analyzer,
    create_analyzer,
    images_per_batch,
    select_images,
)
from src.models.cache import (
    ModelCache,
    accuracy_mismatch,
    entry_key,
    fingerprint,
    model_fingerprint,
)
from src.models.canonical import explainable, has_depthwise, output_kind
from src.models.training import (
    EpochCallback,
    Resume,
    SnapshotCallback,
    TrainingResult,
    TrainingState,
    compile_model,
    random_layers,
    test_only,
    train,
    weights_image,
)
from src.models.zoo import Pretrained, check_model_config
from src.report.charts import perturbation_figure, randomisation_figure
from src.report.figures import figure_png, heatmap_figure, heatmap_strip, training_figure
from src.scores.registry import ModelOnly, curves
from src.tracking import records
from src.tracking.lifecycle import (
    EXPERIMENT_ENV,
    PARENT_RUN_ENV,
    SWEEP_ID_ENV,
    SWEPT_KEYS_ENV,
    tracked_run,
)
from src.tracking.store import prepare, resolve_store

if TYPE_CHECKING:
    from src.scores import Evaluation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explained:
    indices: np.ndarray  # which test images were explained
    predictions: np.ndarray  # the model's classes for them
    explanation: Explanation


def run_name(cfg: DictConfig, overrides: Sequence[str] = ()) -> str:
    """``gradient · seed 1 · 3 ep``, with the settings the command line gave that set the run
    apart (in a sweep, the swept ones: ``lrp_epsilon ε=0.01 · seed 0 · 5 ep``); for a model
    trained elsewhere, where it is from instead of the training length: ``… · model.keras``,
    ``… · run 1a2b3c4d``."""
    swept = os.environ.get(SWEPT_KEYS_ENV) if os.environ.get(PARENT_RUN_ENV) else None
    settings = names.settings_of(overrides, None if swept is None else json.loads(swept))
    target = cfg.model.get("_target_")
    if target == "src.model.load_keras_file":
        source = Path(str(cfg.model.path)).name
    elif target == "src.model.load_run_model":
        source = f"run {str(cfg.model.run_id)[:8]}"
    else:
        source = f"{cfg.train.epochs} ep"
    return names.run_name(cfg.analyzer.name, settings, cfg.seed, source)


def _pretrained_model(cfg: DictConfig) -> bool:
    """Whether ``cfg.model`` loads a model trained elsewhere (no training, no cache)."""
    return cfg.model.get("_target_") in ("src.model.load_keras_file", "src.model.load_run_model")


def load_data(cfg: DictConfig) -> Dataset:
    # The config as canonical JSON: hashable for the cache, equal for equal configs.
    return _load_data(json.dumps(OmegaConf.to_container(cfg.dataset, resolve=True), sort_keys=True))


@functools.lru_cache(maxsize=1)
def _load_data(spec: str) -> Dataset:
    """The jobs of a sweep that share a process load their data once (about 0.6 s a job on
    Fashion-MNIST). The arrays are made read-only, so no job can change what the next sees."""
    data = load_configured(json.loads(spec))
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        array.flags.writeable = False
    return data


def build_model(cfg: DictConfig, input_shape: Sequence[int], num_classes: int):
    """The compiled model of ``cfg.model`` in a fresh seeded graph (see :func:`build_network`)."""
    return build_network(cfg, input_shape, num_classes)[0]


def build_network(
    cfg: DictConfig, input_shape: Sequence[int], num_classes: int
) -> tuple[Any, Pretrained | None]:
    """A fresh graph, seeded, with the model of ``cfg.model`` (Hydra's ``instantiate`` of its
    ``_target_``) for the data's input shape and class count, compiled; and, for a model
    trained elsewhere (``model=keras_file``, ``model=run``), where it came from. Bad
    architectures fail as UserError."""
    reset(cfg.seed)
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    check_model_config(spec)
    built = build(
        "model",
        spec,
        "a valid network",
        input_shape=tuple(input_shape),
        num_classes=int(num_classes),
    )
    pretrained = built if isinstance(built, Pretrained) else None
    model = built.model if pretrained else built
    compile_model(
        model,
        cfg.train.optimizer,
        cfg.train.learning_rate,
        from_logits=output_kind(model) == "logits",
    )
    return model, pretrained


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
    return images_per_batch(batch_size, OmegaConf.to_container(cfg.analyzer.params, resolve=True))


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


def train_model(
    cfg: DictConfig,
    data: Dataset,
    model,
    on_epoch_end: EpochCallback | None = None,
    resume: Resume | None = None,
    on_snapshot: SnapshotCallback | None = None,
) -> TrainingResult:
    return train(
        model,
        data.train_images,
        data.train_labels,
        data.test_images,
        data.test_labels,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        validate_each_epoch=cfg.train.validate_each_epoch,
        on_epoch_end=on_epoch_end,
        resume=resume,
        on_snapshot=on_snapshot,
    )


def explain_model(cfg: DictConfig, data: Dataset, model) -> Explained:
    """Explain the fixed test images (the same in every run on the same data)."""
    indices = select_images(data.test_labels, cfg.explain.n_images)
    images, labels = data.test_images[indices], data.test_labels[indices]
    predictions = model.predict(images, batch_size=cfg.explain.batch_size, verbose=0).argmax(axis=1)
    by_label = cfg.analyzer.neuron_selection == "true_label"
    explainer = Explainer(analyzer_for(cfg, model), cfg.analyzer.neuron_selection)
    explanation = explainer.explain(
        images, labels if by_label else predictions, analysis_batch(cfg, cfg.explain.batch_size)
    )
    return Explained(indices, predictions, explanation)


def evaluation_enabled(cfg: DictConfig) -> bool:
    return any(cfg.evaluate.scores.values())


def evaluate_model(cfg: DictConfig, data: Dataset, model, cache_key: str = "") -> Evaluation:
    """Explanation-quality scores on the first ``evaluate.n_images`` test images; with the
    model's cache entry (``cache_key``), work that depends on the model alone is kept there
    for the other analyzers' runs."""
    from src.scores import evaluate  # with Quantus and scipy: imported only when scoring

    count = min(cfg.evaluate.n_images, len(data.test_images))
    # Selection by index: the randomised model must explain the classes the trained one did.
    explainer = Explainer(analyzer_for(cfg, model, "true_label"), "true_label")
    batch_size = analysis_batch(cfg, cfg.evaluate.batch_size)

    def explain_classes(images: np.ndarray, classes: np.ndarray, description: str) -> np.ndarray:
        return explainer.explain(images, classes, batch_size, description).heatmaps

    def explain_anew(images: np.ndarray, classes: np.ndarray, description: str) -> np.ndarray:
        """An explainer built on the model's current weights: after the randomisation
        cascade changed them, the graph of iNNvestigate's augment-and-reduce wrappers
        (integrated gradients, SmoothGrad) built before still computes with the trained
        ones."""
        fresh = Explainer(analyzer_for(cfg, model, "true_label"), "true_label")
        return fresh.explain(images, classes, batch_size, description).heatmaps

    # The other analyzers compute with the model's variables and follow them; a baseline
    # ignores the model and keeps drawing from its own stream.
    follows = not is_wrapper(explainer.analyzer)

    return evaluate(
        cfg.evaluate,
        model,
        data.test_images[:count],
        data.test_labels[:count],
        explain_classes,
        by_label=cfg.analyzer.neuron_selection == "true_label",
        method=cfg.analyzer.method,
        seed=cfg.seed,
        masks=None if data.test_masks is None else data.test_masks[:count],
        model_only=model_only(cfg, cache_key, say=True),
        explain_anew=None if follows else explain_anew,
    )


def model_only(cfg: DictConfig, cache_key: str, say: bool = False) -> ModelOnly | None:
    """Work that depends on the model alone, kept with its snapshot in the model cache for
    the runs of the other analyzers (None: no cache entry, or ``train.reuse=false``). With
    ``say``, a line when it came from the cache."""
    if not cache_key or not cfg.train.reuse:
        return None
    cache, epochs = ModelCache(cfg.train.cache_dir), int(cfg.train.epochs)

    def kept(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value, cached = cache.model_only(cache_key, epochs, name, compute)
        if cached and say:
            log.info("%s: from the model cache (computed once per model)", name.split(":")[0])
        return value

    return kept


def shortcut_reliance(
    cfg: DictConfig, data: Dataset, model, test_accuracy: float
) -> dict[str, float]:
    """How much the model relies on the planted marker: its accuracy on the test images with
    the marker of their class (the test set as trained and tested: ``test_accuracy``),
    without any marker, and with the marker of another class; and how often it then answers
    the marker's class instead of the image's."""
    shortcut, clean, labels = data.shortcut, data.clean_test_images, data.test_labels
    other = shortcut.moved(labels)
    moved, _ = shortcut.draw(clean, other)

    def predicted(images: np.ndarray) -> np.ndarray:
        return model.predict(images, batch_size=cfg.evaluate.batch_size, verbose=0).argmax(axis=1)

    on_moved = predicted(moved)
    return {
        "shortcut_accuracy_marked": float(test_accuracy),
        "shortcut_accuracy_clean": float(np.mean(predicted(clean) == labels)),
        "shortcut_accuracy_moved": float(np.mean(on_moved == labels)),
        "shortcut_follows_marker": float(np.mean(on_moved == other)),
    }


def checked_inputs(cfg: DictConfig, say: bool = True) -> tuple[Dataset, Any, Pretrained | None]:
    """What a run needs before it exists, checked: its cache folder, its data, the model
    built for it, the analyzer created on that model. Bad input raises :class:`UserError`.
    A sweep calls this for each of its jobs before its parent run exists (src/sweep/parent.py)."""
    validate(cfg)
    if not _pretrained_model(cfg):  # it trains, and caches what it trains
        ModelCache(cfg.train.cache_dir).check()
    data = load_data(cfg)
    if say:
        log.info(
            "data: %s (%d train / %d test images)",
            data.source,
            len(data.train_images),
            len(data.test_images),
        )
    validate_for_images(cfg, data.input_shape, data.num_classes, len(data.test_images))
    model, pretrained = build_network(cfg, data.input_shape, data.num_classes)
    check_analyzer(cfg, model)
    return data, model, pretrained


def run_experiment(cfg: DictConfig, job_overrides: list[str] | None = None) -> float:
    """Run and track one experiment; returns the test accuracy.

    In a sweep (``XAI_LAB_PARENT_RUN_ID`` set) the run is a child of the sweep's parent run.
    """
    validate(cfg)
    store = resolve_store(cfg.tracking.dir, cfg.tracking.uri)
    parent_run_id = os.environ.get(PARENT_RUN_ENV)
    # A sweep's jobs join their parent's experiment (one per dataset, or xai-lab for several).
    experiment = (parent_run_id and os.environ.get(EXPERIMENT_ENV)) or str(
        cfg.tracking.experiment_name
    )
    experiment_id = prepare(store, experiment)
    data, model, pretrained = checked_inputs(cfg)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    if pretrained:
        model_key = pretrained.fingerprint  # the weights are the file's (or the run's)
    else:
        training_key = fingerprint(
            resolved["dataset"],
            data.checksum,
            resolved["model"],
            resolved["train"],
            cfg.seed,
            intra_op_threads(),
        )
        model_key = model_fingerprint(training_key, cfg.train.epochs)
    tags = records.run_tags(cfg.analyzer.name, cfg.dataset.name, cfg.seed, cfg.train.epochs)
    if pretrained:
        tags.update(
            {
                "model_source": pretrained.source,
                "model_trained_here": "false",
                "model_reused": "false",
            }
        )
        if pretrained.converted_from:
            tags["model_converted_from"] = pretrained.converted_from
    tags.update(
        {
            "data_source": data.source,
            "data_sha256": data.checksum,
            "model_fingerprint": model_key,
            "model_output": output_kind(model),
            "intra_op_threads": str(intra_op_threads()),
        }
    )
    if parent_run_id:
        tags.update(
            {
                "sweep_id": os.environ.get(SWEEP_ID_ENV, ""),
                "job_overrides": " ".join(sorted(job_overrides or [])),
            }
        )

    cache_key = "" if pretrained else entry_key(training_key, store.tracking_uri)
    name = run_name(cfg, job_overrides or [])
    with tracked_run(experiment_id, name, tags, parent_run_id) as run_id:
        records.log_config(resolved)
        # What reproducing the run needs besides the config: the data files and the environment.
        records.log_data_files(data.files)
        log_datasets(cfg, data)
        records.log_environment()
        if pretrained:
            training = test_only(model, data.test_images, data.test_labels, cfg.train.batch_size)
            records.log_metrics({"train_epochs_run": 0})
            log.info("explaining the model of %s (no training)", pretrained.source)
        else:
            training = trained_or_reused(cfg, data, model, cache_key, run_id, parent_run_id)
        explained = explain_model(cfg, data, model)
        log_outcome(cfg, name, data, training, explained, model_only(cfg, cache_key))
        headline = ""
        if data.shortcut is not None:
            reliance = shortcut_reliance(cfg, data, model, training.test_accuracy)
            records.log_metrics(reliance)
            headline += (
                f" · marker moved: accuracy {reliance['shortcut_accuracy_moved']:.3f}, "
                f"{reliance['shortcut_follows_marker']:.0%} follow it"
            )
        if evaluation_enabled(cfg):
            evaluation = evaluate_model(cfg, data, model, cache_key)
            log_evaluation(cfg, name, data, evaluation)
            headline = headline_scores(evaluation.scores) + headline
        records.log_metrics(memory_mb())
    log.info(
        "%s: test accuracy %.4f%s · run %s · experiment %r · browse: %s",
        name,
        training.test_accuracy,
        headline,
        run_id,
        experiment,
        store.run_link(experiment_id, run_id, cfg.tracking.ui_host, cfg.tracking.ui_port),
    )
    return training.test_accuracy


def log_datasets(cfg: DictConfig, data: Dataset) -> None:
    """The data as an MLflow dataset input (the runs table's Dataset column): the dataset's
    name, as digest the first 12 hex digits of ``data_sha256`` (the SHA-256 of the arrays as
    loaded), where it came from. One input, the training split: MLflow keeps one per name and
    digest, and the digest covers both splits."""
    records.log_dataset(
        names.mlflow_name(cfg.dataset.name, kind="label", limit=names.MAX_DATASET_NAME),
        data.checksum[:12],
        data.source,
        data.train_images,
        data.train_labels,
        context="training",
    )


def trained_or_reused(
    cfg: DictConfig, data: Dataset, model, cache_key: str, run_id: str, parent_run_id: str | None
) -> TrainingResult:
    """Train the model in the open run, or load it from the model cache if an earlier run
    trained it: the snapshot of this many epochs, or, failing that, the longest shorter one of
    the same training, trained on from there. While one job trains, the others that need the
    same training wait here. Logs ``train_epochs_run``, the epochs this run trained.

    A reused model's test loss and accuracy are measured, as a trained one's are (test_only),
    not copied: an accuracy other than the recorded one is a warning and the run's tag
    ``model_accuracy_mismatch``."""
    cache = ModelCache(cfg.train.cache_dir)
    epochs = int(cfg.train.epochs)
    with cache.claim(cache_key, holder=f"run {run_id}"):
        cached = cache.load(cache_key, epochs) if cfg.train.reuse else None
        if cached is not None and _load_weights(model, cached.weights):
            tested = test_only(model, data.test_images, data.test_labels, cfg.train.batch_size)
            mismatch = accuracy_mismatch(
                cached.training.test_accuracy, tested.test_accuracy, len(data.test_labels)
            )
            if mismatch:
                log.warning(
                    "warning: the model cached in %s gets another test accuracy than when it "
                    "was trained: %s",
                    cached.folder,
                    mismatch,
                )
            training = replace(
                cached.training, test_loss=tested.test_loss, test_accuracy=tested.test_accuracy
            )
            model_uri = cached.model_uri
            if not model_uri:  # a snapshot of a longer training: no run has logged it yet
                model_uri = records.log_keras_model(model, data.test_images[:2])
                cache.set_model_uri(cache_key, epochs, model_uri)
            records.log_reused_training(
                training.history, cached.trained_by_run, model_uri, accuracy_mismatch=mismatch
            )
            records.log_metrics({"train_epochs_run": 0})
            log.info("reusing the model trained by run %s", cached.trained_by_run)
            return training
        resume, continued = None, None
        if cfg.train.reuse:
            continued = _resume_point(cfg, cache, cache_key, model)
        if continued is not None:
            resume, trained_by_run = continued
            records.log_continued_training(resume.training.history, resume.epochs, trained_by_run)
            log.info(
                "continuing the training of run %s from epoch %d", trained_by_run, resume.epochs
            )

        def snapshot(done: int, so_far: TrainingResult, state: TrainingState) -> None:
            cache.store(cache_key, done, weights_image(model), so_far, run_id, state=state)

        training = train_model(
            cfg, data, model, on_epoch_end=records.log_epoch, resume=resume, on_snapshot=snapshot
        )
        records.log_metrics({"train_epochs_run": epochs - (resume.epochs if resume else 0)})
        if training.time_to_first_step_s is not None and not parent_run_id:
            # Start-up as the user waits for it (a sweep's jobs share their process).
            records.log_metrics({"time_to_first_step_s": training.time_to_first_step_s})
        model_uri = records.log_keras_model(model, data.test_images[:2])
        cache.set_model_uri(cache_key, epochs, model_uri)
        return training


def _resume_point(
    cfg: DictConfig, cache: ModelCache, cache_key: str, model
) -> tuple[Resume, str] | None:
    """The longest good cached snapshot of this training with fewer epochs (verified, its
    state and weights read), loaded into ``model``, and the run that trained it; or None
    (train from the start)."""
    drawing = random_layers(model)
    for prefix in cache.prefixes(cache_key, below=int(cfg.train.epochs)):
        if drawing:
            log.info(
                "training from the start, not from the %d-epoch snapshot: %s draw random "
                "numbers while training, which a snapshot cannot hold",
                prefix.epochs,
                ", ".join(drawing),
            )
            return None
        state = prefix.state()
        # A file that fails to load leaves the model as it was: the next shorter one is tried.
        if state is not None and _load_weights(model, prefix.weights):
            return Resume(prefix.epochs, prefix.training, state), prefix.trained_by_run
    return None


def headline_scores(scores: dict[str, float]) -> str:
    """`` · AOPC 0.412 · MPRT 0.731 …``: the scores the registry marks as headline, of those
    the run computed."""
    from src.scores import SCORES

    return "".join(
        f" · {metric.short} {scores[metric.name]:.3f}"
        for score in SCORES.values()
        for metric in score.metrics
        if metric.headline and metric.name in scores
    )


def _load_weights(model, weights) -> bool:
    """Load ``weights`` into ``model`` (Keras's HDF5 loader reads every layer before it sets
    any: a bad file leaves the model as it was), or say why not."""
    try:
        model.load_weights(str(weights))
    except Exception as error:  # noqa: BLE001 - h5py/Keras raise many kinds on a bad file
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line
        log.warning(
            "warning: cached model %s cannot be loaded (%s): training again", weights, reason
        )
        return False
    return True


def log_evaluation(cfg: DictConfig, name: str, data: Dataset, evaluation: Evaluation) -> None:
    from src.scores import SCORES

    records.log_metrics({f"eval_{name}": value for name, value in evaluation.scores.items()})
    records.log_metrics(
        {f"score_time_{name}_s": seconds for name, seconds in evaluation.seconds.items()}
    )
    # Per image, for the verdict's paired tests: image i is test image i.
    records.log_arrays("scores.npz", **evaluation.per_image)
    for line in evaluation.warnings:
        log.warning("warning: %s", line)
    first_steps = {curve.name: curve.first_step for curve in curves(SCORES)}
    for name, values in evaluation.curves.items():
        records.log_curve(f"eval_{name}", values, first_step=first_steps.get(name, 0))
    title = f"{name} on {cfg.dataset.name}"
    if evaluation.perturbation_curve is not None:
        records.log_figure(
            perturbation_figure(
                evaluation.perturbation_curve,
                evaluation.random_curve,
                title,
                evaluation.lerf_curve,
            ),
            "figures/perturbation.png",
        )
    if evaluation.randomisation_curve is not None:
        records.log_figure(
            randomisation_figure(
                evaluation.randomised_layers,
                evaluation.randomisation_curve,
                evaluation.randomisation_examples,
                title,
                cfg.analyzer.display,
                evaluation.blank_curve,
                row_labels=[
                    f"test image {index}\nexplains {data.class_names[int(explained)]}"
                    for index, explained in enumerate(evaluation.randomisation_classes)
                ],
            ),
            "figures/randomisation.png",
        )


def memory_mb() -> dict[str, float]:
    """The process's peak and (on Linux) current resident memory, in MB."""
    memory = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    statm = Path("/proc/self/statm")
    if statm.exists():
        memory["rss_mb"] = int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return memory


def log_outcome(
    cfg: DictConfig,
    name: str,
    data: Dataset,
    training: TrainingResult,
    explained: Explained,
    kept: ModelOnly | None = None,
) -> None:
    explanation = explained.explanation
    images = data.test_images[explained.indices]
    labels = data.test_labels[explained.indices]
    # Where the planted marker is (experiment=shortcut): outlined on the heatmaps, and kept.
    masks = None if data.test_masks is None else data.test_masks[explained.indices]
    extra = {} if masks is None else {"masks": masks}
    records.log_metrics(
        {
            "test_loss": training.test_loss,
            "test_accuracy": training.test_accuracy,
            "train_time_s": training.train_time_s,
            "analyzer_build_time_s": explanation.build_time_s,
            "analysis_time_s": explanation.analysis_time_s,
            "analysis_images_per_s": explanation.images_per_second,
        }
    )
    if training.history:  # none for a model trained elsewhere
        # The model's figure, the same for every analyzer: drawn once per model (~0.4 s).
        def drawn() -> np.ndarray:
            png = figure_png(training_figure(training.history), dpi="figure")
            return np.frombuffer(png, dtype=np.uint8)

        png = kept("figure training.png", drawn) if kept else drawn()
        records.log_png(png.tobytes(), "figures/training.png")
    figure = heatmap_figure(
        images,
        explanation.heatmaps,
        labels,
        explained.predictions,
        list(data.class_names),
        title=f"{name} on {cfg.dataset.name}",
        display=cfg.analyzer.display,
        masks=masks,
        explained=explanation.explained_classes,
        # What a person looks at is bounded, whatever explain.n_images (heatmaps.npz: all).
        max_images=cfg.report.grid_images,
    )
    analyzer = names.mlflow_name(cfg.analyzer.name, kind="file")  # a name: any text
    records.log_figure(figure, f"figures/heatmaps_{analyzer}.png")
    # The heatmaps as an MLflow image at step = epochs trained, so the chart view puts the
    # runs' heatmaps side by side (and slides over training lengths).
    trained_epochs = cfg.train.epochs if training.history else 0
    strip = heatmap_strip(
        images, explanation.heatmaps, cfg.analyzer.display, max_images=cfg.report.grid_images
    )
    records.log_image("heatmaps", strip, step=trained_epochs)
    records.log_arrays(
        "heatmaps.npz",
        indices=explained.indices,
        images=images,
        labels=labels,
        predictions=explained.predictions,
        explained_classes=explanation.explained_classes,
        heatmaps=explanation.heatmaps,
        class_names=np.array(data.class_names),
        **extra,
    )
