"""Heatmap figures in iNNvestigate's convention.

Signed relevance: sum over channels, divide each image's map by its max |value| (so it lies in
[-1, 1]) and draw it with ``seismic``, white at zero. Unsigned maps (``display: absolute``):
|relevance|, divided by its max, in gray. The normalisation is per image, so colours compare
within an image, not across images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from src.metrics import sum_channels

SIGNED_CMAP = "seismic"
ABSOLUTE_CMAP = "gray"
OUTLINE_COLOURS = {"signed": "dimgray", "absolute": "orange"}
MARKER_COLOUR = "limegreen"  # the planted marker's outline (experiment=shortcut)


def _figure(**kwargs):
    """A matplotlib ``Figure`` from the object API: no pyplot (a third of a second to import,
    and a global registry of open figures to close), drawn to files only (Agg)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(figure, path) -> None:
    """Write a figure to a PNG file."""
    figure.savefig(path, dpi=110)


def _show_relevance(axis, normalised_map: np.ndarray, display: str) -> None:
    """One map from :func:`normalise`: |relevance| in gray on [0, 1], else seismic on [-1, 1]."""
    if display == "absolute":
        axis.imshow(normalised_map, cmap=ABSOLUTE_CMAP, vmin=0, vmax=1)
    else:
        axis.imshow(normalised_map, cmap=SIGNED_CMAP, vmin=-1, vmax=1)


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


def heatmap_figure(
    images: np.ndarray,
    heatmaps: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
    title: str,
    display: str = "signed",
    masks: np.ndarray | None = None,
):
    """Input images on top, heatmaps overlaid on them below, one column per image; where
    ``masks`` (N, H, W) are given (a planted marker), their outline on both."""
    maps = normalise(heatmaps, display)
    count = len(images)
    figure = _figure(figsize=(1.5 * count, 3.6))
    axes = figure.subplots(2, count, squeeze=False)
    for column in range(count):
        image = images[column]
        true_name, predicted_name = class_names[labels[column]], class_names[predictions[column]]
        correct = labels[column] == predictions[column]
        top, bottom = axes[0, column], axes[1, column]
        _show_input(top, image)
        top.set_title(
            f"true {true_name}\npred {predicted_name}",
            fontsize=7,
            color="black" if correct else "crimson",
        )
        _show_relevance(bottom, maps[column], display)
        # The input's outline over the heatmap, so relevance can be read against the shape.
        bottom.contour(
            image.mean(axis=-1), levels=[0.5], colors=OUTLINE_COLOURS[display], linewidths=0.6
        )
        if masks is not None:
            for axis in (top, bottom):
                outline_mask(axis, masks[column])
        for axis in (top, bottom):
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=8)
    axes[1, 0].set_ylabel("relevance", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


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
    """Loss and accuracy per epoch, train and validation."""
    figure = _figure(figsize=(8, 3))
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for split in ("train", "val"):
        for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
            values = history.get(f"{split}_{metric}")
            if values:
                axis.plot(range(1, len(values) + 1), values, marker="o", label=split)
                axis.set_title(metric)
                axis.set_xlabel("epoch")
    loss_axis.legend()
    figure.tight_layout()
    return figure


def comparison_grid(
    images: np.ndarray,
    labels: np.ndarray,
    rows: Sequence[tuple[str, np.ndarray, str]],
    class_names: Sequence[str],
    title: str,
    masks: np.ndarray | None = None,
):
    """The input images as the first row, then one row of heatmaps per analyzer.

    ``rows`` holds ``(analyzer, heatmaps, display)``; every row explains the same images.
    ``masks`` (a planted marker) are outlined on every image.
    """
    count = len(images)
    figure = _figure(figsize=(1.3 * count + 1, 1.4 * (len(rows) + 1) + 0.6))
    axes = figure.subplots(len(rows) + 1, count, squeeze=False)
    for column in range(count):
        _show_input(axes[0, column], images[column])
        axes[0, column].set_title(class_names[labels[column]], fontsize=7)
    axes[0, 0].set_ylabel("input", fontsize=8)
    for row, (analyzer, heatmaps, display) in enumerate(rows, start=1):
        maps = normalise(heatmaps, display)
        for column in range(count):
            _show_relevance(axes[row, column], maps[column], display)
        axes[row, 0].set_ylabel(analyzer, fontsize=8)
    if masks is not None:
        for column in range(count):
            for axis in axes[:, column]:
                outline_mask(axis, masks[column])
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def metrics_vs_epochs(table, metrics: Sequence[str]):
    """One panel per metric: mean over seeds against epochs, one line per analyzer, ±std shaded.

    ``table`` has columns ``analyzer``, ``epochs`` and ``<metric>_mean`` / ``<metric>_std``.
    """
    columns = min(4, len(metrics))
    rows = -(-len(metrics) // columns)
    figure = _figure(figsize=(4.2 * columns, 3.4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(metrics) :]:
        axis.set_visible(False)
    for axis, metric in zip(axes.flat[: len(metrics)], metrics, strict=True):
        for analyzer, rows in table.groupby("analyzer", sort=False):
            rows = rows.sort_values("epochs")
            mean = rows[f"{metric}_mean"].to_numpy(dtype=float)
            std = np.nan_to_num(rows[f"{metric}_std"].to_numpy(dtype=float))
            drawn = axis.errorbar(
                rows["epochs"], mean, yerr=std, marker="o", capsize=3, label=analyzer
            )
            colour = drawn.lines[0].get_color()
            axis.fill_between(rows["epochs"], mean - std, mean + std, color=colour, alpha=0.2)
        axis.set_title(metric.replace("_", " "), fontsize=9)
        axis.set_xlabel("epochs")
        axis.set_xticks(sorted(table["epochs"].unique()))
    axes[0, 0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def perturbation_figure(
    curve: np.ndarray,
    random_curve: np.ndarray,
    title: str,
    lerf_curve: np.ndarray | None = None,
):
    """Accuracy as the most relevant regions are perturbed, as the least relevant are, and
    with a random order."""
    from src.metrics import aopc

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
):
    """Left: MPRT's similarity with the original heatmaps as layers are re-initialised from
    the top, and the share of maps gone blank (counted as changed). Right: a few images'
    heatmaps at each step (columns), original first."""
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
