"""Validation of a composed run config, so bad input fails in one line before any run is
created (the command line calls :func:`validate` for every job: :mod:`src.config.cli`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from omegaconf import DictConfig, OmegaConf

from src.common.errors import UserError
from src.data import BUILT_IN_28X28, IMAGE_SIZE, READ_BY_PIPELINE

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl")
NEURON_SELECTIONS = ("predicted", "true_label")
DISPLAYS = ("signed", "absolute")
ANALYZER_COUNTS = ("augment_by_n", "steps")  # SmoothGrad's samples, Integrated Gradients' steps
MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit
PERTURBATIONS = ("gaussian", "zeros", "mean", "invert")  # innvestigate.tools.perturbate's


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{key} must be a positive integer, got {value!r}")


def _optional_positive_int(cfg: DictConfig, key: str) -> None:
    if OmegaConf.select(cfg, key) is not None:
        _positive_int(cfg, key)


def _one_of(cfg: DictConfig, key: str, choices: Iterable[str]) -> None:
    value = OmegaConf.select(cfg, key)
    choices = tuple(choices)
    if value not in choices:
        raise UserError(f"unknown {key} {value!r}; choose one of: {', '.join(choices)}")


# The loaders whose test images come with ground-truth masks.
MASKED_DATA = ("src.data.load_xai_tris",)
TRAINED_ELSEWHERE = ("src.model.load_keras_file", "src.model.load_run_model")


def _share(value: object) -> bool:
    """A percentage of pixels a retraining can remove: a number in [0, 100)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value < 100


def validate_roar(cfg: DictConfig) -> None:
    """``roar.fraction`` and ``roar.fractions``: percentages in [0, 100); a retraining needs a
    model the project builds, as it trains a fresh one of the same kind."""
    roar = cfg.get("roar")
    if roar is None:
        return
    fraction = roar.get("fraction", 0)
    if not _share(fraction):
        raise UserError(
            f"roar.fraction must be a percentage of pixels in [0, 100), got {fraction!r}"
        )
    fractions = roar.get("fractions", [])
    if not OmegaConf.is_list(fractions) or not all(_share(f) and f > 0 for f in fractions):
        given = OmegaConf.to_container(fractions) if OmegaConf.is_config(fractions) else fractions
        raise UserError(f"roar.fractions must be a list of percentages in (0, 100), got {given!r}")
    if fraction > 0 and cfg.model.get("_target_") in TRAINED_ELSEWHERE:
        raise UserError(
            f"roar.fraction={fraction}: remove-and-retrain trains a fresh model of the same "
            "kind, which a model trained elsewhere (model=keras_file, model=run) is not; choose "
            "a model the project builds: model=cnn, lenet, mlp or resnet"
        )


def validate(cfg: DictConfig) -> None:
    """Raise :class:`UserError` for the first invalid value in a composed run config."""
    validate_dataset(cfg)
    validate_shortcut(cfg)
    _optional_positive_int(cfg, "dataset.train_size")
    _optional_positive_int(cfg, "dataset.test_size")
    _positive_int(cfg, "train.epochs")
    _positive_int(cfg, "train.batch_size")
    _one_of(cfg, "train.optimizer", OPTIMIZERS)
    learning_rate = cfg.train.learning_rate
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not (learning_rate > 0)
    ):
        raise UserError(f"train.learning_rate must be a positive number, got {learning_rate!r}")
    _positive_int(cfg, "explain.n_images")
    _positive_int(cfg, "explain.batch_size")
    _one_of(cfg, "analyzer.neuron_selection", NEURON_SELECTIONS)
    _one_of(cfg, "analyzer.display", DISPLAYS)
    _positive_int(cfg, "evaluate.n_images")
    _positive_int(cfg, "evaluate.batch_size")
    validate_scores(cfg)
    validate_roar(cfg)
    if cfg.dataset.get("_target_") in BUILT_IN_28X28:
        names = cfg.dataset.get("class_names")
        validate_for_images(
            cfg,
            (IMAGE_SIZE, IMAGE_SIZE),
            len(names) if names else 10,
            cfg.dataset.get("test_size"),
        )
    # iNNvestigate takes any value for these and fails only while explaining, in the run.
    for key in ANALYZER_COUNTS:
        if key in cfg.analyzer.params:
            _positive_int(cfg, f"analyzer.params.{key}")
    _optional_positive_int(cfg, "threads")
    name = cfg.tracking.experiment_name
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"tracking.experiment_name must be a non-empty name, got {name!r}")
    port = cfg.tracking.ui_port
    if isinstance(port, str) and port.isdigit():  # from the environment (make's PORT)
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UserError(f"tracking.ui_port must be a port number from 1 to 65535, got {port!r}")
    _positive_int(cfg, "report.grid_images")
    seed = cfg.seed
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    validate_model(cfg)


def _number(cfg: DictConfig, key: str, low: float, high: float | None = None) -> None:
    """A number >= ``low`` (and <= ``high``)."""
    value = OmegaConf.select(cfg, key)
    within = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and value >= low
        and (high is None or value <= high)
    )
    if not within:
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise UserError(f"{key} must be a number {bounds}, got {value!r}")


def check_score_name(name: str) -> None:
    """A registered score's name, or UserError naming the scores there are."""
    from src.scores import SCORES

    if name not in SCORES:
        raise UserError(f"unknown score evaluate.scores.{name}; choose from: {', '.join(SCORES)}")


def validate_scores(cfg: DictConfig) -> None:
    """``evaluate.scores`` names registered scores (true/false each), and the settings of the
    ones switched on are usable."""
    from src.scores import SCORES

    switches = cfg.evaluate.scores
    for name, on in switches.items():
        check_score_name(name)
        if not isinstance(on, bool):
            raise UserError(f"evaluate.scores.{name} must be true or false, got {on!r}")
    enabled = {name for name, on in switches.items() if on}
    for name in sorted(enabled):
        has_masks = cfg.dataset.get("shortcut") is not None or cfg.dataset.get("_target_") in (
            MASKED_DATA
        )
        if "masks" in SCORES[name].needs and not has_masks:
            raise UserError(
                f"evaluate.scores.{name} needs ground-truth masks: run it with experiment=shortcut "
                "(a planted marker) or experiment=xai_tris (tetrominoes), or switch it off"
            )
    if "perturbation" in enabled:
        _check_perturbation(cfg)
    if "faithfulness_correlation" in enabled:
        _check_faithfulness_correlation(cfg)
    if "road" in enabled:
        _check_road(cfg)
    if "randomisation" in enabled:
        _positive_int(cfg, "evaluate.randomisation.n_examples")
        _positive_int(cfg, "evaluate.randomisation.draws")
        _positive_int(cfg, "evaluate.randomisation.emprt_bins")
    if "robustness" in enabled:
        _check_robustness(cfg)
    _check_controls(cfg)


def _check_controls(cfg: DictConfig) -> None:
    """``evaluate.controls``: known names, a positive blur."""
    from src.scores.controls import CONTROLS

    controls = cfg.evaluate.get("controls")
    if controls is None:
        return
    for name in controls.names:
        if name not in CONTROLS:
            raise UserError(
                f"evaluate.controls.names: no control {name!r}; choose from: "
                f"{', '.join(CONTROLS)} (or [] for none)"
            )
    _number(cfg, "evaluate.controls.blur_sigma", 0.0)
    if float(controls.blur_sigma) <= 0:
        raise UserError(f"evaluate.controls.blur_sigma must be > 0, got {controls.blur_sigma}")


def _check_perturbation(cfg: DictConfig) -> None:
    """``evaluate.perturbation``: its steps, function, direction and region shape (whether the
    regions fit the images is :func:`validate_for_images`'s, which knows their size)."""
    _positive_int(cfg, "evaluate.perturbation.steps")
    _one_of(cfg, "evaluate.perturbation.function", PERTURBATIONS)
    if not isinstance(cfg.evaluate.perturbation.lerf, bool):
        raise UserError(
            "evaluate.perturbation.lerf must be true or false, got "
            f"{cfg.evaluate.perturbation.lerf!r}"
        )
    shape = cfg.evaluate.perturbation.region_shape
    if not OmegaConf.is_list(shape) or len(shape) != 2:
        shown = list(shape) if OmegaConf.is_list(shape) else shape
        raise UserError(
            f"evaluate.perturbation.region_shape must be [height, width], got {shown!r}"
        )
    _positive_int(cfg, "evaluate.perturbation.region_shape.0")
    _positive_int(cfg, "evaluate.perturbation.region_shape.1")


def _check_faithfulness_correlation(cfg: DictConfig) -> None:
    """``evaluate.faithfulness_correlation``: a subset size, and at least two runs to
    correlate."""
    _positive_int(cfg, "evaluate.faithfulness_correlation.subset_size")
    runs = cfg.evaluate.faithfulness_correlation.runs
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise UserError(
            "evaluate.faithfulness_correlation.runs must be an integer >= 2 (a correlation "
            f"needs two points), got {runs!r}"
        )


def _check_road(cfg: DictConfig) -> None:
    """``evaluate.road``: percentages strictly between 0 and 100, and a noise >= 0."""
    percentages = cfg.evaluate.road.percentages
    if not OmegaConf.is_list(percentages) or not percentages:
        raise UserError(
            f"evaluate.road.percentages must be a list of percentages, got {percentages!r}"
        )
    for value in percentages:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 100:
            raise UserError(
                "evaluate.road.percentages must be percentages above 0 and below 100 (some "
                f"pixels must stay to impute from), got {value!r}"
            )
    _number(cfg, "evaluate.road.noise", 0)


def _check_robustness(cfg: DictConfig) -> None:
    """``evaluate.robustness``: positive counts and radii, and no more images than are
    scored (its images are the first of those)."""
    for key in ("n_images", "samples"):
        _positive_int(cfg, f"evaluate.robustness.{key}")
    for key in ("radius", "lipschitz_std"):
        value = cfg.evaluate.robustness[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise UserError(f"evaluate.robustness.{key} must be a positive number, got {value!r}")
    if cfg.evaluate.robustness.n_images > cfg.evaluate.n_images:
        raise UserError(
            f"evaluate.robustness.n_images is {cfg.evaluate.robustness.n_images}, more "
            f"than the {cfg.evaluate.n_images} scored images (evaluate.n_images)"
        )


def validate_shortcut(cfg: DictConfig) -> None:
    """``dataset.shortcut``'s values, where they do not depend on the images."""
    if cfg.dataset.get("shortcut") is None:
        return
    _positive_int(cfg, "dataset.shortcut.size")
    _number(cfg, "dataset.shortcut.share", 0, 1)
    value = cfg.dataset.shortcut.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"dataset.shortcut.value must be a number, got {value!r}")
    seed = cfg.dataset.shortcut.seed
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"dataset.shortcut.seed must be an integer from 0 to {MAX_SEED}")
    positions = cfg.dataset.shortcut.positions
    if positions is not None and (
        not OmegaConf.is_list(positions)
        or not all(OmegaConf.is_list(p) and len(p) == 2 for p in positions)
    ):
        raise UserError(
            "dataset.shortcut.positions must be null or a list of [row, column], one per class"
        )


def validate_for_images(
    cfg: DictConfig,
    image_size: Sequence[int],
    num_classes: int | None = None,
    test_images: int | None = None,
) -> None:
    """What depends on the images' size, their classes and how many test images there are:
    the perturbation's regions fit, and there are as many as it perturbs; the planted marker
    fits; robustness has its images. Checked before any run for the built-in 28x28 datasets,
    and by every run once its data is loaded (before the run is created)."""
    rows, columns = (int(n) for n in image_size[:2])
    if cfg.evaluate.scores.get("perturbation"):
        height, width = cfg.evaluate.perturbation.region_shape
        if height > rows or width > columns:
            raise UserError(
                f"evaluate.perturbation.region_shape {[height, width]} does not fit in the "
                f"{rows}x{columns} images"
            )
        regions = -(-rows // height) * -(-columns // width)
        if cfg.evaluate.perturbation.steps > regions:
            raise UserError(
                f"evaluate.perturbation.steps is {cfg.evaluate.perturbation.steps}, but the "
                f"images have only {regions} regions of {height}x{width} to perturb"
            )
    if cfg.dataset.get("shortcut") is not None and num_classes is not None:
        from src.data.shortcut import from_config

        from_config(
            OmegaConf.to_container(cfg.dataset.shortcut, resolve=True), image_size, num_classes
        )
    robustness = cfg.evaluate.robustness.n_images
    if (
        cfg.evaluate.scores.get("robustness")
        and test_images is not None
        and robustness > test_images
    ):
        raise UserError(
            f"evaluate.robustness.n_images is {robustness}, but the data has only "
            f"{test_images} test images"
        )


def validate_dataset(cfg: DictConfig) -> None:
    """The dataset config's keys reach its loader, or the pipeline reads them."""
    from src.common.builders import check_arguments

    check_arguments(
        "dataset",
        OmegaConf.to_container(cfg.dataset, resolve=True),
        read_by_pipeline=READ_BY_PIPELINE,
    )
    name = cfg.dataset.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"dataset.name must be a non-empty name, got {name!r}")
    names = cfg.dataset.get("class_names")
    if names is not None and (not OmegaConf.is_list(names) or len(names) < 2):
        raise UserError("dataset.class_names must be a list of at least two names, or null")


def validate_model(cfg: DictConfig) -> None:
    """The model config's keys reach its builder (:func:`src.models.zoo.check_model_config`), and
    the built-in builders' sizes are positive."""
    from src.models.zoo import check_model_config

    check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    for index in range(len(cfg.model.get("conv_layers") or [])):
        _positive_int(cfg, f"model.conv_layers.{index}.filters")
        _positive_int(cfg, f"model.conv_layers.{index}.kernel_size")
        _optional_positive_int(cfg, f"model.conv_layers.{index}.pool")
        _optional_positive_int(cfg, f"model.conv_layers.{index}.stride")
    for key in ("dense_units", "hidden_units"):
        for index in range(len(cfg.model.get(key) or [])):
            _positive_int(cfg, f"model.{key}.{index}")
