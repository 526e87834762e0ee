"""The sweep's comparison as web pages: ``report.html`` (the verdict, then per criterion its
figures, the heatmaps side by side, then provenance) and ``table.html`` (every metric).

Both are self-contained UTF-8 files: images inline as ``data:`` URIs, styles inline, no
script, font or link out, so they open offline, from MLflow's artifact view or a mail. The
page is a Jinja2 template (``src/report/templates/report.html.j2``); Jinja2 escapes every value.
Pure rendering: the numbers and PNGs come from :mod:`src.report`.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.report.verdict import Cell, Verdict
from src.report.verdict_text import (
    agreement_table,
    interval,
    letters,
    meta_caption,
    meta_table,
    over_what,
    ranking_sentences,
)
from src.scores.compare import mean_std_text

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Image:
    src: str  # a data: URI
    alt: str
    caption: str = ""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image(png: bytes, alt: str, caption: str = "") -> Image:
    return Image(data_uri(png), alt, caption)


def inline_markdown(text: str):
    """The registry's descriptions (written for the table of docs/scores.md) as HTML: ``**bold**``,
    ``*em*``, ```code``` and escaped pipes only, everything else escaped. A markdown library
    for these few marks would be one more dependency."""
    from markupsafe import Markup

    # That table escapes its cells' pipes: "\|relevance\|".
    escaped = html.escape(text.replace("\\|", "|"), quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    escaped = re.sub(r"(?<![*\w])\*(?!\s)(.+?)\*(?![*\w])", r"<em>\1</em>", escaped)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return Markup(escaped)


def arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def verdict_view(verdict: Verdict, descriptions: Mapping[str, str]) -> dict:
    """What the template's verdict table shows: per criterion its heading, direction and what it
    measures (``descriptions``: score -> what, in the registry's markdown); per row its cells,
    the best marked, the baselines it beats by their letters, p-values in the cell's title."""
    marks = letters(verdict.baselines)
    criteria = [
        {
            "short": c.short,
            "name": c.name,
            "arrow": arrow(c.higher_is_better),
            "what": re.sub(r"[*`\\]", "", descriptions.get(c.score, "")),
        }
        for c in verdict.criteria
    ]
    rows = []
    seeds = set()
    for label, epochs in verdict.rows:
        cells = []
        for criterion in verdict.criteria:
            cell = verdict.cells.get((label, epochs, criterion.score))
            if cell is None:
                cells.append({"text": "–", "best": False, "beats": "", "title": "not scored"})
                continue
            seeds.add(cell.n_seeds)
            cells.append(_cell_view(cell, verdict.baselines, marks))
        rows.append(
            {
                "name": verdict.name(label, epochs),
                "baseline": label in verdict.baselines,
                "cells": cells,
            }
        )
    seeds_text = _seeds_text(seeds)
    baselines = ", ".join(f"{letter} = {baseline}" for baseline, letter in marks.items())
    return {
        "criteria": criteria,
        "rows": rows,
        "baselines": baselines,
        "notes": verdict.notes,
        "seeds_text": seeds_text,
        "over_what": over_what(verdict).capitalize(),
        "rankings": ranking_sentences(verdict),
        "controls": _controls_view(verdict),
        "agreement": dict(zip(("criteria", "rows"), agreement_table(verdict), strict=True)),
        "meta": _meta_view(verdict),
        "several_epochs": verdict.several_epochs,
    }


def _meta_view(verdict: Verdict) -> dict:
    """The meta-evaluation's table and caption (no rows without one)."""
    headings, rows = meta_table(verdict)
    return {
        "headings": headings,
        "rows": rows,
        "caption": meta_caption(verdict) if rows else "",
    }


def _cell_view(cell: Cell, baselines: Sequence[str], marks: Mapping[str, str]) -> dict:
    """One scored cell of :func:`verdict_view`: its mean and 95% bootstrap interval, whether it
    is best or tied best, the letters (``marks``) of the baselines it beats, and in its title
    the seeds and each paired test's p-value."""
    beaten = [marks[b] for b in baselines if cell.beats.get(b)]
    title = "; ".join(
        f"{'beats' if cell.beats[b] else 'does not beat'} {b}: p = {cell.p_values[b]:.2g}"
        for b in baselines
        if b in cell.beats
    )
    return {
        "text": f"{cell.mean:.3f}",
        "interval": interval(cell),
        "best": cell.best,
        "tied": cell.tied_best,
        "beats": ", ".join(beaten),
        "title": f"{cell.n_seeds} seed(s)" + (f"; {title}" if title else ""),
    }


def _controls_view(verdict: Verdict) -> list[dict]:
    """The controls' rows: per criterion and analyzer, each control's score beside the
    analyzer's own, whether it beat every baseline, and whether it fooled the criterion."""
    short = {c.score: c.short for c in verdict.criteria}
    return [
        {
            "criterion": short[score],
            "analyzer": label,
            "control": control.replace("_", "-"),
            "mean": f"{result.mean:.3f}",
            "source": f"{result.source:.3f}",
            "beats": "yes" if result.beats_every_baseline else "no",
            "fooled": result.fooled,
        }
        for (score, label, control), result in verdict.controls.items()
    ]


def _seeds_text(seeds: set[int]) -> str:
    """How many seeds the cells are over (``seeds``: each cell's count): "3 seeds", or
    "2–3 seeds" where cells differ."""
    counts = sorted(seeds)
    return (
        f"{counts[0]} seed{'s' if counts[0] != 1 else ''}"
        if len(counts) == 1
        else f"{counts[0]}–{counts[-1]} seeds"
    )


def render_report(**context) -> str:
    """``report.html`` from the template; see ``src/report/templates/report.html.j2`` for the
    keys."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("report.html.j2").render(**context)


def measures_table(
    table: pd.DataFrame, columns: Sequence[str], better: Mapping[str, bool | None]
) -> str:
    """An HTML table of ``mean ± std`` per row (analyzer x epochs) for ``columns`` (metric
    names with ``_mean`` / ``_std`` in ``table``): each heading with its better direction
    (``better``: metric -> higher is better, or None for a cost to read alongside), the best
    value of each column bold; no ± where there is no spread (nan: one seed, one pair)."""
    several_epochs = table["epochs"].nunique() > 1
    head = ["analyzer", *(["epochs"] if several_epochs else []), "seeds"]
    head += [
        f"{name.removeprefix('eval_').replace('_', ' ')}"
        + (f" {arrow(better[name])}" if better.get(name) is not None else "")
        for name in columns
    ]
    best = {}
    for name in columns:
        values = table[f"{name}_mean"].to_numpy(dtype=float)
        if better.get(name) is not None and np.isfinite(values).any():
            best[name] = np.nanmax(values) if better[name] else np.nanmin(values)
    lines = ["<table>", "<thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in head)]
    lines.append("</tr></thead><tbody>")
    for _, row in table.iterrows():
        cells = [html.escape(str(row["analyzer"]))]
        if several_epochs:
            cells.append(str(row["epochs"]))
        cells.append(str(row["n_seeds"]))
        lines.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells))
        for name in columns:
            mean, std = float(row[f"{name}_mean"]), float(row[f"{name}_std"])
            text = html.escape(mean_std_text(mean, std))
            is_best = name in best and np.isfinite(mean) and mean == best[name]
            lines.append(f"<td class='best'>{text}</td>" if is_best else f"<td>{text}</td>")
        lines.append("</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


TABLE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; color: #222; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: .85rem; margin-bottom: 1rem; }}
th, td {{ border: 1px solid #ddd; padding: .2rem .45rem; text-align: right; white-space: nowrap; }}
th {{ background: #f4f4f4; }}
th:first-child, td:first-child {{ text-align: left; position: sticky; left: 0; background: #fff; }}
th:first-child {{ background: #f4f4f4; }}
td.best {{ font-weight: bold; background: #e6f4e6; }}
.missing {{ color: #b00; }}
</style></head><body>
<h3>{title}</h3>{missing}
<h4>Explanation quality</h4><div class="scroll">{scores}</div>
<h4>Model, stability and cost</h4><div class="scroll">{others}</div>
<p>Mean ± std over seeds; ↑ higher is better, ↓ lower is better; bold: the best value of a
column. report.html holds the verdict, with 95% intervals and the tests against baselines.</p>
</body></html>
"""


def table_page(
    title: str,
    table: pd.DataFrame,
    scores: Sequence[str],
    others: Sequence[str],
    better: Mapping[str, bool | None],
    missing: Sequence[str],
) -> str:
    """``table.html``: the quality scores in one table, accuracy, stability and timings in
    another, so no score sits among the costs or off-screen."""
    note = (
        f"<p class='missing'>{len(missing)} job(s) did not finish: "
        f"{html.escape('; '.join(missing))}</p>"
        if missing
        else ""
    )
    return TABLE_PAGE.format(
        title=html.escape(title),
        missing=note,
        scores=measures_table(table, scores, better) if scores else "<p>not scored</p>",
        others=measures_table(table, others, better),
    )
