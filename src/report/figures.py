"""Heatmap figures in iNNvestigate's convention.

Signed relevance: sum over channels, divide each image's map by its max |value| (so it lies in
[-1, 1]) and draw it with ``seismic``, white at zero: red for the explained class, blue against
it. Unsigned maps (``display: absolute``): |relevance|, divided by its max, on the same scale
(white to red), so every heatmap reads against one colour bar and none is drawn white-on-black
beside black-on-white inputs. The normalisation is per image, so colours compare within an
image, not across images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from src.scores.metrics import sum_channels

RELEVANCE_CMAP = "seismic"
OUTLINE_COLOURS = {"signed": "dimgray", "absolute": "dimgray"}
SCALE_LABEL = "relevance ÷ max |relevance| of each map (|relevance| maps: 0 to 1)"
MARKER_COLOUR = "limegreen"  # the planted marker's outline (experiment=shortcut)


def _figure(**kwargs):
    """A matplotlib ``Figure`` from the object API: no pyplot (a third of a second to import,
    and a global registry of open figures to close), drawn to files only (Agg)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


DPI = 110


def save_figure(figure, path, dpi: float | str = DPI) -> None:
    """Write a figure to a PNG file (or a file object); ``dpi="figure"``: as MLflow's
    ``log_figure`` saves it."""
    figure.savefig(path, dpi=dpi, format="png")


def _show_relevance(axis, normalised_map: np.ndarray, display: str = "signed"):
    """One map from :func:`normalise` on the shared scale: seismic on [-1, 1] (an absolute
    map, in [0, 1], uses its white-to-red half). Returns the image, for a colour bar."""
    return axis.imshow(normalised_map, cmap=RELEVANCE_CMAP, vmin=-1, vmax=1)


def colour_bar(figure, image, axis, orientation: str = "horizontal") -> None:
    """The shared relevance scale, labelled, in ``axis``."""
    bar = figure.colorbar(image, cax=axis, orientation=orientation)
    bar.set_ticks([-1, -0.5, 0, 0.5, 1])
    bar.set_label(SCALE_LABEL, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def figure_png(figure, dpi: float | str = DPI) -> bytes:
    """A figure as PNG bytes (see :func:`save_figure`)."""
    import io

    buffer = io.BytesIO()
    save_figure(figure, buffer, dpi)
    return buffer.getvalue()


def _show_input(axis, image: np.ndarray) -> None:
    """An ``(H, W, C)`` image in [0, 1]: grey images dark on light (as MNIST is drawn), RGB in
    colour, other channel counts as their mean in grey."""
    if image.shape[-1] == 3:
        axis.imshow(np.clip(image, 0, 1))
    else:
        axis.imshow(image.mean(axis=-1), cmap="gray_r", vmin=0, vmax=1)


def normalise(heatmaps: np.ndarray, display: str = "signed") -> np.ndarray:
    """``(N, H, W[, C])`` relevance -> ``(N, H, W)`` in [-1, 1] (signed) or [0, 1] (absolute)."""
    maps = sum_channels(heatmaps).astype(np.float64)
    maps = np.abs(maps) if display == "absolute" else maps
    scale = np.abs(maps).reshape(len(maps), -1).max(axis=1)
    scale[scale == 0] = 1.0  # an all-zero map stays zero instead of becoming NaN
    return maps / scale[:, None, None]


HEATMAP_COLUMNS = 5  # images per line of a run's heatmap figure: legible at MLflow's preview width
TEXT_SIZE = 9  # points; ~14 px in the PNG, ~10 px or more where MLflow previews it


def shown_of(shown: int, total: int) -> str:
    """What a figure bounded by ``report.grid_images`` says it shows."""
    return f"the first {shown} of {total} explained images (report.grid_images; heatmaps.npz: all)"


def heatmap_figure(
    images: np.ndarray,
    heatmaps: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
    title: str,
    display: str = "signed",
    masks: np.ndarray | None = None,
    explained: np.ndarray | None = None,
    max_images: int | None = None,
):
    """Each image above its heatmap (the input's outline over it), five images to a line, the
    shared colour scale below. Above each image its true and predicted class (the prediction
    red when wrong); above each heatmap the class it explains (``explained``, the predicted
    class if not given). Where ``masks`` (N, H, W) are given (a planted marker), their outline
    on both. At most the first ``max_images`` images (the title then says how many of how
    many): drawing costs grow with the images, a person looks at a few."""
    explained = predictions if explained is None else explained
    total = len(images)
    count = total if max_images is None else min(max_images, total)
    if count < total:
        title = f"{title}\n{shown_of(count, total)}"
    images, heatmaps, labels = images[:count], heatmaps[:count], labels[:count]
    predictions, explained = predictions[:count], explained[:count]
    masks = None if masks is None else masks[:count]
    maps = normalise(heatmaps, display)
    columns = min(count, HEATMAP_COLUMNS)
    lines = -(-count // columns)
    figure = _figure(figsize=(1.6 * columns + 0.3, 3.55 * lines + 1.0), layout="constrained")
    axes = figure.subplots(2 * lines, columns, squeeze=False)
    drawn = None
    for index in range(lines * columns):
        top, bottom = (
            axes[2 * (index // columns), index % columns],
            axes[2 * (index // columns) + 1, index % columns],
        )
        for axis in (top, bottom):
            axis.set_xticks([])
            axis.set_yticks([])
        if index >= count:
            top.set_visible(False)
            bottom.set_visible(False)
            continue
        image = images[index]
        correct = labels[index] == predictions[index]
        _show_input(top, image)
        top.set_title(f"true {class_names[labels[index]]}", fontsize=TEXT_SIZE, pad=16)
        top.text(
            0.5,
            1.02,
            f"pred {class_names[predictions[index]]}",
            transform=top.transAxes,
            ha="center",
            va="bottom",
            fontsize=TEXT_SIZE,
            color="black" if correct else "crimson",
        )
        drawn = _show_relevance(bottom, maps[index], display)
        bottom.set_title(f"explains {class_names[explained[index]]}", fontsize=TEXT_SIZE)
        # The input's outline over the heatmap, so relevance can be read against the shape.
        bottom.contour(
            image.mean(axis=-1), levels=[0.5], colors=OUTLINE_COLOURS[display], linewidths=0.6
        )
        if masks is not None:
            for axis in (top, bottom):
                outline_mask(axis, masks[index])
    bar = figure.colorbar(drawn, ax=axes, orientation="horizontal", fraction=0.04, pad=0.02)
    bar.set_label(SCALE_LABEL, fontsize=TEXT_SIZE)
    bar.ax.tick_params(labelsize=TEXT_SIZE - 1)
    figure.suptitle(title, fontsize=TEXT_SIZE + 2)
    return figure


def heatmap_strip(
    images: np.ndarray,
    heatmaps: np.ndarray,
    display: str = "signed",
    columns: int = HEATMAP_COLUMNS,
    scale: int = 3,
    max_images: int | None = None,
) -> np.ndarray:
    """A compact ``(H, W, 3)`` uint8 picture for MLflow's image charts, which show every run's
    image of a key side by side as 256-pixel thumbnails (text would be unreadable there): each
    input above its heatmap, ``columns`` to a line, pixels enlarged ``scale`` times, the same
    colours as the figures; at most the first ``max_images`` images."""
    from matplotlib import colormaps

    images, heatmaps = images[:max_images], heatmaps[:max_images]
    maps = normalise(heatmaps, display)
    relevance = colormaps[RELEVANCE_CMAP]((maps + 1) / 2)[..., :3]
    count, height, width = maps.shape
    inputs = images[..., :3] if images.shape[-1] == 3 else 1 - images.mean(axis=-1)[..., None]
    inputs = np.broadcast_to(np.clip(inputs, 0, 1), (count, height, width, 3))
    lines = -(-count // columns)
    gap = 2
    canvas = np.ones((lines * (2 * height + 3 * gap), columns * (width + gap) + gap, 3))
    for index in range(count):
        top = (index // columns) * (2 * height + 3 * gap) + gap
        left = (index % columns) * (width + gap) + gap
        canvas[top : top + height, left : left + width] = inputs[index]
        canvas[top + height + gap : top + 2 * height + gap, left : left + width] = relevance[index]
    canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    return (canvas * 255).round().astype(np.uint8)


def outline_mask(axis, mask: np.ndarray) -> None:
    """The outline of a ground-truth mask, drawn around its pixels' edges."""
    if mask.any():
        axis.contour(
            np.pad(mask.astype(float), 1),
            levels=[0.5],
            colors=MARKER_COLOUR,
            linewidths=1.0,
            # Padded pixel j sits at j - 1: level 0.5 falls on the edges between pixels.
            extent=(-1, mask.shape[1], -1, mask.shape[0]),
        )


def training_figure(history: dict[str, list[float]]):
    """Loss and accuracy per epoch, train and validation; ticks at whole epochs."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(figsize=(8, 3))
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for split in ("train", "val"):
        for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
            values = history.get(f"{split}_{metric}")
            if values:
                axis.plot(range(1, len(values) + 1), values, marker="o", label=split)
                axis.set_title(metric)
                axis.set_xlabel("epoch")
    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axis.legend()
    figure.tight_layout()
    return figure


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
    score_lines = max([len(row.scores) for row in rows] + [0])
    score_chars = max([len(line) for row in rows for line in row.scores] + [0])
    labels_wrapped = [_wrapped(row.label) for row in rows]
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

    def text_axis(row: int, column: int):
        axis = figure.add_subplot(grid[row, column])
        axis.set_axis_off()
        return axis

    def image_axis(row: int, column: int):
        axis = figure.add_subplot(grid[row, column])
        axis.set_xticks([])
        axis.set_yticks([])
        if masks is not None:
            outline_mask(axis, masks[column - 1])
        return axis

    text_axis(0, 0).text(1.0, 0.5, "input", ha="right", va="center", fontsize=GRID_TEXT)
    for column in range(count):
        axis = image_axis(0, column + 1)
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
    drawn = None
    for number, row in enumerate(rows, start=1):
        note = _explains_note(row, labels)
        lines = labels_wrapped[number - 1]
        label = text_axis(number, 0)
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
        maps = normalise(row.heatmaps, row.display)
        for column in range(count):
            axis = image_axis(number, column + 1)
            drawn = _show_relevance(axis, maps[column], row.display)
            caption = []
            if row.predictions[column] != predictions[column]:
                caption.append(f"pred {_short(class_names[row.predictions[column]])}")
            if note is None:
                caption.append(f"expl. {_short(class_names[row.explained[column]])}")
            if caption:
                axis.set_xlabel("\n".join(caption), fontsize=GRID_TEXT - 2, color="crimson")
        if row.scores:
            text_axis(number, count + 1).text(
                0.05,
                0.5,
                "\n".join(row.scores),
                ha="left",
                va="center",
                fontsize=GRID_TEXT - 1,
                family="monospace",
            )
    if drawn is not None:
        bar_axis = figure.add_subplot(grid[-1, 1 + count // 4 : 1 + count - count // 4])
        colour_bar(figure, drawn, bar_axis)
    # At a fixed distance from the top, whatever the figure's height, above the headers.
    figure.suptitle(title, fontsize=GRID_TEXT + 2, y=1 - 0.12 / figure.get_figheight(), va="top")
    return figure


def _wrapped(label: str) -> list[str]:
    """A row's label in lines of about ``LABEL_WRAP`` characters, broken between words only
    (a longer word keeps its own line), at most four lines."""
    import textwrap

    lines = textwrap.wrap(label, LABEL_WRAP, break_on_hyphens=False, break_long_words=False)
    return (lines or [""])[:3] + (["…"] if len(lines) > 4 else lines[3:4])


def _short(name: str, limit: int = 12) -> str:
    """A class name that fits under a grid cell."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def metrics_vs_epochs(table, metrics: Sequence[str]):
    """One panel per metric, mean over seeds ± std, per analyzer: against epochs, one line per
    analyzer, each nudged sideways so equal values do not hide one another; with one training
    length, one bar per analyzer instead of single dots.

    ``table`` has columns ``analyzer``, ``epochs`` and ``<metric>_mean`` / ``<metric>_std``.
    """
    analyzers = list(dict.fromkeys(table["analyzer"]))
    epochs = sorted(table["epochs"].unique())
    columns = min(4, len(metrics))
    rows = -(-len(metrics) // columns)
    width = 4.2 if len(epochs) > 1 else max(3.2, 0.45 * len(analyzers) + 1.6)
    figure = _figure(figsize=(width * columns, 3.6 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(metrics) :]:
        axis.set_visible(False)
    colours = {name: f"C{index % 10}" for index, name in enumerate(analyzers)}
    markers = "os^Dvp<>h*"
    spacing = min(np.diff(epochs)) if len(epochs) > 1 else 1.0
    for axis, metric in zip(axes.flat[: len(metrics)], metrics, strict=True):
        for index, analyzer in enumerate(analyzers):
            rows_of = table[table["analyzer"] == analyzer].sort_values("epochs")
            mean = rows_of[f"{metric}_mean"].to_numpy(dtype=float)
            std = np.nan_to_num(rows_of[f"{metric}_std"].to_numpy(dtype=float))
            if len(epochs) == 1:
                axis.bar(index, mean, yerr=std, capsize=3, color=colours[analyzer], label=analyzer)
                continue
            nudge = (index - (len(analyzers) - 1) / 2) * 0.06 * spacing
            x = rows_of["epochs"].to_numpy(dtype=float) + nudge
            axis.errorbar(
                x,
                mean,
                yerr=std,
                marker=markers[index % len(markers)],
                capsize=3,
                color=colours[analyzer],
                label=analyzer,
            )
        axis.set_title(metric.replace("_", " "), fontsize=9)
        if len(epochs) == 1:
            axis.set_xticks(range(len(analyzers)), analyzers, rotation=40, ha="right", fontsize=7)
            axis.set_xlabel(f"{epochs[0]} epochs", fontsize=8)
        else:
            axis.set_xticks(epochs)
            axis.set_xlabel("epochs")
    if len(epochs) > 1:
        axes[0, 0].legend(fontsize=7)
    return figure


def score_intervals(
    rows: Sequence[tuple[str, float, float, bool, bool]], title: str, higher_is_better: bool
):
    """One criterion at a glance: per row (``label, mean, half-width of the 95% interval,
    baseline?, best?``) a dot with its interval; baselines gray, the best marked."""
    figure = _figure(figsize=(5.2, 0.36 * len(rows) + 1.1), layout="constrained")
    axis = figure.subplots()
    for position, (_, mean, half_width, baseline, best) in enumerate(rows):
        colour = "gray" if baseline else ("tab:green" if best else "tab:blue")
        error = None if np.isnan(half_width) else half_width
        axis.errorbar(
            mean,
            position,
            xerr=error,
            marker="*" if best else "o",
            markersize=10 if best else 6,
            color=colour,
            capsize=3,
        )
    axis.set_yticks(range(len(rows)), [row[0] for row in rows], fontsize=8)
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    axis.set_xlabel(f"{'higher' if higher_is_better else 'lower'} is better", fontsize=8)
    axis.set_title(title, fontsize=9)
    return figure


def perturbation_figure(
    curve: np.ndarray,
    random_curve: np.ndarray,
    title: str,
    lerf_curve: np.ndarray | None = None,
):
    """Accuracy as the most relevant regions are perturbed, as the least relevant are, and
    with a random order."""
    from src.scores.metrics import aopc

    figure = _figure(figsize=(5, 3.4))
    axis = figure.subplots()
    steps = np.arange(len(curve))
    axis.plot(steps, curve, marker="o", label=f"most relevant first (AOPC {aopc(curve):.3f})")
    axis.plot(
        steps,
        random_curve,
        marker="o",
        color="gray",
        label=f"random order (AOPC {aopc(random_curve):.3f})",
    )
    if lerf_curve is not None:
        axis.plot(
            steps,
            lerf_curve,
            marker="o",
            color="tab:green",
            label=f"least relevant first (AOPC {aopc(lerf_curve):.3f})",
        )
    axis.set_xlabel("regions perturbed")
    axis.set_ylabel("accuracy")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def randomisation_figure(
    layers: Sequence[str],
    correlations: np.ndarray,
    examples: Sequence[np.ndarray],
    title: str,
    display: str = "signed",
    blank_shares: np.ndarray | None = None,
    row_labels: Sequence[str] | None = None,
):
    """Left: MPRT's similarity with the original heatmaps as layers are re-initialised from
    the top, and the share of maps gone blank (counted as changed). Right: a few images'
    heatmaps at each step (columns), original first, each row named by ``row_labels`` (the
    image and the class explained)."""
    rows, columns = len(examples[0]), len(examples)
    figure = _figure(figsize=(4 + 1.2 * columns, max(3.2, 1.25 * rows + 0.8)))
    grid = figure.add_gridspec(rows, columns + 3)
    curve_axis = figure.add_subplot(grid[:, :3])
    steps = range(1, len(correlations) + 1)
    curve_axis.plot(steps, correlations, marker="o", label="similarity (Spearman, blank = 0)")
    if blank_shares is not None:
        curve_axis.plot(steps, blank_shares, marker="x", linestyle="--", label="share blank")
        curve_axis.legend(fontsize=7, loc="lower left")
    curve_axis.set_xticks(
        range(1, len(layers) + 1), [f"…{name}" for name in layers], rotation=45, fontsize=7
    )
    curve_axis.set_ylim(-0.2, 1.05)
    curve_axis.axhline(0, color="gray", linewidth=0.5)
    curve_axis.set_xlabel("re-initialised down to")
    curve_axis.set_ylabel("MPRT: similarity with original |heatmap|")
    for column, heatmaps in enumerate(examples):
        maps = normalise(heatmaps, display)
        for row in range(rows):
            axis = figure.add_subplot(grid[row, column + 3])
            _show_relevance(axis, maps[row], display)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title("original" if column == 0 else layers[column - 1], fontsize=7)
            if column == 0 and row_labels is not None:
                axis.set_ylabel(row_labels[row], fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def quality_curves(
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    panels: Sequence[tuple[str, str, int]],
    title: str,
):
    """One panel per per-step score (``panels``: metric, what the steps are, first step), one
    line per analyzer with the seeds' spread shaded; the random order's mean, gray and dashed,
    on the most-relevant-first panel.

    ``curves`` maps a metric name to ``{analyzer: (mean, std)}`` per step.
    """
    panels = [panel for panel in panels if curves.get(panel[0])]
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = _figure(figsize=(4.6 * columns, 3.6 * rows + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (key, what, first_step) in zip(axes.flat, panels, strict=False):
        for analyzer, (mean, std) in curves[key].items():
            steps = np.arange(len(mean)) + first_step
            (line,) = axis.plot(steps, mean, marker="o", markersize=3, label=analyzer)
            axis.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            axis.set_xticks(steps)
        if key == "eval_perturbation_accuracy":
            random_orders = list(curves.get("eval_perturbation_accuracy_random", {}).values())
            if random_orders:
                baseline = np.mean([mean for mean, _ in random_orders], axis=0)
                axis.plot(
                    np.arange(len(baseline)),
                    baseline,
                    color="gray",
                    linestyle="--",
                    label="random order",
                )
        axis.set_title(key.removeprefix("eval_").replace("_", " "), fontsize=9)
        axis.set_xlabel(what, fontsize=8)
        axis.legend(fontsize=6)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
