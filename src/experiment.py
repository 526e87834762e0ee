"""One run: config -> data -> model -> train (or reuse) -> explain -> figures -> MLflow."""

from __future__ import annotations

import functools
import logging
import os
import resource
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.common import names, sweep_context
from src.common.internals import random_layers
from src.common.tf_runtime import intra_op_threads, thread_policy
from src.config.checks import validate, validate_for_images
from src.data import Dataset
from src.data.shared import load_shared
from src.explain.configured import check_analyzer, explain_model
from src.models.cache import (
    ModelCache,
    accuracy_mismatch,
    entry_key,
    fingerprint,
    model_fingerprint,
)
from src.models.canonical import output_kind
from src.models.configured import build_network, train_model
from src.models.training import (
    Resume,
    TrainingResult,
    TrainingState,
    test_only,
    weights_image,
)
from src.models.zoo import Pretrained
from src.report.evaluation import headline_scores, log_evaluation
from src.report.outcome import Shown, log_outcome
from src.scores.configured import (
    evaluate_model,
    evaluation_enabled,
    model_only,
    retrained,
    retraining,
    shortcut_reliance,
)
from src.tracking import records
from src.tracking.lifecycle import OpeningRun, opening_run
from src.tracking.store import check_folders, prepare, resolve_store, use

log = logging.getLogger(__name__)


def run_name(cfg: DictConfig, overrides: Sequence[str] = ()) -> str:
    """``gradient · seed 1 · 3 ep``, with the settings the command line gave that set the run
    apart (in a sweep, the swept ones: ``lrp_epsilon ε=0.01 · seed 0 · 5 ep``); for a model
    trained elsewhere, where it is from instead of the training length: ``… · model.keras``,
    ``… · run 1a2b3c4d``."""
    sweep = sweep_context.current()
    settings = names.settings_of(overrides, None if sweep is None else sweep.swept_keys)
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
    """The run's data, read once per process (the jobs of a sweep that share a process load
    it once: about 0.6 s a job on Fashion-MNIST), read-only, and already on its way if the
    entry point started it (:func:`src.data.shared.start_loading`)."""
    return load_shared(OmegaConf.to_container(cfg.dataset, resolve=True))


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

    In a sweep (:func:`src.common.sweep_context.current`) the run is a child of the sweep's
    parent run.
    """
    validate(cfg)
    store = resolve_store(cfg.tracking.dir, cfg.tracking.uri)
    sweep = sweep_context.current()
    parent_run_id = sweep.parent_run_id if sweep else None
    # A sweep's jobs join their parent's experiment (one per dataset, or xai-lab for several).
    experiment = sweep.experiment if sweep else str(cfg.tracking.experiment_name)
    if store.database is None:  # a tracking server: one quick call, an unreachable one fails now
        experiment_id: str | Callable[[], str] = prepare(store, experiment)
    else:  # the local store: its folders now, MLflow's set-up as the training starts
        check_folders(store)
        use(store)  # model=run reads the earlier run's model from it before the run opens
        experiment_id = functools.partial(prepare, store, experiment)
    data, model, pretrained = checked_inputs(cfg)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    training_key, model_key = _fingerprints(cfg, resolved, data, pretrained)
    tags = _run_tags(cfg, data, model, pretrained, model_key)
    if sweep:
        tags.update(
            {
                "sweep_id": sweep.sweep_id,
                "job_overrides": " ".join(sorted(job_overrides or [])),
            }
        )

    cache_key = "" if pretrained else entry_key(training_key, store.tracking_uri)
    name = run_name(cfg, job_overrides or [])
    # Created in the background, the run's first records with it, beside the first training
    # steps (src/tracking/lifecycle.py OpeningRun); a signal or a failure still ends it.
    first = functools.partial(_first_records, cfg, resolved, data)
    opening = OpeningRun(experiment_id, name, tags, parent_run_id, first=first)
    with opening_run(opening) as run:
        training, headline = _run_in_store(
            cfg, name, data, model, pretrained, cache_key, run, parent_run_id
        )
    log.info(
        "%s: test accuracy %.4f%s · run %s · experiment %r · browse: %s",
        name,
        training.test_accuracy,
        headline,
        run.run_id,
        experiment,
        store.run_link(run.experiment_id, run.run_id, cfg.tracking.ui_host, cfg.tracking.ui_port),
    )
    return training.test_accuracy


def _first_records(cfg: DictConfig, resolved: dict, data: Dataset) -> None:
    """What a run logs first: its config, and what reproducing it needs besides (the data
    files, the datasets, the environment)."""
    records.log_config(resolved)
    records.log_data_files(data.files)
    records.log_datasets(cfg.dataset.name, data)
    records.log_environment()


def _fingerprints(
    cfg: DictConfig, resolved: dict, data: Dataset, pretrained: Pretrained | None
) -> tuple[str | None, str]:
    """The training's fingerprint (None for a model trained elsewhere) and the model's."""
    if pretrained:
        return None, pretrained.fingerprint  # the weights are the file's (or the run's)
    training_key = fingerprint(resolved, data.checksum, intra_op_threads())
    return training_key, model_fingerprint(training_key, cfg.train.epochs)


def _run_tags(
    cfg: DictConfig, data: Dataset, model, pretrained: Pretrained | None, model_key: str
) -> dict[str, str]:
    """The run's tags: what it ran, where its data and model came from."""
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
            **thread_policy(),  # TensorFlow's, BLAS's and OpenMP's threads (one policy)
        }
    )
    return tags


def _run_in_store(
    cfg: DictConfig,
    name: str,
    data: Dataset,
    model,
    pretrained: Pretrained | None,
    cache_key: str,
    run: OpeningRun,
    parent_run_id: str | None,
) -> tuple[TrainingResult, str]:
    """What the open run does and logs: the training (or the model trained elsewhere tested),
    the explanation, the scores; the training's result and the headline of the run's summary
    line. Its first records are the opening run's."""
    if pretrained:
        training = test_only(model, data.test_images, data.test_labels, cfg.train.batch_size)
        run.wait()
        records.log_metrics({"train_epochs_run": 0})
        log.info("explaining the model of %s (no training)", pretrained.source)
    else:
        training = trained_or_reused(cfg, data, model, cache_key, run, name, parent_run_id)
    run_id = run.wait()
    if retraining(cfg):  # experiment=roar: the run's model orders the pixels; fresh ones score
        accuracies = retrained(cfg, data, model, cache_key, run_id)
        records.log_metrics(accuracies)
        records.log_metrics(memory_mb())
        headline = (
            f" · {cfg.roar.fraction:g}% removed: retrained accuracy "
            f"{accuracies['roar_accuracy']:.4f}, kept: {accuracies['kar_accuracy']:.4f}"
        )
        return training, headline
    explained = explain_model(cfg, data, model)
    show = shown(cfg, name)
    log_outcome(show, data, training, explained, model_only(cfg, cache_key))
    headline = ""
    if data.shortcut is not None:
        reliance = shortcut_reliance(data, model, training.test_accuracy, cfg.evaluate.batch_size)
        records.log_metrics(reliance)
        headline += (
            f" · marker moved: accuracy {reliance['shortcut_accuracy_moved']:.3f}, "
            f"{reliance['shortcut_follows_marker']:.0%} follow it"
        )
    if evaluation_enabled(cfg):
        evaluation = evaluate_model(cfg, data, model, cache_key)
        if cfg.evaluate.meta.enabled and sweep_context.current() is None:
            evaluation.warnings.append(
                "evaluate=meta: the meta-evaluation ranks analyzers against each other, so a "
                "sweep's verdict reads it (python -m src.train -m analyzer=gradient,"
                "input_t_gradient evaluate=meta); this run keeps its perturbed scores in "
                "scores.npz"
            )
        log_evaluation(evaluation, show.title, show.display, data.class_names)
        headline = headline_scores(evaluation.scores) + headline
        records.set_tags(thread_policy())  # scoring loads more libraries (Quantus's, POT's)
    records.log_metrics(memory_mb())
    return training, headline


def trained_or_reused(
    cfg: DictConfig,
    data: Dataset,
    model,
    cache_key: str,
    run: OpeningRun,
    name: str,
    parent_run_id: str | None,
) -> TrainingResult:
    """Train the model in the open run, or load it from the model cache if an earlier run
    trained it: the snapshot of this many epochs, or, failing that, the longest shorter one of
    the same training, trained on from there. While one job trains, the others that need the
    same training wait here. Logs ``train_epochs_run``, the epochs this run trained. The run
    is created as the training starts, and waited for at its first epoch's end."""
    cache = ModelCache(cfg.train.cache_dir)
    epochs = int(cfg.train.epochs)
    with cache.claim(cache_key, holder=f"run '{name}'"):
        cached = cache.load(cache_key, epochs) if cfg.train.reuse else None
        if cached is not None and _load_weights(model, cached.weights):
            run.wait()
            return _reused(cached, cache, cache_key, epochs, model, data, cfg.train.batch_size)
        resume, continued = None, None
        if cfg.train.reuse:
            continued = _resume_point(cache, cache_key, epochs, model)
        if continued is not None:
            resume, trained_by_run = continued
            run.wait()
            records.log_continued_training(resume.training.history, resume.epochs, trained_by_run)
            log.info(
                "continuing the training of run %s from epoch %d", trained_by_run, resume.epochs
            )

        def epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            run.wait()
            records.log_epoch(epoch, metrics)

        def snapshot(done: int, so_far: TrainingResult, state: TrainingState) -> None:
            cache.store(cache_key, done, weights_image(model), so_far, run.wait(), state=state)

        training = train_model(
            cfg,
            data,
            model,
            on_epoch_end=epoch_end,
            resume=resume,
            on_snapshot=snapshot,
            on_step=run.started,
        )
        run.wait()
        records.log_metrics({"train_epochs_run": epochs - (resume.epochs if resume else 0)})
        if training.time_to_first_step_s is not None and not parent_run_id:
            # Start-up as the user waits for it (a sweep's jobs share their process).
            records.log_metrics({"time_to_first_step_s": training.time_to_first_step_s})
        model_uri = records.log_keras_model(model, data.test_images[:2])
        cache.set_model_uri(cache_key, epochs, model_uri)
        return training


def _reused(
    cached, cache: ModelCache, cache_key: str, epochs: int, model, data: Dataset, batch_size: int
) -> TrainingResult:
    """The training of a cached model (its weights already in ``model``), logged as reused.

    Its test loss and accuracy are measured, as a trained model's are (test_only), not copied:
    an accuracy other than the recorded one is a warning and the run's tag
    ``model_accuracy_mismatch``."""
    tested = test_only(model, data.test_images, data.test_labels, batch_size)
    mismatch = accuracy_mismatch(
        cached.training.test_accuracy, tested.test_accuracy, len(data.test_labels)
    )
    if mismatch:
        log.warning(
            "warning: the model cached in %s gets another test accuracy than when it was "
            "trained: %s",
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


def _resume_point(
    cache: ModelCache, cache_key: str, epochs: int, model
) -> tuple[Resume, str] | None:
    """The longest good cached snapshot of this training with fewer epochs (verified, its
    state and weights read), loaded into ``model``, and the run that trained it; or None
    (train from the start). A model whose layers draw random numbers while training is always
    trained from the start: in graph mode they draw from stateful ops whose position a snapshot
    cannot hold."""
    drawing = random_layers(model)
    for prefix in cache.prefixes(cache_key, below=epochs):
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


def memory_mb() -> dict[str, float]:
    """The process's peak and (on Linux) current resident memory, in MB."""
    memory = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    statm = Path("/proc/self/statm")
    if statm.exists():
        memory["rss_mb"] = int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return memory


def shown(cfg: DictConfig, name: str) -> Shown:
    return Shown(
        title=f"{name} on {cfg.dataset.name}",
        analyzer=str(cfg.analyzer.name),
        display=str(cfg.analyzer.display),
        images=int(cfg.report.grid_images),
        epochs=int(cfg.train.epochs),
    )
