"""The registry of explanation-quality scores: one place to add a score.

A score is a class registered by name (:func:`register`) that says what it needs of the run
(:data:`NEEDS`), which metrics it logs (each with its better direction, what it measures and
its reference) and how it computes them from a :class:`Context`. ``evaluate.scores.<name>``
switches it on or off, ``evaluate.<name>`` holds its settings; the run
(:mod:`src.scores.evaluation`), the verdict, the comparison table, the figures and the
score table of docs/scores.md (``python -m src.scores``) all read this registry.

No TensorFlow here. The scores themselves are defined in the family modules of
:mod:`src.scores`, which register them as they are imported; the package imports them all and
exports the full registry as ``src.scores.SCORES``, where readers take it from (this module
never imports the scores, so there is no cycle).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from src.common import signals

# What a score can ask of the run.
NEEDS = {
    "heatmaps": "the analyzer's maps of the scored images",
    "model": "the trained model's predictions (or its weights)",
    "explain": "the run's explainer, called again on other inputs, classes or weights",
    "masks": "ground-truth masks of what the model looks at (experiment=shortcut)",
}
# Independent random streams of one run's scoring, each seeded by (seed, stream).
PERTURBATION_NOISE, RANDOM_ORDER, LAYER_SEEDS, OFF_CLASSES = 1, 2, 3, 4
SUBSETS, IMPUTATION_NOISE, SENSITIVITY_NOISE, LIPSCHITZ_NOISE = 5, 6, 8, 9
TIE_BREAK = 10
ROAR_TIES = 12  # (11 is the meta-evaluation's: src/scores/meta.py)

# (images, classes, what the progress bar says) -> heatmaps
Explain = Callable[[np.ndarray, np.ndarray, str], np.ndarray]
ModelOnly = Callable[[str, Callable[[], np.ndarray]], np.ndarray]


def generator(seed: int, stream: int) -> np.random.Generator:
    """The random numbers of one stream of a run's scoring: never NumPy's global state, which
    training advances and a reused model does not."""
    return np.random.default_rng([seed, stream])


class Better(Enum):
    """Which way a metric is better."""

    HIGHER = "higher"
    LOWER = "lower"
    NEITHER = "—"  # a count or a share, read alongside the others


@dataclass(frozen=True)
class Metric:
    """One number a score logs as ``eval_<name>`` (and keeps per image in ``scores.npz``)."""

    name: str
    what: str  # what it measures, for the table of docs/scores.md
    better: Better
    reference: str = ""
    # In the verdict (with its baselines) if set: the criterion's name and column heading.
    criterion: str = ""
    short: str = ""
    headline: bool = False  # named in a run's summary line
    # A map that goes blank passes this criterion without explaining anything (Binder et al.
    # 2023): the answer sets it aside for an analyzer whose maps go blank.
    blank_passes: bool = False
    # The values it can take, where bounded: the report's charts span them, so that a 0.005
    # difference does not fill half a chart.
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.better, Better):
            raise TypeError(f"metric {self.name}: better must be a Better, not {self.better!r}")

    @property
    def higher_is_better(self) -> bool | None:
        """True or False from ``better``; None for a count or share read alongside."""
        return {Better.HIGHER: True, Better.LOWER: False}.get(self.better)


@dataclass(frozen=True)
class Curve:
    """A per-step metric (``eval_<name>``, step = ``first_step`` + index) the report draws: in a
    panel of its own, or, as ``baseline_of`` another curve, gray and dashed in that one's."""

    name: str
    what: str
    first_step: int = 0
    baseline_of: str = ""
    label: str = ""  # a baseline's name in the panel's legend


@dataclass(frozen=True)
class Panel:
    """A panel of the report's curves: the metric, what a step is, the first step, and the
    baseline drawn in it (the metric of the curve that is its ``baseline_of``, or "")."""

    metric: str
    what: str
    first_step: int
    baseline: str = ""
    baseline_label: str = ""


def panels(of: Sequence[Curve], prefix: str = "eval_") -> tuple[Panel, ...]:
    """The panels of curves ``of``: one per curve that is not another's baseline."""
    baselines = {curve.baseline_of: curve for curve in of if curve.baseline_of}
    return tuple(
        Panel(
            f"{prefix}{curve.name}",
            curve.what,
            curve.first_step,
            f"{prefix}{baselines[curve.name].name}" if curve.name in baselines else "",
            baselines[curve.name].label if curve.name in baselines else "",
        )
        for curve in of
        if not curve.baseline_of
    )


@dataclass
class Context:
    """What a score may use. ``images`` are the first ``evaluate.n_images`` test images;
    ``classes`` the classes their maps explain (the true labels or the predictions)."""

    cfg: Any  # the evaluate config
    model: Any  # the trained Keras model (softmax, sigmoid or logits output)
    images: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    logits: np.ndarray
    heatmaps: np.ndarray
    explain: Explain
    method: str  # analyzer.method
    seed: int
    masks: np.ndarray | None = None  # (N, H, W) bool, where the ground truth is
    # (name, compute) -> compute()'s array, kept with the model for every analyzer's run (the
    # model cache); None: computed each time.
    model_only: ModelOnly | None = None

    def of_model(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Work that depends on the model alone (not the analyzer): done once per model.
        ``name`` says everything else it depends on."""
        if self.model_only is None:
            return compute()
        return self.model_only(name, compute)

    @functools.cached_property
    def logit_model(self):
        """The model's logits (its softmax or sigmoid left out), built once (each build adds
        to the graph)."""
        from src.models.canonical import explainable

        return explainable(self.model)

    def replaced(self, **changes: Any) -> Context:
        """A copy with ``changes`` (other maps, images, explainer), sharing the logit model
        already built (each build adds to the graph)."""
        copy = dataclasses.replace(self, **changes)
        if "logit_model" in self.__dict__:
            copy.logit_model = self.logit_model
        return copy

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        return self.logit_model.predict(
            images, batch_size=max(self.cfg.batch_size, 1000), verbose=0
        )

    def predict_classes(self, images: np.ndarray) -> np.ndarray:
        predictions = self.model.predict(
            images, batch_size=max(self.cfg.batch_size, 1000), verbose=0
        )
        return predictions.argmax(axis=1)


@dataclass
class Evaluation:
    scores: dict[str, float] = field(default_factory=dict)  # logged as eval_<name>
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # score -> one per image
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # eval_<name> per step
    seconds: dict[str, float] = field(default_factory=dict)  # score -> its computing time
    randomised_layers: list[str] = field(default_factory=list)  # top first
    randomisation_examples: list[np.ndarray] = field(default_factory=list)  # heatmaps per step
    # The classes those examples (the first test images) explain.
    randomisation_classes: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)  # lines the run prints and tags

    # The curves the figures draw, by what they are.
    @property
    def perturbation_curve(self) -> np.ndarray | None:
        """Accuracy after 0..steps regions perturbed, most relevant first."""
        return self.curves.get("perturbation_accuracy")

    @property
    def lerf_curve(self) -> np.ndarray | None:
        return self.curves.get("perturbation_accuracy_lerf")

    @property
    def random_curve(self) -> np.ndarray | None:
        return self.curves.get("perturbation_accuracy_random")

    @property
    def randomisation_curve(self) -> np.ndarray | None:
        """MPRT's mean similarity after each cascading step."""
        return self.curves.get("mprt_curve")

    @property
    def blank_curve(self) -> np.ndarray | None:
        return self.curves.get("mprt_blank_fraction")

    def record(self, name: str, per_image: np.ndarray) -> None:
        """A score kept per image, and its mean over the images where it is defined (not
        NaN) as the run's metric; the verdict counts the undefined ones it leaves out."""
        values = np.asarray(per_image, dtype=np.float64)
        self.per_image[name] = values
        defined = values[~np.isnan(values)]
        if len(defined):
            self.scores[name] = float(defined.mean())


class Score:
    """A score: subclass, set the class attributes, write :meth:`compute`, and register it."""

    name: ClassVar[str]  # evaluate.scores.<name> switches it; evaluate.<name> configures it
    needs: ClassVar[frozenset[str]]  # keys of NEEDS
    metrics: ClassVar[tuple[Metric, ...]]
    curves: ClassVar[tuple[Curve, ...]] = ()
    default: ClassVar[bool] = True  # on in conf/evaluate/default.yaml (a test keeps them equal)
    # Whether its criteria are evidence that maps explain the model (the answer counts them),
    # or a property of maps read alongside (a sparse or a stable map can still be unfaithful).
    evidence: ClassVar[bool] = True
    # A map of fresh noise passes it by construction (it changes with anything): the answer
    # reads its criteria against the baselines that ignore the model, not against noise.
    noise_passes: ClassVar[bool] = False
    # The controls (src/scores/controls.py) its criteria must not be fooled by.
    controls: ClassVar[frozenset[str]] = frozenset()
    # The analyzers it applies to, by the prefix of analyzer.method (all if empty).
    methods_key: ClassVar[str] = ""

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        raise NotImplementedError

    def applies_to(self, method: str, settings: Any) -> bool:
        if not self.methods_key:
            return True
        return method.startswith(tuple(settings[self.methods_key]))


_REGISTRY: dict[str, Score] = {}


def register(cls: type[Score]) -> type[Score]:
    """Class decorator: add a score to the registry (in definition order: the order of the
    verdict's columns and the table of docs/scores.md)."""
    if cls.name in _REGISTRY:
        raise ValueError(f"score {cls.name!r} is registered twice")
    unknown = set(cls.needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"score {cls.name!r} needs unknown inputs {sorted(unknown)}")
    _REGISTRY[cls.name] = cls()
    return cls


def registered() -> Mapping[str, Score]:
    """The registry, by name in registration order: a live read-only view, so a score
    registered later (a user's own module) is seen by every reader."""
    return MappingProxyType(_REGISTRY)


def criteria(registry: Mapping[str, Score]) -> list[Metric]:
    """The metrics the verdict judges, in the registry's order."""
    return [m for score in registry.values() for m in score.metrics if m.criterion]


def curves(registry: Mapping[str, Score]) -> list[Curve]:
    return [curve for score in registry.values() for curve in score.curves]


def criterion_values(scores: Mapping[str, Score], evaluation: Evaluation) -> dict[str, np.ndarray]:
    """The per-image values ``evaluation`` recorded of the criteria of ``scores``."""
    return {
        metric.name: evaluation.per_image[metric.name]
        for score in scores.values()
        for metric in score.metrics
        if metric.criterion and metric.name in evaluation.per_image
    }


def run_scores(
    registry: Mapping[str, Score],
    enabled: Any,
    settings: Any,
    context: Context,
    log: Callable[[str], None],
) -> Evaluation:
    """Compute every enabled score that applies to the analyzer, in the registry's order,
    timing each."""
    result = Evaluation()
    for name, score in registry.items():
        signals.checkpoint()  # a stop a finaliser swallowed (src/common/signals.py)
        if not enabled.get(name) or not score.applies_to(context.method, settings.get(name)):
            continue
        if "masks" in score.needs and context.masks is None:
            continue
        started = time.perf_counter()
        score.compute(context, settings.get(name), result)
        result.seconds[name] = time.perf_counter() - started
        log(f"{name}: {result.seconds[name]:.1f} s")
    return result


def markdown_table(registry: Mapping[str, Score]) -> str:
    """The table of scores in docs/scores.md (``python -m src.scores``)."""
    lines = [
        "| score (`evaluate.scores.…`) | metric | what it measures | better | reference |",
        "|---|---|---|---|---|",
    ]
    for score in registry.values():
        state = "on" if score.default else "off"
        for index, m in enumerate(score.metrics):
            first = f"`{score.name}` ({state})" if index == 0 else ""
            better = m.better.value
            lines.append(f"| {first} | `eval_{m.name}` | {m.what} | {better} | {m.reference} |")
        for curve in score.curves:
            lines.append(f"| | `eval_{curve.name}` (per step) | {curve.what} | | |")
    return "\n".join(lines)
