"""Heatmap figures in iNNvestigate's convention.

Signed relevance: sum over channels, divide each image's map by its max |value| (so it lies in
[-1, 1]) and draw it with ``seismic``, white at zero: red for the explained class, blue against
it. Unsigned maps (``display: absolute``): |relevance|, divided by its max, on the same scale
(white to red), so every heatmap reads against one colour bar and none is drawn white-on-black
beside black-on-white inputs. The normalisation is per image, so colours compare within an
image, not across images.

This module draws a run's figures and the parts every figure shares; the sweep's comparison
grid is :mod:`src.report.grid`, the charts of numbers :mod:`src.report.charts`.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        _draw_input(
            top, image, class_names[labels[index]], class_names[predictions[index]], correct
        )
        drawn = _draw_heatmap(bottom, image, maps[index], class_names[explained[index]], display)
        if masks is not None:
            for axis in (top, bottom):
                outline_mask(axis, masks[index])
    bar = figure.colorbar(drawn, ax=axes, orientation="horizontal", fraction=0.04, pad=0.02)
    bar.set_label(SCALE_LABEL, fontsize=TEXT_SIZE)
    bar.ax.tick_params(labelsize=TEXT_SIZE - 1)
    figure.suptitle(title, fontsize=TEXT_SIZE + 2)
    return figure


def _draw_input(axis, image: np.ndarray, true: str, predicted: str, correct: bool) -> None:
    """One input of :func:`heatmap_figure` with its true class above it, and above that its
    predicted class (crimson when wrong, so a misclassified image stands out)."""
    _show_input(axis, image)
    axis.set_title(f"true {true}", fontsize=TEXT_SIZE, pad=16)
    axis.text(
        0.5,
        1.02,
        f"pred {predicted}",
        transform=axis.transAxes,
        ha="center",
        va="bottom",
        fontsize=TEXT_SIZE,
        color="black" if correct else "crimson",
    )


def _draw_heatmap(axis, image: np.ndarray, normalised_map: np.ndarray, explains: str, display: str):
    """One heatmap of :func:`heatmap_figure` (``normalised_map`` from :func:`normalise`) with
    the class it explains above it. Returns the image, for the colour bar."""
    drawn = _show_relevance(axis, normalised_map, display)
    axis.set_title(f"explains {explains}", fontsize=TEXT_SIZE)
    # The input's outline over the heatmap, so relevance can be read against the shape.
    axis.contour(image.mean(axis=-1), levels=[0.5], colors=OUTLINE_COLOURS[display], linewidths=0.6)
    return drawn


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
