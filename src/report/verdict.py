"""The verdict of a sweep: per criterion, each analyzer's score over seeds, whether it beats each
baseline the sweep ran, and the best one marked.

- **Mean and 95% interval over seeds**: the runs' ``eval_<score>`` (each a mean over the scored
  images), Student's t interval ``mean ± t(0.975, n-1) · sd / sqrt(n)`` (none with one seed).
- **Beats a baseline**: a paired test over images: for every seed, image i of the analyzer's
  run is paired with image i of the baseline's run of the same seed and training length (the
  same test image, the same trained model); the one-sided Wilcoxon signed-rank test (scipy)
  over all pairs, in the score's better direction, at p < 0.05 without correction for the
  several comparisons. Pairs where either score is undefined (eMPRT of a blank map) are left
  out, and counted in ``verdict.md``.
- **Best**: the analyzer (not a baseline) with the best mean per criterion and training length.

Pure pandas/scipy on values read from the store: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from src.common import names

ALPHA = 0.05
TIE = 1e-12  # per-image score differences smaller than this are ties
# Above this share of maps gone blank under randomisation, the verdict says so: MPRT counts a
# blank map as completely changed, which is what makes such an analyzer look best there.
BLANK_NOTE = 0.1


@dataclass(frozen=True)
class Criterion:
    name: str  # what it judges
    score: str  # the run's metric is eval_<score>; scores.npz holds it per image
    higher_is_better: bool
    short: str  # column heading in the terminal


def registry_criteria() -> tuple[Criterion, ...]:
    """The verdict's criteria, in the order they are shown: every metric of the score
    registry (:mod:`src.scores`) that names a criterion."""
    from src.scores import SCORES
    from src.scores.registry import criteria

    return tuple(
        Criterion(m.criterion, m.name, bool(m.higher_is_better), m.short) for m in criteria(SCORES)
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


@dataclass
class Cell:
    mean: float
    std: float  # over seeds
    half_width: float  # of the 95% t interval; nan with one seed
    n_seeds: int
    beats: dict[str, bool] = field(default_factory=dict)  # baseline row -> significantly better
    p_values: dict[str, float] = field(default_factory=dict)
    pairs_dropped: dict[str, int] = field(default_factory=dict)  # undefined pairs left out
    best: bool = False


@dataclass
class Verdict:
    rows: list[tuple[str, int]]  # (label, epochs), analyzers first, then baselines
    baselines: list[str]
    criteria: list[Criterion]
    cells: dict[tuple[str, int, str], Cell]  # (label, epochs, score) -> cell
    several_epochs: bool
    notes: list[str] = field(default_factory=list)  # lines printed under the table

    def name(self, label: str, epochs: int) -> str:
        return f"{label} {epochs}ep" if self.several_epochs else label


def interval_half_width(values: Sequence[float]) -> float:
    """Half the width of the 95% Student t interval of the mean; nan for fewer than 2 values."""
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan")
    return float(t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))


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
    that some run scored), each with its paired tests against the baselines and the best
    analyzer marked; notes where MPRT's randomised maps went blank."""
    criteria = registry_criteria() if criteria is None else criteria
    groups: dict[tuple[str, int], list[RunScores]] = {}
    for run in runs:
        groups.setdefault((run.row, run.epochs), []).append(run)
    is_baseline = {run.row: run.baseline for run in runs}
    criteria = [c for c in criteria if any(c.score in run.means for run in runs)]
    rows = sorted(groups, key=lambda key: (is_baseline[key[0]], key[1], key[0]))
    baselines = sorted({row for row, _ in rows if is_baseline[row]})
    cells = _cells(groups, criteria, baselines)
    _mark_best(cells, rows, criteria, is_baseline)
    verdict = Verdict(
        rows=rows,
        baselines=baselines,
        criteria=list(criteria),
        cells=cells,
        several_epochs=len({epochs for _, epochs in rows}) > 1,
    )
    for label, epochs in rows:
        shares = [
            run.means["mprt_blank_fraction_full"]
            for run in groups[label, epochs]
            if "mprt_blank_fraction_full" in run.means
        ]
        if shares and np.mean(shares) > BLANK_NOTE:
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
            values = [run.means[criterion.score] for run in group if criterion.score in run.means]
            if not values:
                continue
            cell = Cell(
                mean=float(np.mean(values)),
                std=float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                half_width=interval_half_width(values),
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


def _mark_best(
    cells: Mapping[tuple[str, int, str], Cell],
    rows: Sequence[tuple[str, int]],
    criteria: Sequence[Criterion],
    is_baseline: Mapping[str, bool],
) -> None:
    """Mark the best mean per criterion and training length among the analyzers (baselines
    are what the analyzers are measured against, never the best); ties are all best."""
    for criterion in criteria:
        for epochs in {epochs for _, epochs in rows}:
            candidates = [
                cells[label, e, criterion.score]
                for label, e in rows
                if e == epochs and not is_baseline[label] and (label, e, criterion.score) in cells
            ]
            if candidates:
                pick = max if criterion.higher_is_better else min
                best = pick(cell.mean for cell in candidates)
                for cell in candidates:
                    cell.best = cell.mean == best


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


def letters(baselines: Sequence[str]) -> dict[str, str]:
    """One letter per baseline for the terminal: its first letter not taken yet."""
    taken: dict[str, str] = {}
    for baseline in baselines:
        candidates = [c for c in baseline.lower() if c.isalpha() and c not in taken.values()]
        taken[baseline] = candidates[0] if candidates else "?"
    return taken


def _cell_text(cell: Cell | None, marks: Mapping[str, str]) -> str:
    if cell is None:
        return "–"
    text = f"{cell.mean:.3f}"
    if not math.isnan(cell.half_width):
        text += f"±{cell.half_width:.3f}"
    beaten = "".join(
        (letter if cell.beats[baseline] else ".")
        for baseline, letter in marks.items()
        if baseline in cell.beats
    )
    return f"{text}{'*' if cell.best else ' '}{beaten}"


def terminal_table(verdict: Verdict, width: int = 100) -> str:
    """The verdict as plain-text tables of at most ``width`` columns, with a legend: as many
    criteria side by side as fit, the next ones in another table below, rows repeated."""
    marks = letters(verdict.baselines)
    names = [verdict.name(label, epochs) for label, epochs in verdict.rows]
    texts = [
        [_cell_text(verdict.cells.get((label, epochs, c.score)), marks) for c in verdict.criteria]
        for label, epochs in verdict.rows
    ]
    headings = [f"{c.short} {'↑' if c.higher_is_better else '↓'}" for c in verdict.criteria]
    widths = [max([len(h)] + [len(row[i]) for row in texts]) for i, h in enumerate(headings)]
    widest = max(widths, default=0) + 1
    name_width = max(8, min(max(len(name) for name in [*names, "analyzer"]), width - widest, 30))
    blocks: list[list[int]] = [[]]
    for index, column_width in enumerate(widths):
        used = name_width + sum(widths[i] + 1 for i in blocks[-1])
        if blocks[-1] and used + column_width + 1 > width:
            blocks.append([])
        blocks[-1].append(index)

    def line(first: str, cells: Sequence[str], columns: Sequence[int]) -> str:
        first = first if len(first) <= name_width else first[: name_width - 1] + "…"
        return " ".join([f"{first:<{name_width}}", *(f"{cells[i]:>{widths[i]}}" for i in columns)])

    lines: list[str] = []
    for block in blocks:
        if lines:
            lines.append("")
        header = line("analyzer", headings, block)
        lines.append(header)
        ruled = False
        for (label, _), name, row in zip(verdict.rows, names, texts, strict=True):
            if label in verdict.baselines and not ruled:
                lines.append("-" * len(header))
                ruled = True
            lines.append(line(name, row, block))
    lines.extend(legend(verdict, marks, width))
    for note in verdict.notes:
        lines.extend(textwrap.wrap(f"note: {note}", width=width, subsequent_indent="  "))
    return "\n".join(lines)


def legend(verdict: Verdict, marks: Mapping[str, str], width: int = 100) -> list[str]:
    """The legend's items, packed into lines of at most ``width``; no item is split."""
    items = ["mean±95% t interval over seeds", "* best analyzer", "↑/↓ better"]
    if marks:
        items += [f"{letter} = beats {baseline}" for baseline, letter in marks.items()]
        items.append(f". = does not (paired Wilcoxon over images × seeds, p < {ALPHA})")
    lines = [""]
    for item in items:
        joined = f"{lines[-1]}; {item}" if lines[-1] else item
        if len(joined) <= width or not lines[-1]:
            lines[-1] = joined
        else:
            lines.append(item)
    return lines


def plain(text: str) -> str:
    """Text from names (a dataset's, a swept value) shown as written in Markdown: what a
    renderer would take for HTML (``<``, ``&``) as entities, a table's ``|`` escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def markdown(verdict: Verdict, title: str) -> str:
    """``verdict.md``: the table with p-values, the protocol, and what a number means."""
    lines = [f"# Verdict: {plain(title)}", ""]
    header = [
        "analyzer",
        *(
            f"{c.short} ({'higher' if c.higher_is_better else 'lower'} is better)"
            for c in verdict.criteria
        ),
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, epochs in verdict.rows:
        cells = []
        for criterion in verdict.criteria:
            cell = verdict.cells.get((label, epochs, criterion.score))
            if cell is None:
                cells.append("–")
                continue
            text = f"{cell.mean:.3f}"
            if not math.isnan(cell.half_width):
                text += f" ± {cell.half_width:.3f}"
            if cell.best:
                text = f"**{text}**"
            tests = [
                f"{'beats' if cell.beats[b] else 'not'} {b} (p={cell.p_values[b]:.2g}"
                + (
                    f", {cell.pairs_dropped[b]} undefined pairs left out"
                    if cell.pairs_dropped[b]
                    else ""
                )
                + ")"
                for b in verdict.baselines
                if b in cell.beats
            ]
            cells.append("<br>".join([text, *tests]))
        name = plain(verdict.name(label, epochs))
        if label in verdict.baselines:
            name += " (baseline)"
        lines.append("| " + " | ".join([name, *cells]) + " |")
    lines += ["", *(f"- {c.short}: {c.name}" for c in verdict.criteria), ""]
    lines += [*(f"Note: {plain(note)}." for note in verdict.notes), ""] if verdict.notes else []
    lines.append(
        "Mean over seeds ± the half-width of the 95% Student t interval (n seeds); bold: the "
        "best analyzer per criterion. 'beats B': a one-sided Wilcoxon signed-rank test over "
        "the per-image scores paired by test image and seed, in the criterion's better "
        f"direction, p < {ALPHA}, not corrected for the number of comparisons. Baselines "
        "explain nothing about the model: `input` and `edge` ignore it, so a randomisation "
        "test calls them unchanged (MPRT 1, eMPRT 0); a fresh `noise` map changes completely "
        "(MPRT ≈ 0) although it explains nothing. A score is evidence only where it beats "
        "the baselines."
    )
    return "\n".join(lines) + "\n"


# The symbols of a row's settings spelt out in metric names (typed more easily in a search).
SPELT_OUT = {"ε": "eps", "α": "alpha", "β": "beta", "σ": "sigma", "=": ":"}


def metric_name(text: str, taken: set[str] | None = None, limit: int = names.MAX_KEY) -> str:
    """``text`` as an MLflow metric name (:func:`src.common.names.mlflow_name`), its symbols spelt
    out: ``lrp ε=0.1`` -> ``lrp eps:0.1``."""
    for symbol, word in SPELT_OUT.items():
        text = text.replace(symbol, word)
    return names.mlflow_name(text, taken, limit=limit)


def parent_metrics(verdict: Verdict) -> dict[str, float]:
    """``<score>/<row>`` (the mean over seeds) and ``<score>_std/<row>``, so MLflow's chart
    view, which groups metrics by what comes before the ``/``, shows one section per score
    with the analyzers side by side. Each row's name is valid, fits beside the longest score's
    name, and is its own, whatever the values the sweep varied."""
    scores = {score for _, _, score in verdict.cells}
    room = names.MAX_KEY - max((len(f"{score}_std/") for score in scores), default=0)
    taken: set[str] = set()
    rows = {row: metric_name(verdict.name(*row), taken, room) for row in verdict.rows}
    metrics = {}
    for (label, epochs, score), cell in verdict.cells.items():
        row = rows[label, epochs]
        metrics[f"{score}/{row}"] = cell.mean
        if not math.isnan(cell.std):
            metrics[f"{score}_std/{row}"] = cell.std
    return metrics
