"""A remove-and-retrain sweep's table (experiment=roar): each analyzer's ROAR and KAR curves over
its seeds, their area against the random ranking of the same seed, with 95% intervals, whether
each analyzer beats the random ranking and the blurred one, and whether the cheap proxies (AOPC,
ROAD, faithfulness correlation, scored by the same sweep on the trained models) rank the
analyzers as retraining does (Kendall's τ).

Read from the runs alone (:func:`points`); the arrays and areas are :mod:`src.scores.roar`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from src.report.answer import listed
from src.scores import roar

RANDOM, BLURRED = "baseline.noise", "baseline.blurred_noise"  # the references, by method
# The proxies the verdict holds against retraining: (metric of the trained model's runs, name).
PROXIES = (
    ("eval_aopc", "AOPC"),
    ("eval_road", "ROAD"),
    ("eval_faithfulness_correlation", "FCorr"),
)
# Hooker et al. 2019's finding, by analyzer: the base estimators no better than a random
# ranking under ROAR, SmoothGrad-Squared and VarGrad better.
HOOKER_BASE = ("gradient", "integrated_gradients", "guided_backprop")
HOOKER_ENSEMBLES = ("smoothgrad_squared", "vargrad")


@dataclass(frozen=True)
class Point:
    """One retrained model's test accuracy: an analyzer's (``method``: its analyzer.method),
    a seed, a share of pixels removed (``fraction``, percent; 0 = the model as trained) and a
    mode (``roar``: the most relevant removed; ``kar``: the least)."""

    analyzer: str
    method: str
    seed: int
    fraction: float
    mode: str
    accuracy: float
    learned: bool = True  # False: the retrained model's loss stayed at a guess's


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # nan with one seed
    high: float

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.low):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    @property
    def above_zero(self) -> bool:
        return self.low > 0


def interval(values: Sequence[float]) -> Interval:
    """The mean over seeds and its 95% Student-t interval (nan bounds for one value)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half)


@dataclass(frozen=True)
class Row:
    analyzer: str
    method: str
    seeds: int
    curves: Mapping[str, tuple[Interval, ...]]  # mode -> one per fraction
    gain: Mapping[str, Interval | None]  # mode -> the area above the random ranking's
    over_blurred: Mapping[str, Interval | None]  # mode -> the area above the blurred one's
    # mode -> the fractions at which a seed's retrained model did not learn
    not_learned: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def baseline(self) -> bool:
        return self.method.startswith("baseline.")


@dataclass
class RoarVerdict:
    fractions: tuple[float, ...]  # 0 first
    rows: list[Row]
    random: str | None  # the random ranking's name, if the sweep ran it
    blurred: str | None
    agreement: list[tuple[str, str, float, float, int]] = field(default_factory=list)
    # (mode, proxy, Kendall's tau, its p-value, analyzers ranked)
    findings: list[str] = field(default_factory=list)


def retraining(run) -> bool:
    """Whether a sweep's run retrained (``roar.fraction`` > 0) rather than scored its model."""
    return float(run.data.params.get("roar.fraction", 0)) > 0


def points(runs: Iterable, base_accuracy: Mapping[int, float]) -> list[Point]:
    """The retrained models' accuracies of a sweep's FINISHED runs with ``roar.fraction`` > 0,
    and for each (analyzer, seed) among them the point at 0: the trained model's test accuracy
    (``base_accuracy`` by seed), where ROAR and KAR start."""
    found: list[Point] = []
    for run in runs:
        params, metrics = run.data.params, run.data.metrics
        if run.info.status != "FINISHED" or not retraining(run):
            continue
        for mode in roar.MODES:
            if f"{mode}_accuracy" in metrics:
                found.append(
                    Point(
                        params["analyzer.name"],
                        params.get("analyzer.method", ""),
                        int(params["seed"]),
                        float(params["roar.fraction"]),
                        mode,
                        float(metrics[f"{mode}_accuracy"]),
                        bool(metrics.get(f"{mode}_learned", 1.0)),
                    )
                )
    starts = {(p.analyzer, p.method, p.seed) for p in found}
    for analyzer, method, seed in sorted(starts):
        if seed in base_accuracy:
            for mode in roar.MODES:
                found.append(Point(analyzer, method, seed, 0.0, mode, base_accuracy[seed]))
    return found


def roar_verdict(
    found: Sequence[Point], proxies: Mapping[str, Mapping[str, float]] | None = None
) -> RoarVerdict | None:
    """The table of ``found`` (:func:`points`); ``proxies``: per analyzer, the trained model's
    mean of each proxy metric over seeds. A seed counts for an analyzer where it has every
    fraction; the gains pair it with the reference's curve of the same seed."""
    if not found:
        return None
    fractions = tuple(sorted({p.fraction for p in found}))
    curves: dict[tuple[str, str], dict[int, np.ndarray]] = {}  # (analyzer, mode) -> seed -> curve
    methods = {p.analyzer: p.method for p in found}
    for analyzer, mode in sorted({(p.analyzer, p.mode) for p in found}):
        by_seed: dict[int, dict[float, float]] = {}
        for p in found:
            if p.analyzer == analyzer and p.mode == mode:
                by_seed.setdefault(p.seed, {})[p.fraction] = p.accuracy
        curves[analyzer, mode] = {
            seed: np.array([values[f] for f in fractions])
            for seed, values in by_seed.items()
            if all(f in values for f in fractions)
        }
    random = next((a for a, m in methods.items() if m == RANDOM), None)
    blurred = next((a for a, m in methods.items() if m == BLURRED), None)

    def gain(analyzer: str, mode: str, reference: str | None) -> Interval | None:
        if reference is None or reference == analyzer:
            return None
        own, theirs = curves[analyzer, mode], curves.get((reference, mode), {})
        seeds = sorted(set(own) & set(theirs))
        if not seeds:
            return None
        return interval([roar.gain(fractions, own[s], theirs[s], mode) for s in seeds])

    rows = []
    for analyzer in sorted(methods, key=lambda a: (methods[a].startswith("baseline."), a)):
        seeds = set.intersection(*(set(curves[analyzer, mode]) for mode in roar.MODES))
        if not seeds:
            continue
        rows.append(
            Row(
                analyzer,
                methods[analyzer],
                len(seeds),
                {
                    mode: tuple(
                        interval([curves[analyzer, mode][s][i] for s in sorted(seeds)])
                        for i in range(len(fractions))
                    )
                    for mode in roar.MODES
                },
                {mode: gain(analyzer, mode, random) for mode in roar.MODES},
                {mode: gain(analyzer, mode, blurred) for mode in roar.MODES},
                {
                    mode: tuple(
                        sorted(
                            {
                                p.fraction
                                for p in found
                                if p.analyzer == analyzer and p.mode == mode and not p.learned
                            }
                        )
                    )
                    for mode in roar.MODES
                },
            )
        )
    verdict = RoarVerdict(fractions, rows, random, blurred)
    verdict.agreement = _agreement(rows, proxies or {})
    verdict.findings = _findings(verdict)
    return verdict


def _agreement(
    rows: Sequence[Row], proxies: Mapping[str, Mapping[str, float]]
) -> list[tuple[str, str, float, float, int]]:
    """Kendall's τ between each mode's gain and each proxy over the analyzers that are not
    baselines (three at least)."""
    from scipy import stats

    found = []
    for mode in roar.MODES:
        for metric, name in PROXIES:
            pairs = [
                (row.gain[mode].mean, proxies[row.analyzer][metric])
                for row in rows
                if not row.baseline
                and row.gain[mode] is not None
                and metric in proxies.get(row.analyzer, {})
            ]
            if len(pairs) >= 3:
                tau, p = stats.kendalltau(*zip(*pairs, strict=True))
                found.append((mode, name, float(tau), float(p), len(pairs)))
    return found


def _findings(verdict: RoarVerdict) -> list[str]:
    """Sentences: which analyzers beat the random ranking (the gain's interval above 0) and the
    blurred one, and whether Hooker et al.'s finding holds here."""
    if verdict.random is None:
        return ["the sweep ran no random ranking (analyzer=noise): no gain is measured"]
    said = []
    judged: dict[str, bool | None] = {}
    for mode, what in (("roar", "ROAR"), ("kar", "KAR")):
        beat, not_beat = [], []
        for row in verdict.rows:
            if row.analyzer == verdict.random or row.gain[mode] is None:
                continue
            (beat if row.gain[mode].above_zero else not_beat).append(row.analyzer)
            if mode == "roar":
                judged[row.analyzer] = row.gain[mode].above_zero
        said.append(
            f"{what}: {listed(beat) or 'no analyzer'} beat the random ranking (95% interval of "
            f"the gain above 0); {listed(not_beat) or 'none'} did not"
        )
    if verdict.blurred is not None:
        blobs = [  # of those that beat the random ranking
            row.analyzer
            for row in verdict.rows
            if judged.get(row.analyzer)
            and not row.baseline
            and row.over_blurred["roar"] is not None
            and not row.over_blurred["roar"].above_zero
        ]
        if blobs:
            said.append(
                f"ROAR: {listed(blobs)} not told apart from a blurred random ranking "
                f"({verdict.blurred}): what they gain may be their maps' blobs, not their content"
            )
    failed = [
        f"{row.analyzer} ({mode.upper()} {', '.join(f'{f:g}%' for f in row.not_learned[mode])})"
        for row in verdict.rows
        for mode in roar.MODES
        if row.not_learned.get(mode)
    ]
    if failed:
        said.append(
            f"† a retrained model did not learn (its training loss stayed at a guess's) for "
            f"{', '.join(failed)}: chance there says what the training found, not what the "
            "pixels left hold (more epochs may let it learn)"
        )
    base = [a for a in HOOKER_BASE if a in judged]
    ensembles = [a for a in HOOKER_ENSEMBLES if a in judged]
    if base or ensembles:
        holds = not any(judged[a] for a in base) and all(judged[a] for a in ensembles)
        parts = []
        if base:
            better = [a for a in base if judged[a]]
            parts.append(
                f"{listed(better)} beat the random ranking"
                if better
                else f"{listed(base)} no better than the random ranking"
            )
        if ensembles:
            worse = [a for a in ensembles if not judged[a]]
            parts.append(
                f"{listed(worse)} not better than it"
                if worse
                else f"{listed(ensembles)} better than it"
            )
        said.append(
            f"Hooker et al. 2019's finding {'holds' if holds else 'does not hold'} here: "
            + "; ".join(parts)
        )
    return said


def table_lines(verdict: RoarVerdict, mode: str) -> list[str]:
    """One mode's table as fixed-width text (the terminal, ``roar.md``): per analyzer its mean
    accuracy at each fraction removed and its gain over the random ranking."""
    what = mode.upper()
    head = ["analyzer", *(f"{what} {f:g}%" for f in verdict.fractions[1:]), f"{what} gain [95%]"]
    rows = [head]
    for row in verdict.rows:
        cells = [row.analyzer + (" (baseline)" if row.baseline else "")]
        cells += [
            f"{i.mean:.3f}" + ("†" if f in row.not_learned.get(mode, ()) else "")
            for f, i in zip(verdict.fractions[1:], row.curves[mode][1:], strict=True)
        ]
        cells.append("—" if row.gain[mode] is None else row.gain[mode].text())
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


def tables(verdict: RoarVerdict) -> list[str]:
    """Both modes' tables (:func:`table_lines`), each followed by an empty line."""
    return [line for mode in roar.MODES for line in [*table_lines(verdict, mode), ""]]


def caption(verdict: RoarVerdict) -> str:
    seeds = sorted({row.seeds for row in verdict.rows})
    start = ", ".join(f"{f:g}%" for f in verdict.fractions[1:])
    return (
        f"Remove-and-retrain (ROAR: the most relevant pixels removed) and keep-and-retrain (KAR: "
        f"the least relevant removed), {start} of each image's pixels replaced by the training "
        f"images' mean, a fresh model trained each time; columns: its test accuracy on the "
        f"equally degraded test images, mean over {'/'.join(map(str, seeds))} seed(s); gain: the "
        f"area between the analyzer's curve and the random ranking's of the same seed "
        f"({verdict.random or 'not run'}), higher is better in both, mean [95% t-interval over "
        f"seeds]."
    )


def agreement_lines(verdict: RoarVerdict) -> list[str]:
    return [
        f"{mode.upper()} gain vs {proxy}: Kendall's τ {tau:+.2f} (p = {p:.2f}, {n} analyzers)"
        for mode, proxy, tau, p, n in verdict.agreement
    ]


def text(verdict: RoarVerdict) -> str:
    """What the terminal and ``roar.md`` say: the table, its caption, the findings, the
    proxies' agreement."""
    lines = ["remove-and-retrain:", *(f"  {line}" if line else "" for line in tables(verdict))]
    lines += [f"  {finding}" for finding in verdict.findings]
    lines += [f"  {line}" for line in agreement_lines(verdict)]
    return "\n".join(lines)


def markdown(verdict: RoarVerdict, title: str) -> str:
    body = "\n".join(tables(verdict)).rstrip()
    findings = "\n".join(f"- {f}" for f in verdict.findings)
    agreement = "\n".join(f"- {line}" for line in agreement_lines(verdict))
    return (
        f"# Remove-and-retrain: {title}\n\n```\n{body}\n```\n\n{caption(verdict)}\n\n"
        f"{findings}\n\n## Do the proxies agree with retraining?\n\n"
        f"{agreement or '- fewer than three analyzers with both: no τ'}\n"
    )


def parent_metrics(verdict: RoarVerdict) -> dict[str, float]:
    """``roar_gain/<analyzer>``, ``kar_gain/<analyzer>`` and ``roar_tau/<proxy>``,
    ``kar_tau/<proxy>`` for the sweep's parent run."""
    found = {}
    for row in verdict.rows:
        for mode in roar.MODES:
            if row.gain[mode] is not None:
                found[f"{mode}_gain/{row.analyzer}"] = row.gain[mode].mean
    for mode, proxy, tau, _, _ in verdict.agreement:
        found[f"{mode}_tau/{proxy}"] = tau
    return found


def parent_curves(verdict: RoarVerdict) -> list[tuple[str, float, int]]:
    """``roar_accuracy/<analyzer>`` and ``kar_accuracy/<analyzer>``, the mean over seeds, one
    point per fraction (its step): MLflow draws each analyzer's curve on the parent run."""
    return [
        (f"{mode}_accuracy/{row.analyzer}", point.mean, int(round(fraction)))
        for row in verdict.rows
        for mode in roar.MODES
        for fraction, point in zip(verdict.fractions, row.curves[mode], strict=True)
    ]
