"""The verdict in words: the terminal's tables and legend, ``verdict.md``, and the parent run's
metric names. Every caption says what was computed: an interval only where there is one, and
over what.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from src.common import names
from src.report.judgement import ALPHA
from src.report.meta import MEASURES, THRESHOLD
from src.report.verdict import Cell, Verdict


def letters(baselines: Sequence[str]) -> dict[str, str]:
    """One letter per baseline for the terminal: its first letter not taken yet."""
    taken: dict[str, str] = {}
    for baseline in baselines:
        candidates = [c for c in baseline.lower() if c.isalpha() and c not in taken.values()]
        taken[baseline] = candidates[0] if candidates else "?"
    return taken


def mark(cell: Cell) -> str:
    """``*`` best, ``=`` tied best, else a space."""
    return "*" if cell.best else ("=" if cell.tied_best else " ")


def interval(cell: Cell) -> str:
    """``[low, high]``, or nothing where no interval was computed."""
    return "" if math.isnan(cell.low) else f"[{cell.low:.3f}, {cell.high:.3f}]"


def _cell_text(cell: Cell | None, marks: Mapping[str, str]) -> str:
    if cell is None:
        return "–"
    beaten = "".join(
        (letter if cell.beats[baseline] else ".")
        for baseline, letter in marks.items()
        if baseline in cell.beats
    )
    return f"{cell.mean:.3f}{mark(cell)}{beaten}"


def terminal_table(verdict: Verdict, width: int = 100) -> str:
    """The verdict as plain-text tables of at most ``width`` columns, with a legend: as many
    criteria side by side as fit, the next ones in another table below, rows repeated."""
    marks = letters(verdict.baselines)
    names_ = [verdict.name(label, epochs) for label, epochs in verdict.rows]
    texts = [
        [_cell_text(verdict.cells.get((label, epochs, c.score)), marks) for c in verdict.criteria]
        for label, epochs in verdict.rows
    ]
    headings = [f"{c.short} {'↑' if c.higher_is_better else '↓'}" for c in verdict.criteria]
    widths = [max([len(h)] + [len(row[i]) for row in texts]) for i, h in enumerate(headings)]
    widest = max(widths, default=0) + 1
    name_width = max(8, min(max(len(name) for name in [*names_, "analyzer"]), width - widest, 30))
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
        for (label, _), name, row in zip(verdict.rows, names_, texts, strict=True):
            if label in verdict.baselines and not ruled:
                lines.append("-" * len(header))
                ruled = True
            lines.append(line(name, row, block))
    lines.extend(legend(verdict, marks, width))
    for note in verdict.notes:
        lines.extend(textwrap.wrap(f"note: {note}", width=width, subsequent_indent="  "))
    return "\n".join(lines)


def over_what(verdict: Verdict) -> str:
    """What a mean (and its interval) is over."""
    if verdict.seeds == 1:
        return "mean over images, one seed"
    return f"mean over images × {verdict.seeds} seeds"


def legend(verdict: Verdict, marks: Mapping[str, str], width: int = 100) -> list[str]:
    """The legend's items, packed into lines of at most ``width``; an item is split only if
    it is longer than a line."""
    items = [
        f"{over_what(verdict)} (95% bootstrap intervals in verdict.md)",
        f"* best: beats every other analyzer (paired Wilcoxon, Holm, p < {ALPHA})",
        "= tied best: not told apart from the top one",
        "↑/↓ better",
    ]
    if marks:
        items += [f"{letter} = beats {baseline}" for baseline, letter in marks.items()]
        items.append(f". = does not (paired Wilcoxon over images × seeds, p < {ALPHA})")
    else:
        items.append("no baseline ran: no score here is read against maps that ignore the model")
    lines = [""]
    pieces = [piece for item in items for piece in textwrap.wrap(item, width=width)]
    for item in pieces:
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


def _markdown_cell(cell: Cell, baselines: Sequence[str]) -> str:
    text = f"{cell.mean:.3f}"
    if cell.best or cell.tied_best:
        text = f"**{text}**" + (" (tied)" if cell.tied_best else "")
    if interval(cell):
        text += f" {interval(cell)}"
    tests = [
        f"{'beats' if cell.beats[b] else 'not'} {b} (p={cell.p_values[b]:.2g}"
        + (f", {cell.pairs_dropped[b]} undefined pairs left out" if cell.pairs_dropped[b] else "")
        + ")"
        for b in baselines
        if b in cell.beats
    ]
    return "<br>".join([text, *tests])


def markdown(verdict: Verdict, title: str) -> str:
    """``verdict.md``: the table with intervals and p-values, the analyzers against each other,
    how far the judgement holds, the protocol."""
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
        cells = [
            "–" if cell is None else _markdown_cell(cell, verdict.baselines)
            for criterion in verdict.criteria
            for cell in [verdict.cells.get((label, epochs, criterion.score))]
        ]
        name = plain(verdict.name(label, epochs))
        if label in verdict.baselines:
            name += " (baseline)"
        lines.append("| " + " | ".join([name, *cells]) + " |")
    lines += ["", *(f"- {c.short}: {c.name}" for c in verdict.criteria), ""]
    lines += [*(f"Note: {plain(note)}." for note in verdict.notes), ""] if verdict.notes else []
    lines += judgement_lines(verdict)
    lines.append(
        f"{over_what(verdict).capitalize()}, [the 95% percentile bootstrap interval: seeds "
        "drawn with replacement, then images within each; with one seed it covers the test "
        "images, not another training]. Bold: best (it beats every other analyzer: two-sided "
        "Wilcoxon signed-rank tests over images × seeds, Holm-adjusted over the pairs, "
        f"p < {ALPHA}), or tied best. 'beats B': a one-sided Wilcoxon signed-rank test over "
        "the per-image scores paired by test image and seed, in the criterion's better direction, "
        f"p < {ALPHA}. Baselines explain nothing about the model: `input` and `edge` ignore it, "
        "so a randomisation test calls them unchanged (MPRT 1, eMPRT 0); a fresh `noise` map "
        "changes completely (MPRT ≈ 0) although it explains nothing. A score is evidence only "
        "where it beats the baselines."
    )
    return "\n".join(lines) + "\n"


def ranking_sentences(verdict: Verdict) -> list[str]:
    """Per criterion (and training length) the analyzers against each other, in a sentence:
    best or tied best, the Holm-adjusted p-values of the top one against the others, the share
    of resamples it stays on top in, the pairs a test would need where the top two are tied,
    and the agreement with the ranking at the longest training."""
    short = {c.score: c.short for c in verdict.criteria}
    sentences = []
    for (score, epochs), ranking in verdict.rankings.items():
        where = short[score] + (f", {epochs} epochs" if verdict.several_epochs else "")
        if ranking.best:
            said = f"{ranking.best} beats every other analyzer"
        else:
            said = "tied best: " + ", ".join(ranking.tied_best)
        top = ranking.order[0]
        tests = ", ".join(
            f"vs {label} p={ranking.adjusted[top, label]:.2g}" for label in ranking.order[1:]
        )
        share = verdict.top_shares.get((score, epochs), {}).get(top, 0.0)
        sentence = f"{where}: {said} ({top} {tests}); top in {share:.0%} of resamples"
        needed = verdict.needed.get((score, epochs))
        if needed is not None:
            count, had = needed
            second = ranking.order[1]
            sentence += (
                f"; to tell {top} from {second} apart would take about {count:,.0f} image × seed "
                f"pairs (this sweep: {had:,})"
                if math.isfinite(count)
                else f"; {top} and {second} do not differ on average"
            )
        tau = verdict.across_epochs.get((score, epochs))
        if tau is not None and not math.isnan(tau):
            sentence += f"; Kendall τ with the ranking at {verdict.longest} epochs: {tau:.2f}"
        sentences.append(sentence)
    return sentences


def agreement_table(verdict: Verdict) -> tuple[list[str], list[list[str]]]:
    """The criteria (short names) and the rows of Kendall's τ between their rankings ("–"
    where undefined); no criteria if fewer than two ranked the analyzers."""
    criteria = [c.short for c in verdict.criteria if (c.short, c.short) in verdict.agreement]
    if len(criteria) < 2:
        return [], []
    rows = [
        [
            "–" if math.isnan(tau := verdict.agreement[first, second]) else f"{tau:.2f}"
            for second in criteria
        ]
        for first in criteria
    ]
    return criteria, rows


def control_lines(verdict: Verdict) -> list[str]:
    """verdict.md's table of the controls: per criterion and analyzer, each control's score
    beside the analyzer's own, and whether it fooled the criterion."""
    if not verdict.controls:
        return []
    short = {c.score: c.short for c in verdict.criteria}
    lines = [
        "",
        f"## Controls ({verdict.longest} epochs): maps no criterion may be fooled by",
        "",
        "| criterion | analyzer | control | control's score | its own | beats every baseline "
        "| fooled |",
        "|---|---|---|---|---|---|---|",
    ]
    for (score, label, control), result in verdict.controls.items():
        lines.append(
            f"| {short[score]} | {plain(label)} | {control.replace('_', '-')} | "
            f"{result.mean:.3f} | {result.source:.3f} | "
            f"{'yes' if result.beats_every_baseline else 'no'} | "
            f"{'**' + result.fooled + '**' if result.fooled else 'no'} |"
        )
    lines += [
        "",
        "Inverted and blank-like maps fool a criterion where they score at least as well as "
        "the analyzer's own maps (where those beat every baseline) or beat every baseline; "
        f"blurred maps where they score better than the analyzer's own (paired Wilcoxon, p < "
        f"{ALPHA}). Such a criterion is uninformative on this model, and the answer does not "
        "count it.",
    ]
    return lines


# The meta-evaluation's measures as MetaQuantus names them.
MEASURE_NAMES = {"iac_nr": "IAC NR", "iac_ar": "IAC AR", "iec_nr": "IEC NR", "iec_ar": "IEC AR"}


def meta_table(verdict: Verdict, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """The meta-evaluation's headings and rows: per criterion, its four measures for the input
    and the model perturbations (``compact``: their mean over both, for a terminal), the MC of
    each, its MC with the interval, and whether it is reliable on this model; no rows without
    a meta-evaluation."""
    if not verdict.meta:
        return [], []
    short = {c.score: c.short for c in verdict.criteria}
    spaces = (
        [("", ("input", "model"))] if compact else [(f"{s} ", (s,)) for s in ("input", "model")]
    )
    headings = [
        "criterion",
        *(f"{name}{MEASURE_NAMES[m]}" for name, _ in spaces for m in MEASURES),
        "input MC",
        "model MC",
        "MC [95%]",
        "reliable",
    ]
    rows = []
    for score, result in verdict.meta.items():
        rows.append(
            [
                short[score],
                *(
                    _number(
                        float(
                            np.nanmean([result.measures.get(s, {}).get(m, math.nan) for s in over])
                        )
                    )
                    for _, over in spaces
                    for m in MEASURES
                ),
                _number(result.mc_by_space.get("input", math.nan)),
                _number(result.mc_by_space.get("model", math.nan)),
                f"{result.mc:.2f} [{result.low:.2f}, {result.high:.2f}]"
                if not math.isnan(result.low)
                else f"{result.mc:.2f}",
                "yes" if result.reliable else "NO",
            ]
        )
    return headings, rows


def _number(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def meta_caption(verdict: Verdict) -> str:
    """What the meta-evaluation table shows, with its threshold and what noise would get."""
    some = next(iter(verdict.meta.values()))
    return (
        f"Meta-evaluation (MetaQuantus, Hedström et al. 2023) over {some.analyzers} analyzers "
        f"and {some.draws} perturbation draws per test, at {verdict.longest} epochs: IAC NR/AR, "
        "how far each analyzer's scores stay put under minor and move under disruptive "
        "perturbations (Wilcoxon p, 1 − p); IEC NR/AR, the share of analyzer × image ranks kept "
        "under minor, and of scores made worse under disruptive perturbations; MC, their mean "
        "(input and model averaged; 95% bootstrap interval over the draws). 1 is a perfectly "
        f"reliable criterion, about {some.noise_level:.2f} one whose scores are noise; below "
        f"{THRESHOLD} a criterion is unreliable on this model, and the answer does not count it."
    )


def control_summary(verdict: Verdict) -> list[str]:
    """Per criterion that declares controls, in a line: which fooled it, or that none did."""
    lines = []
    for criterion in verdict.criteria:
        tried = {control for (score, _, control) in verdict.controls if score == criterion.score}
        if not tried:
            continue
        reasons = verdict.uninformative.get(criterion.score)
        if reasons:
            more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
            lines.append(f"{criterion.short}: fooled, uninformative: {reasons[0]}{more}")
        else:
            names_ = ", ".join(sorted(c.replace("_", "-") for c in tried))
            lines.append(f"{criterion.short}: not fooled by the {names_} maps")
    return lines


def judgement_text(verdict: Verdict, width: int = 100) -> str:
    """For the terminal, under the table: the controls' outcome per criterion, the criteria's
    agreement matrix and the meta-evaluation table, where the sweep computed them."""
    lines: list[str] = []
    controls = control_summary(verdict)
    if controls:
        lines += ["", "controls (maps no criterion may be fooled by):"]
        lines += [
            wrapped
            for line in controls
            for wrapped in textwrap.wrap(
                line, width=width, initial_indent="  ", subsequent_indent="    "
            )
        ]
    criteria, rows = agreement_table(verdict)
    if criteria:
        lines += ["", "agreement of the criteria's rankings (Kendall's τ):"]
        lines += _columns(
            ["", *criteria], [[c, *row] for c, row in zip(criteria, rows, strict=True)]
        )
    headings, rows = meta_table(verdict, compact=True)
    if rows:
        lines += [
            "",
            "meta-evaluation of the criteria on this model (input and model averaged; "
            "each apart in verdict.md):",
        ]
        lines += _columns(headings, rows)
        lines += textwrap.wrap(meta_caption(verdict), width=width)
    return "\n".join(lines)


def _columns(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [headings, *rows]) for i in range(len(headings))]
    return [
        "  "
        + " ".join(
            f"{cell:<{widths[i]}}" if i == 0 else f"{cell:>{widths[i]}}"
            for i, cell in enumerate(row)
        )
        for row in [headings, *rows]
    ]


def meta_lines(verdict: Verdict) -> list[str]:
    """verdict.md's meta-evaluation table."""
    headings, rows = meta_table(verdict)
    if not rows:
        return []
    return [
        "",
        "## Meta-evaluation of the criteria on this model",
        "",
        "| " + " | ".join(headings) + " |",
        "|" + "---|" * len(headings),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        meta_caption(verdict),
    ]


def judgement_lines(verdict: Verdict) -> list[str]:
    """verdict.md's sections on the analyzers against each other and how far that holds."""
    if not verdict.rankings:
        return []
    lines = ["## The analyzers against each other", ""]
    lines += [f"- {plain(sentence)}" for sentence in ranking_sentences(verdict)]
    lines += control_lines(verdict)
    lines += meta_lines(verdict)
    criteria, rows = agreement_table(verdict)
    if criteria:
        lines += ["", "## How the criteria agree (Kendall's τ of their rankings)", ""]
        lines += ["| | " + " | ".join(criteria) + " |", "|" + "---|" * (len(criteria) + 1)]
        lines += [
            f"| {first} | " + " | ".join(row) + " |"
            for first, row in zip(criteria, rows, strict=True)
        ]
    return [*lines, ""]


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
    name, and is its own, whatever the values the sweep varied. With a meta-evaluation,
    ``meta_mc/<score>``: each criterion's MC."""
    scores = {score for _, _, score in verdict.cells}
    room = names.MAX_KEY - max((len(f"{score}_std/") for score in scores), default=0)
    taken: set[str] = set()
    rows = {row: metric_name(verdict.name(*row), taken, room) for row in verdict.rows}
    metrics = {f"meta_mc/{score}": result.mc for score, result in verdict.meta.items()}
    for (label, epochs, score), cell in verdict.cells.items():
        row = rows[label, epochs]
        metrics[f"{score}/{row}"] = cell.mean
        if not math.isnan(cell.std):
            metrics[f"{score}_std/{row}"] = cell.std
    return metrics
