"""The comparison grid of a sweep: the inputs, then one row of heatmaps per analyzer with its
scores beside it (the report's ``grid.png``), drawn as :mod:`src.report.figures` draws heatmaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.report.figures import (
    _figure,
    _show_input,
    _show_relevance,
    colour_bar,
    normalise,
    outline_mask,
)


@dataclass(frozen=True)
class GridRow:
    """One analyzer's row of :func:`comparison_grid`."""

    label: str  # the analyzer and any setting that sets it apart
    heatmaps: np.ndarray  # one per image of the grid
    predictions: np.ndarray  # its model's classes for the images
    explained: np.ndarray  # the class each heatmap explains
    display: str = "signed"
    scores: Sequence[str] = ()  # lines of text beside the row ("AOPC 0.412 *")


LABEL_WRAP = 22  # characters per line of a row's label (a name is never cut inside)
GRID_TEXT = 8  # points


def _explains_note(row: GridRow, labels: np.ndarray) -> str | None:
    """What a row explains, if one phrase says it for every image; None: say it per image."""
    if np.array_equal(row.explained, row.predictions):
        return "explains the predicted class"
    if np.array_equal(row.explained, labels):
        return "explains the true class"
    return None


def comparison_grid(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    rows: Sequence[GridRow],
    class_names: Sequence[str],
    title: str,
    masks: np.ndarray | None = None,
):
    """The input images as the first row (true and predicted class above each), then one row
    of heatmaps per analyzer on one labelled colour scale: its label (wrapped, in a column of
    its own so labels never overlap the images or each other), and its scores beside it.

    Every row explains the same images; ``predictions`` are the header's (the first row's
    model). Where a row's model predicts otherwise, or its heatmaps explain a class no phrase
    sums up, the cell says so below. ``masks`` (a planted marker) are outlined on every image.
    """
    count = len(images)
    labels_wrapped = [_wrapped(row.label) for row in rows]
    cells = _Cells(*_grid_figure(rows, labels_wrapped, count), masks=masks, count=count)
    _draw_inputs(cells, images, labels, predictions, class_names)
    drawn = None
    for number, row in enumerate(rows, start=1):
        shown = _draw_row(
            cells, number, row, labels_wrapped[number - 1], labels, predictions, class_names
        )
        drawn = shown if shown is not None else drawn
    if drawn is not None:
        bar_axis = cells.figure.add_subplot(cells.grid[-1, 1 + count // 4 : 1 + count - count // 4])
        colour_bar(cells.figure, drawn, bar_axis)
    # At a fixed distance from the top, whatever the figure's height, above the headers.
    figure = cells.figure
    figure.suptitle(title, fontsize=GRID_TEXT + 2, y=1 - 0.12 / figure.get_figheight(), va="top")
    return figure


def _grid_figure(rows: Sequence[GridRow], labels_wrapped: list[list[str]], count: int):
    """The grid's figure and its cells: a column for the labels, one per image, one for the
    scores; a row for the inputs, one per analyzer, one for the colour bar."""
    score_lines = max([len(row.scores) for row in rows] + [0])
    score_chars = max([len(line) for row in rows for line in row.scores] + [0])
    longest = max([len(line) for lines in labels_wrapped for line in lines] + [0])
    # A character of the label font is at most ~0.62 of its size wide.
    label_width = max(1.7, 0.62 * GRID_TEXT / 72 * longest + 0.2)
    score_width = 0.35 + 0.6 * (GRID_TEXT - 1) / 72 * score_chars if score_chars else 0.05
    row_height = max(1.15, 0.16 * score_lines + 0.25)
    heights = [1.45, *([row_height] * len(rows)), 0.3]
    widths = [label_width, *([1.05] * count), score_width]
    figure = _figure(figsize=(sum(widths) + 0.3, sum(heights) + 1.35))
    grid = figure.add_gridspec(
        len(heights),
        len(widths),
        height_ratios=heights,
        width_ratios=widths,
        left=0.1 / sum(widths),
        right=1 - 0.1 / sum(widths),
        top=1 - 0.75 / (sum(heights) + 1.35),
        bottom=0.6 / (sum(heights) + 1.35),
        wspace=0.08,
        hspace=0.5,
    )
    return figure, grid


@dataclass
class _Cells:
    """The cells of :func:`comparison_grid`'s figure, made axes as they are drawn into."""

    figure: Any
    grid: Any
    masks: np.ndarray | None
    count: int  # images per row

    def text(self, row: int, column: int):
        axis = self.figure.add_subplot(self.grid[row, column])
        axis.set_axis_off()
        return axis

    def image(self, row: int, column: int):
        axis = self.figure.add_subplot(self.grid[row, column])
        axis.set_xticks([])
        axis.set_yticks([])
        if self.masks is not None:
            outline_mask(axis, self.masks[column - 1])
        return axis


def _draw_inputs(
    cells: _Cells,
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
) -> None:
    """The first row: the input images, the true and predicted class above each."""
    cells.text(0, 0).text(1.0, 0.5, "input", ha="right", va="center", fontsize=GRID_TEXT)
    for column in range(cells.count):
        axis = cells.image(0, column + 1)
        _show_input(axis, images[column])
        wrong = labels[column] != predictions[column]
        axis.set_title(
            f"true {_short(class_names[labels[column]])}", fontsize=GRID_TEXT - 1, pad=12
        )
        axis.text(
            0.5,
            1.02,
            f"pred {_short(class_names[predictions[column]])}",
            transform=axis.transAxes,
            ha="center",
            va="bottom",
            fontsize=GRID_TEXT - 1,
            color="crimson" if wrong else "black",
        )


def _draw_row(
    cells: _Cells,
    number: int,
    row: GridRow,
    lines: list[str],
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
):
    """One analyzer's row: its label, its heatmaps (with what differs from the header below
    them), its scores; the last heatmap drawn (None without images), for the colour bar."""
    note = _explains_note(row, labels)
    label = cells.text(number, 0)
    label.text(1.0, 0.98, "\n".join(lines), ha="right", va="top", fontsize=GRID_TEXT)
    if note:
        label.text(
            1.0,
            0.0,
            note.replace("explains ", "explains\n"),
            ha="right",
            va="bottom",
            fontsize=GRID_TEXT - 2,
            color="dimgray",
        )
    drawn = None
    maps = normalise(row.heatmaps, row.display)
    for column in range(cells.count):
        axis = cells.image(number, column + 1)
        drawn = _show_relevance(axis, maps[column], row.display)
        caption = []
        if row.predictions[column] != predictions[column]:
            caption.append(f"pred {_short(class_names[row.predictions[column]])}")
        if note is None:
            caption.append(f"expl. {_short(class_names[row.explained[column]])}")
        if caption:
            axis.set_xlabel("\n".join(caption), fontsize=GRID_TEXT - 2, color="crimson")
    if row.scores:
        cells.text(number, cells.count + 1).text(
            0.05,
            0.5,
            "\n".join(row.scores),
            ha="left",
            va="center",
            fontsize=GRID_TEXT - 1,
            family="monospace",
        )
    return drawn


def _wrapped(label: str) -> list[str]:
    """A row's label in lines of about ``LABEL_WRAP`` characters, broken between words only
    (a longer word keeps its own line), at most four lines."""
    import textwrap

    lines = textwrap.wrap(label, LABEL_WRAP, break_on_hyphens=False, break_long_words=False)
    return (lines or [""])[:3] + (["…"] if len(lines) > 4 else lines[3:4])


def _short(name: str, limit: int = 12) -> str:
    """A class name that fits under a grid cell."""
    return name if len(name) <= limit else name[: limit - 1] + "…"
