"""The verdict of a sweep: per criterion, each analyzer's score over images and seeds with an
interval, whether it beats each baseline the sweep ran, and the analyzers against each other.

- **Mean and interval**: the runs' ``eval_<score>`` (each a mean over the scored images)
  averaged over seeds, with the 95% percentile bootstrap interval over images × seeds
  (:mod:`src.report.judgement`; with one seed, over images only).
- **Beats a baseline**: a paired test over images: for every seed, image i of the analyzer's
  run is paired with image i of the baseline's run of the same seed and training length (the
  same test image, the same trained model); the one-sided Wilcoxon signed-rank test (scipy)
  over all pairs, in the score's better direction, at p < 0.05. "Beats every baseline" asks
  each test to pass at 0.05 (an intersection-union test, which needs no correction). Pairs
  where either score is undefined (eMPRT of a blank map) are left out, and counted in
  ``verdict.md``.
- **Best, tied best**: the analyzers (not the baselines) tested pair by pair
  (:func:`src.report.judgement.rank`: two-sided Wilcoxon, Holm over the pairs of a criterion);
  the top one is *best* only if it beats every other, else the ones it does not beat are
  *tied best* with it.
- **How far the judgement holds**: Kendall's τ between the criteria's rankings, the share of
  resamples each analyzer ranks top in, and the pairs a test would need to separate the top two
  where this sweep could not.

Pure pandas/scipy on values read from the store: no TensorFlow, no MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from src.report import judgement
from src.report.judgement import ALPHA, TIE, Ranking
from src.report.meta import SPACES, THRESHOLD, Draw, MetaScore, meta_consistency

# Above this share of maps gone blank under randomisation, the verdict says so: MPRT counts a
# blank map as completely changed, which is what makes such an analyzer look best there.
BLANK_NOTE = 0.1


@dataclass(frozen=True)
class Criterion:
    name: str  # what it judges
    score: str  # the run's metric is eval_<score>; scores.npz holds it per image
    higher_is_better: bool
    short: str  # column heading in the terminal
    # How the answer reads it (:class:`src.scores.registry.Score`, ``Metric``).
    evidence: bool = True
    noise_passes: bool = False
    blank_passes: bool = False
    controls: tuple[str, ...] = ()  # the controls it must not be fooled by


def registry_criteria() -> tuple[Criterion, ...]:
    """The verdict's criteria, in the order they are shown: every metric of the score
    registry (:mod:`src.scores`) that names a criterion."""
    from src.scores import SCORES

    return tuple(
        Criterion(
            m.criterion,
            m.name,
            bool(m.higher_is_better),
            m.short,
            score.evidence,
            score.noise_passes,
            m.blank_passes,
            tuple(sorted(score.controls)),
        )
        for score in SCORES.values()
        for m in score.metrics
        if m.criterion
    )


@dataclass(frozen=True)
class RunScores:
    """What the verdict needs of one finished run."""

    row: str  # the analyzer's label (name plus any other setting the sweep varied)
    baseline: bool
    seed: int
    epochs: int
    means: Mapping[str, float]  # score -> the run's eval_<score>
    per_image: Mapping[str, np.ndarray]  # score -> one value per scored image
    method: str = ""  # analyzer.method (baseline.noise, ...)


@dataclass
class Cell:
    mean: float
    std: float  # over seeds; nan with one
    low: float  # the 95% bootstrap interval over images x seeds; nan without per-image scores
    high: float
    n_seeds: int
    beats: dict[str, bool] = field(default_factory=dict)  # baseline row -> significantly better
    p_values: dict[str, float] = field(default_factory=dict)
    pairs_dropped: dict[str, int] = field(default_factory=dict)  # undefined pairs left out
    best: bool = False  # beats every other analyzer
    tied_best: bool = False  # the top analyzer, or one it does not beat, where none beats all


@dataclass(frozen=True)
class Control:
    mean: float  # the control's score, over images x seeds
    source: float  # the analyzer's own
    beats_every_baseline: bool
    fooled: str  # how it fooled the criterion ("at or above", "better than", ...), or ""


# Controls that must not beat the baselines either (a blurred map may: it is a coarser version
# of a map that can be informative).
MUST_NOT_BEAT_BASELINES = ("inverted", "blank_like")


@dataclass
class Verdict:
    rows: list[tuple[str, int]]  # (label, epochs), analyzers first, then baselines
    baselines: list[str]
    criteria: list[Criterion]
    cells: dict[tuple[str, int, str], Cell]  # (label, epochs, score) -> cell
    several_epochs: bool
    notes: list[str] = field(default_factory=list)  # lines printed under the table
    rankings: dict[tuple[str, int], Ranking] = field(default_factory=dict)  # (score, epochs)
    top_shares: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    # Kendall's tau between two criteria's rankings of the analyzers, at the longest training.
    agreement: dict[tuple[str, str], float] = field(default_factory=dict)
    # (score, epochs) -> (image x seed pairs a test would need, pairs this sweep had), where
    # the top two analyzers are tied.
    needed: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)
    # (score, epochs) -> Kendall's tau of its ranking with the ranking at the longest training.
    across_epochs: dict[tuple[str, int], float] = field(default_factory=dict)
    seeds: int = 0  # the most seeds any cell is over
    noise_rows: list[str] = field(default_factory=list)  # baselines of fresh noise
    # (label, epochs) -> the mean share of its maps blank once every layer is randomised
    blank_shares: dict[tuple[str, int], float] = field(default_factory=dict)
    # (score, analyzer label, control) -> how the control made of its maps scored
    controls: dict[tuple[str, str, str], Control] = field(default_factory=dict)
    # score -> why it is uninformative on this model (a control passed it)
    uninformative: dict[str, list[str]] = field(default_factory=dict)
    # score -> its meta-consistency on this model (evaluate=meta), at the longest training
    meta: dict[str, MetaScore] = field(default_factory=dict)
    # score -> why it is unreliable on this model (its MC below src.report.meta.THRESHOLD)
    unreliable: dict[str, str] = field(default_factory=dict)

    def name(self, label: str, epochs: int) -> str:
        return f"{label} {epochs}ep" if self.several_epochs else label

    def to_beat(self, criterion: Criterion, baselines: Sequence[str]) -> list[str]:
        """Of ``baselines``, those an analyzer must beat on ``criterion``: all, but fresh noise
        where noise passes the criterion by construction."""
        return [b for b in baselines if not (criterion.noise_passes and b in self.noise_rows)]

    @property
    def analyzers(self) -> list[tuple[str, int]]:
        return [row for row in self.rows if row[0] not in self.baselines]

    @property
    def longest(self) -> int:
        return max((epochs for _, epochs in self.rows), default=0)


def paired_test(
    better: np.ndarray, baseline: np.ndarray, higher_is_better: bool
) -> tuple[float, int]:
    """One-sided Wilcoxon signed-rank p-value that ``better`` beats ``baseline`` pair by pair,
    and how many pairs were left out as undefined (nan in either). No difference at all: 1."""
    from scipy.stats import wilcoxon

    better, baseline = np.asarray(better, float), np.asarray(baseline, float)
    defined = ~(np.isnan(better) | np.isnan(baseline))
    difference = (better - baseline)[defined]
    # Rounding is no difference (scipy's Spearman of a map with itself is 1 - 1e-16 at times).
    difference[np.abs(difference) < TIE] = 0.0
    if not higher_is_better:
        difference = -difference
    if not np.any(difference != 0):
        return 1.0, int((~defined).sum())
    return float(wilcoxon(difference, alternative="greater").pvalue), int((~defined).sum())


def build_verdict(
    runs: Sequence[RunScores], criteria: Sequence[Criterion] | None = None
) -> Verdict:
    """The verdict of ``runs``: one row per analyzer label and training length (analyzers
    first, then baselines), one cell per criterion (of ``criteria``, the registry's if None,
    that some run scored), each with its paired tests against the baselines; the analyzers
    ranked against each other; notes where MPRT's randomised maps went blank."""
    criteria = registry_criteria() if criteria is None else criteria
    groups: dict[tuple[str, int], list[RunScores]] = {}
    for run in runs:
        groups.setdefault((run.row, run.epochs), []).append(run)
    is_baseline = {run.row: run.baseline for run in runs}
    criteria = [c for c in criteria if any(c.score in run.means for run in runs)]
    rows = sorted(groups, key=lambda key: (is_baseline[key[0]], key[1], key[0]))
    baselines = sorted({row for row, _ in rows if is_baseline[row]})
    verdict = Verdict(
        rows=rows,
        baselines=baselines,
        criteria=list(criteria),
        cells=_cells(groups, criteria, baselines),
        several_epochs=len({epochs for _, epochs in rows}) > 1,
    )
    verdict.seeds = max((cell.n_seeds for cell in verdict.cells.values()), default=0)
    verdict.noise_rows = sorted({run.row for run in runs if run.method == "baseline.noise"})
    _rank(verdict, groups)
    _controls(verdict, groups)
    _meta(verdict, groups)
    short = {c.score: c.short for c in verdict.criteria}
    for score, reasons in verdict.uninformative.items():
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        verdict.notes.append(f"{short[score]} is uninformative on this model: {reasons[0]}{more}")
    for score, reason in verdict.unreliable.items():
        verdict.notes.append(f"{short[score]} is unreliable on this model: {reason}")
    for label, epochs in rows:
        shares = [
            run.means["mprt_blank_fraction_full"]
            for run in groups[label, epochs]
            if "mprt_blank_fraction_full" in run.means
        ]
        if not shares:
            continue
        verdict.blank_shares[label, epochs] = float(np.mean(shares))
        if np.mean(shares) > BLANK_NOTE:
            verdict.notes.append(
                f"{verdict.name(label, epochs)}: {np.mean(shares):.0%} of its maps are blank once "
                "every layer is randomised; MPRT counts them as completely changed"
            )
    return verdict


def _cells(
    groups: Mapping[tuple[str, int], Sequence[RunScores]],
    criteria: Sequence[Criterion],
    baselines: Sequence[str],
) -> dict[tuple[str, int, str], Cell]:
    """Per row (``groups``: (label, epochs) -> its runs) and criterion the runs scored: the mean
    over seeds with its interval, and the paired test against each baseline row of the same
    training length (not against itself)."""
    cells: dict[tuple[str, int, str], Cell] = {}
    for (label, epochs), group in groups.items():
        for criterion in criteria:
            scored = [run for run in group if criterion.score in run.means]
            if not scored:
                continue
            values = [run.means[criterion.score] for run in scored]
            per_seed = [
                run.per_image[criterion.score] for run in scored if criterion.score in run.per_image
            ]
            low, high = judgement.bootstrap_interval(per_seed) if per_seed else (np.nan, np.nan)
            cell = Cell(
                mean=float(np.mean(values)),
                std=float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                low=low,
                high=high,
                n_seeds=len(values),
            )
            cells[label, epochs, criterion.score] = cell
            for baseline in baselines:
                if baseline == label or (baseline, epochs) not in groups:
                    continue
                ours, theirs = _paired(group, groups[baseline, epochs], criterion.score)
                if len(ours):
                    p, dropped = paired_test(ours, theirs, criterion.higher_is_better)
                    cell.p_values[baseline] = p
                    cell.beats[baseline] = p < ALPHA
                    cell.pairs_dropped[baseline] = dropped
    return cells


def _rank(verdict: Verdict, groups: Mapping[tuple[str, int], Sequence[RunScores]]) -> None:
    """The analyzers against each other per criterion and training length: best or tied best,
    the top shares of resamples, the pairs needed where the top two are tied; the criteria's
    agreement at the longest training, and each ranking's agreement with that one."""
    signed: dict[str, dict[str, float]] = {}
    for criterion in verdict.criteria:
        for epochs in sorted({epochs for _, epochs in verdict.analyzers}):
            labels = [label for label, e in verdict.analyzers if e == epochs]
            aligned = _aligned({label: groups[label, epochs] for label in labels}, criterion.score)
            if len(aligned) < 2:
                continue
            key = (criterion.score, epochs)
            ranking = judgement.rank(aligned, criterion.higher_is_better)
            verdict.rankings[key] = ranking
            verdict.top_shares[key] = judgement.top_shares(aligned, criterion.higher_is_better)
            for label in ranking.tied_best:
                cell = verdict.cells[label, epochs, criterion.score]
                cell.best, cell.tied_best = ranking.best == label, ranking.best is None
            if ranking.best is None:
                difference = ranking.top_difference
                verdict.needed[key] = (judgement.pairs_needed(difference), len(difference))
        sign = 1.0 if criterion.higher_is_better else -1.0
        ranking = verdict.rankings.get((criterion.score, verdict.longest))
        if ranking is not None:
            signed[criterion.short] = {k: sign * v for k, v in ranking.means.items()}
            for (score, epochs), other in verdict.rankings.items():
                if score == criterion.score and epochs != verdict.longest:
                    mine = {k: sign * v for k, v in other.means.items()}
                    tau = judgement.kendall_matrix({"a": mine, "b": signed[criterion.short]})
                    verdict.across_epochs[score, epochs] = tau["a", "b"]
    verdict.agreement = judgement.kendall_matrix(signed)


def _controls(verdict: Verdict, groups: Mapping[tuple[str, int], Sequence[RunScores]]) -> None:
    """At the longest training, each analyzer's controls per criterion that declares them. The
    inverted and blank-like maps fool a criterion where they score at least as well as the
    analyzer's own maps (where those beat every baseline), or beat every baseline; the blurred
    maps where they score better than the analyzer's own in a paired test (p < ALPHA: the
    criterion rewards blur; a blurred faithful map may well be as faithful). Such a criterion
    is marked uninformative on this model, with why."""
    epochs = verdict.longest
    for criterion in verdict.criteria:
        for label in (label for label, e in verdict.analyzers if e == epochs):
            source = verdict.cells.get((label, epochs, criterion.score))
            for control in criterion.controls:
                result = _control(verdict, groups, criterion, label, control)
                if source is None or result is None:
                    continue
                verdict.controls[criterion.score, label, control] = result
                if result.fooled:
                    shown = f"the {control.replace('_', '-')} maps of {label}"
                    verdict.uninformative.setdefault(criterion.score, []).append(
                        f"{shown} beat every baseline ({result.mean:.3f})"
                        if result.fooled == "beats every baseline"
                        else f"{shown} score {result.fooled} its own "
                        f"({result.mean:.3f} vs {result.source:.3f})"
                    )


def _control(
    verdict: Verdict,
    groups: Mapping[tuple[str, int], Sequence[RunScores]],
    criterion: Criterion,
    label: str,
    control: str,
) -> Control | None:
    """How ``label``'s ``control`` scored on ``criterion`` against its own maps and the
    baselines; None where the runs did not score it."""
    from src.scores.controls import key  # how the runs keep a control's per-image scores

    epochs, name = verdict.longest, key(control, criterion.score)
    own = groups[label, epochs]
    runs = [run for run in own if name in run.per_image]
    if not runs or (label, epochs, criterion.score) not in verdict.cells:
        return None
    source = verdict.cells[label, epochs, criterion.score]
    as_control = [
        RunScores(label, False, run.seed, epochs, {}, {criterion.score: run.per_image[name]})
        for run in runs
    ]
    mean = float(np.mean([np.nanmean(run.per_image[name]) for run in runs]))
    required = verdict.to_beat(criterion, [b for b in verdict.baselines if (b, epochs) in groups])
    better = criterion.higher_is_better
    beats = bool(required) and all(
        paired_test(*_paired(as_control, groups[b, epochs], criterion.score), better)[0] < ALPHA
        for b in required
    )
    fooled = ""
    # Where the maps themselves beat no baseline there is no order or signal to lose: a
    # criterion cannot be faulted for scoring their inversion as low as them.
    informative = bool(required) and all(source.beats.get(b) for b in required)
    if control in MUST_NOT_BEAT_BASELINES:
        if informative and (mean - source.mean) * (1.0 if better else -1.0) >= 0:
            fooled = "at or above"
        elif beats:
            fooled = "beats every baseline"
    elif paired_test(*_paired(as_control, own, criterion.score), better)[0] < ALPHA:
        fooled = "better than"
    return Control(mean, source.mean, beats, fooled)


def _meta(verdict: Verdict, groups: Mapping[tuple[str, int], Sequence[RunScores]]) -> None:
    """At the longest training, each criterion's meta-consistency over the analyzers whose runs
    kept their scores under perturbation (:mod:`src.report.meta`), on the seeds they share;
    one below the threshold is marked unreliable."""
    from src.scores.meta import unperturbed_key  # how the runs keep their perturbed scores

    epochs = verdict.longest
    labels = [label for label, e in verdict.analyzers if e == epochs]
    for criterion in verdict.criteria:
        name = unperturbed_key(criterion.score)
        by_label = {
            label: {
                run.seed: run.per_image for run in groups[label, epochs] if name in run.per_image
            }
            for label in labels
        }
        by_label = {label: seeds for label, seeds in by_label.items() if seeds}
        if len(by_label) < 2:
            continue
        seeds = sorted(set.intersection(*(set(s) for s in by_label.values())))
        per_seed = [[by_label[label][seed] for label in by_label] for seed in seeds]
        draws = {space: _meta_draws(per_seed, space, criterion.score) for space in SPACES}
        if not all(draws.values()):
            continue
        score = meta_consistency(draws, criterion.higher_is_better)
        verdict.meta[criterion.score] = score
        if not score.reliable:
            verdict.unreliable[criterion.score] = (
                f"its meta-consistency MC {score.mc:.2f} is below {THRESHOLD} (MetaQuantus; "
                f"noise would get {score.noise_level:.2f})"
            )


def _meta_draws(
    per_seed: Sequence[Sequence[Mapping[str, np.ndarray]]], space: str, score: str
) -> list[tuple[Draw, Draw]]:
    """The (resilience, adversary) draws of ``space`` for ``score``: per seed (its analyzers'
    per-image arrays, in the same order every time), per perturbation k."""
    from src.scores import meta as kept

    resilience, adversary = (t.name for t in kept.TESTS if t.space == space)
    pairs = []
    for runs in per_seed:
        name = kept.unperturbed_key(score)
        count = min(len(run[name]) for run in runs)
        star = np.array([run[name][:count] for run in runs])

        def draw(test: str, k: int, runs=runs, count=count, star=star) -> Draw:
            perturbed = [_values(run, kept.key(test, k, score), count) for run in runs]
            counted = runs[0][kept.key(test, k, kept.KEPT)][:count].astype(bool)
            return Draw(star, np.array(perturbed), counted)

        draws = min(_draws(run, resilience) for run in runs)
        pairs += [(draw(resilience, k), draw(adversary, k)) for k in range(draws)]
    return pairs


def _values(per_image: Mapping[str, np.ndarray], name: str, count: int) -> np.ndarray:
    """The first ``count`` values a run kept as ``name``; NaN (undefined) where it kept none
    (a score left undefined on every image is not recorded)."""
    values = per_image.get(name)
    return np.full(count, np.nan) if values is None else np.asarray(values[:count], float)


def _draws(per_image: Mapping[str, np.ndarray], test: str) -> int:
    """How many perturbations of ``test`` a run kept."""
    from src.scores import meta as kept

    count = 0
    while kept.key(test, count, kept.KEPT) in per_image:
        count += 1
    return count


def _aligned(groups: Mapping[str, Sequence[RunScores]], score: str) -> dict[str, list[np.ndarray]]:
    """Per analyzer, its per-image scores on the seeds every analyzer ran, seed by seed, cut to
    the images all of them scored: aligned for paired tests."""
    by_label = {
        label: {run.seed: run.per_image[score] for run in runs if score in run.per_image}
        for label, runs in groups.items()
    }
    by_label = {label: seeds for label, seeds in by_label.items() if seeds}
    if not by_label:
        return {}
    seeds = sorted(set.intersection(*(set(seeds) for seeds in by_label.values())))
    counts = {seed: min(len(seeds_[seed]) for seeds_ in by_label.values()) for seed in seeds}
    return {
        label: [values[seed][: counts[seed]] for seed in seeds]
        for label, values in by_label.items()
        if seeds
    }


def _paired(
    ours: Sequence[RunScores], theirs: Sequence[RunScores], score: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image scores of the runs of both rows that share a seed, image by image."""
    by_seed = {run.seed: run for run in theirs}
    first, second = [], []
    for run in ours:
        other = by_seed.get(run.seed)
        if other is None or score not in run.per_image or score not in other.per_image:
            continue
        count = min(len(run.per_image[score]), len(other.per_image[score]))
        first.append(run.per_image[score][:count])
        second.append(other.per_image[score][:count])
    if not first:
        return np.empty(0), np.empty(0)
    return np.concatenate(first), np.concatenate(second)
