"""Charts of numbers: metrics against epochs, a criterion's intervals, and the scores' curves
(perturbation, randomisation) of a run and of a sweep's analyzers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from src.report.figures import _figure, _show_relevance, normalise
from src.scores.registry import Panel


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
    rows: Sequence[tuple[str, float, float, float, bool, bool]],
    title: str,
    higher_is_better: bool,
    bounds: tuple[float, float] | None = None,
):
    """One criterion at a glance: per row (``label, mean, interval's low and high, baseline?,
    best?``) a dot with its interval (none where it is nan); baselines gray, the best marked.
    The axis spans the score's ``bounds`` where it has them (a difference looks as large as it
    is), else the values, and the label says it is zoomed."""
    figure = _figure(figsize=(5.2, 0.36 * len(rows) + 1.1), layout="constrained")
    axis = figure.subplots()
    for position, (_, mean, low, high, baseline, best) in enumerate(rows):
        colour = "gray" if baseline else ("tab:green" if best else "tab:blue")
        error = None if np.isnan(low) else [[mean - low], [high - mean]]
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
    better = f"{'higher' if higher_is_better else 'lower'} is better"
    if bounds is not None:
        low, high = bounds
        margin = 0.02 * (high - low)
        axis.set_xlim(low - margin, high + margin)
        axis.set_xlabel(f"{better}; the axis spans the score's range", fontsize=8)
    else:
        axis.set_xlabel(f"{better}; the axis is zoomed to the values", fontsize=8)
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
    panels: Sequence[Panel],
    title: str,
):
    """One panel per per-step score, one line per analyzer with the seeds' spread shaded; a
    panel's baseline (the random order, on the most-relevant-first panel) as the mean over
    analyzers, gray and dashed.

    ``curves`` maps a metric name to ``{analyzer: (mean, std)}`` per step.
    """
    panels = [panel for panel in panels if curves.get(panel.metric)]
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = _figure(figsize=(4.6 * columns, 3.6 * rows + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        key, what, first_step = panel.metric, panel.what, panel.first_step
        for analyzer, (mean, std) in curves[key].items():
            steps = np.arange(len(mean)) + first_step
            (line,) = axis.plot(steps, mean, marker="o", markersize=3, label=analyzer)
            axis.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            axis.set_xticks(steps)
        baselines = list(curves.get(panel.baseline, {}).values()) if panel.baseline else []
        if baselines:
            baseline = np.mean([mean for mean, _ in baselines], axis=0)
            axis.plot(
                np.arange(len(baseline)),
                baseline,
                color="gray",
                linestyle="--",
                label=panel.baseline_label,
            )
        axis.set_title(key.removeprefix("eval_").replace("_", " "), fontsize=9)
        axis.set_xlabel(what, fontsize=8)
        axis.legend(fontsize=6)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
