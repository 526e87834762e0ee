"""The sweep's comparison as a person reads it: names that tell runs apart, figures whose text
never overlaps and that are drawn at a bounded size, and the self-contained HTML pages
(src/common/names.py, src/report/figures.py, src/report/, src/report/html.py). The page in a
real browser: tests/system/test_browser.py."""

from __future__ import annotations

import itertools
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from omegaconf import OmegaConf

from src.common import names
from src.config.cli import swept_keys
from src.report.charts import metrics_vs_epochs, randomisation_figure
from src.report.figures import DPI, heatmap_figure, training_figure
from src.report.grid import GridRow, comparison_grid
from src.report.html import inline_markdown, measures_table, render_report, table_page
from src.report.queries import Job
from src.report.sections import heatmap_grid
from src.report.verdict import Criterion, RunScores, build_verdict
from src.sweep.jobs import sweep_experiment
from src.tracking.store import Store

# --- names -----------------------------------------------------------------------------------


def test_a_run_is_named_by_the_settings_that_set_it_apart():
    assert names.setting_text("analyzer.params.epsilon", "0.01") == "ε=0.01"
    assert names.setting_text("analyzer.params.noise_scale", 0.5) == "σ=0.5"
    assert names.setting_text("model", "lenet") == "model=lenet"
    assert names.setting_text("train.batch_size", 32) == "batch_size=32"
    overrides = [
        "analyzer=lrp_epsilon",
        "analyzer.params.epsilon=0.01",
        "seed=0",
        "train.epochs=5",
        "dataset=fashion_mnist",
        "dataset.path=/data",
        "tracking.dir=/store",
    ]
    # A single run: every setting given, not the dataset (its experiment names it), not paths.
    assert names.settings_of(overrides) == ["ε=0.01"]
    # In a sweep, only what it varies: the swept epsilon, and the dataset when swept.
    assert names.settings_of(overrides, ["analyzer.params.epsilon", "seed"]) == ["ε=0.01"]
    assert names.settings_of(overrides, ["seed"]) == []
    assert names.settings_of(overrides, ["dataset"]) == ["dataset=fashion_mnist"]
    assert (
        names.run_name("lrp_epsilon", ["ε=0.01"], 0, "5 ep") == "lrp_epsilon ε=0.01 · seed 0 · 5 ep"
    )


def test_the_swept_keys_are_those_given_several_values():
    overrides = ["analyzer=a,b", "seed=0", "analyzer.params.epsilon=0.01,1", "train.epochs=1,1"]
    assert swept_keys(overrides) == ["analyzer", "analyzer.params.epsilon"]


def test_a_sweep_over_datasets_goes_to_the_shared_experiment():
    config = OmegaConf.create(
        {"dataset": {"name": "mnist"}, "tracking": {"experiment_name": "xai-lab-mnist"}}
    )
    assert sweep_experiment(config, ["seed"]) == "xai-lab-mnist"
    assert sweep_experiment(config, ["dataset", "seed"]) == "xai-lab"
    named = OmegaConf.create(
        {"dataset": {"name": "mnist"}, "tracking": {"experiment_name": "mine"}}
    )
    assert sweep_experiment(named, ["dataset"]) == "mine"


def test_the_ui_link_uses_the_host_and_port_given(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri())
    link = store.run_link("1", "abc", "127.0.0.1", 5123)
    assert link.startswith(f"make ui STORE={tmp_path} PORT=5123, then http://127.0.0.1:5123/#/")
    link = store.run_link("1", "abc", "0.0.0.0", 5000)
    assert f"STORE={tmp_path} HOST=0.0.0.0, then http://127.0.0.1:5000/" in link


# --- figures ---------------------------------------------------------------------------------


def texts(figure) -> list[Text]:
    """Every visible, non-empty text of a drawn figure."""
    FigureCanvasAgg(figure).draw()
    return [
        text
        for text in figure.findobj(Text)
        if text.get_visible()
        and text.get_text().strip()
        and (text.axes is None or text.axes.get_visible())
    ]


def overlapping(figure) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes overlap, and texts that stick out of the figure."""
    shown = texts(figure)
    renderer = figure.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in shown]
    whole = figure.bbox
    problems = [
        (text, "outside")
        for text, box in boxes
        if box.x0 < whole.x0 - 1 or box.x1 > whole.x1 + 1 or box.y0 < -1 or box.y1 > whole.y1 + 1
    ]
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        if box_a.overlaps(box_b) and box_a.width > 0 and box_b.width > 0:
            problems.append((a, b))
    return problems


def grid_rows(count: int, images: int, rng: np.random.Generator) -> list[GridRow]:
    predictions = np.arange(images) % 10
    return [
        GridRow(
            label=(
                f"lrp_sequential_preset_a_flat ε={index} analyzer.params.something=long"
                if index % 2
                else "integrated_gradients"
            ),
            heatmaps=rng.normal(size=(images, 8, 8, 1)),
            predictions=predictions,
            explained=predictions,
            display="absolute" if index % 2 else "signed",
            scores=[f"AOPC   0.{index:03d} *", "MPRT   0.500"],
        )
        for index in range(count)
    ]


@pytest.mark.parametrize("analyzers", [1, 5, 20])
def test_the_grid_labels_never_overlap_and_it_has_a_labelled_colour_bar(analyzers):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(6, 8, 8, 1))
    labels = np.arange(6)
    rows = grid_rows(analyzers, 6, rng)
    predictions = labels.copy()
    predictions[2] = 7  # a wrong prediction: named, in red
    figure = comparison_grid(
        images, labels, predictions, rows, [f"class {k}" for k in range(10)], "t"
    )
    assert overlapping(figure) == []
    shown = [t.get_text() for t in texts(figure)]
    assert "pred class 7" in shown and "true class 2" in shown
    assert any("AOPC   0.000 *" in text for text in shown)  # the scores beside their row
    assert any(text.startswith("lrp_sequential") for text in shown) or analyzers == 1
    # A long name is never cut in the middle of a word.
    assert "integrated_gradients" in shown
    assert any("relevance ÷ max |relevance|" in text for text in shown)  # the colour bar
    wrong = next(t for t in texts(figure) if t.get_text() == "pred class 7")
    assert wrong.get_color() == "crimson"


def test_a_row_whose_model_or_class_differs_says_so_under_the_cell():
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(3, 8, 8, 1))
    labels = np.array([0, 1, 2])
    row = GridRow("x", rng.normal(size=(3, 8, 8)), np.array([0, 5, 2]), np.array([3, 4, 5]))
    figure = comparison_grid(images, labels, labels, [row], [str(k) for k in range(10)], "t")
    shown = [t.get_text() for t in texts(figure)]
    assert "pred 5\nexpl. 4" in shown and "expl. 3" in shown


def test_absolute_maps_are_drawn_on_the_shared_scale_white_at_zero():
    figure = comparison_grid(
        np.zeros((1, 4, 4, 1)),
        np.array([0]),
        np.array([0]),
        [GridRow("gradient", np.zeros((1, 4, 4)), np.array([0]), np.array([0]), "absolute")],
        ["0"],
        "t",
    )
    (drawn,) = [i for i in figure.findobj(AxesImage) if i.get_cmap().name == "seismic"]
    # A zero map is white, as the inputs' background is: not black (gray's zero).
    assert np.allclose(drawn.to_rgba(np.zeros(1))[0, :3], 1.0, atol=0.01)


def test_the_grid_draws_at_most_grid_images_whatever_was_explained():
    rng = np.random.default_rng(2)
    count = 300

    def job(analyzer: str) -> Job:
        params = {"analyzer.method": analyzer, "dataset.class_names": "None"}
        run = SimpleNamespace(data=SimpleNamespace(params=params, tags={"dataset": "d"}))
        arrays = {
            "images": rng.uniform(size=(count, 8, 8, 1)),
            "labels": np.arange(count) % 10,
            "predictions": np.arange(count) % 10,
            "explained_classes": np.arange(count) % 10,
            "heatmaps": rng.normal(size=(count, 8, 8, 1)),
        }
        return Job(run, analyzer, "signed", 0, 1, arrays, {})

    jobs = [job(f"analyzer_{k}") for k in range(3)]
    figure = heatmap_grid(jobs, None, 1, 0, grid_images=4)
    drawn = [image for image in figure.findobj(AxesImage)]
    assert len(drawn) == 4 * (1 + 3)  # inputs and three rows, four images each
    assert figure.get_size_inches()[0] < 10


def preview_pixels(figure, points: float, preview_width: float) -> float:
    """The height in screen pixels of ``points``-sized text once the PNG is shown
    ``preview_width`` pixels wide."""
    width = figure.get_figwidth() * DPI  # the PNG's width: save_figure draws at DPI
    return points * DPI / 72 * preview_width / width


# MLflow 3.17's artifact view shows an image ~820 px wide in a 1400-px window (measured in
# Chromium: tests/system/test_browser.py checks the figure there); 700 leaves room for a
# narrower one.
MLFLOW_PREVIEW_WIDTH = 700


def test_a_runs_heatmap_figure_is_legible_at_mlflows_preview_width_and_names_the_class():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(10, 28, 28, 1))
    labels = np.arange(10)
    predictions = labels.copy()
    explained = (labels + 1) % 10  # e.g. neuron_selection=true_label on wrong predictions
    figure = heatmap_figure(
        images,
        rng.normal(size=(10, 28, 28, 1)),
        labels,
        predictions,
        [f"c{k}" for k in range(10)],
        "gradient · seed 0 · 5 ep on mnist",
        explained=explained,
    )
    shown = [t.get_text() for t in texts(figure)]
    assert {"true c3", "pred c3", "explains c4"} <= set(shown)
    smallest = min(t.get_fontsize() for t in texts(figure) if t.get_text() in shown)
    # 10 px is comfortably legible; the old figure's 7 pt labels came to ~5 px there.
    assert preview_pixels(figure, smallest, MLFLOW_PREVIEW_WIDTH) >= 9
    assert overlapping(figure) == []


def test_one_training_length_is_drawn_as_bars_several_as_nudged_lines():
    one = pd.DataFrame(
        {
            "analyzer": ["a", "b", "c"],
            "epochs": [5, 5, 5],
            "m_mean": [0.5, 0.5, 0.5],  # equal: dots would hide one another
            "m_std": [0.1, 0.0, np.nan],
        }
    )
    figure = metrics_vs_epochs(one, ["m"])
    axis = figure.axes[0]
    bars = [p for p in axis.patches if isinstance(p, Rectangle)]
    assert [round(bar.get_height(), 6) for bar in bars] == [0.5, 0.5, 0.5]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["a", "b", "c"]
    several = pd.DataFrame(
        {
            "analyzer": ["a", "a", "b", "b"],
            "epochs": [1, 3, 1, 3],
            "m_mean": [0.5, 0.6, 0.5, 0.6],
            "m_std": [0.0] * 4,
        }
    )
    axis = metrics_vs_epochs(several, ["m"]).axes[0]
    lines = [container.lines[0].get_xdata() for container in axis.containers]
    assert len(lines) == 2 and not np.allclose(lines[0], lines[1])  # side by side, not on top
    assert np.allclose(np.mean(lines, axis=0), [1, 3])  # centred on the true epochs


def test_training_ticks_are_whole_epochs():
    figure = training_figure({"train_loss": [0.5, 0.4, 0.3], "train_accuracy": [0.8, 0.85, 0.9]})
    FigureCanvasAgg(figure).draw()
    for axis in figure.axes:
        ticks = axis.get_xticks()
        assert np.allclose(ticks, np.round(ticks))


def test_randomisation_rows_are_labelled():
    rng = np.random.default_rng(4)
    examples = [rng.normal(size=(2, 8, 8)) for _ in range(3)]
    figure = randomisation_figure(
        ["dense", "conv"],
        np.array([0.8, 0.5]),
        examples,
        "t",
        row_labels=["test image 0\nexplains 7", "test image 1\nexplains 2"],
    )
    labels = [axis.get_ylabel() for axis in figure.axes]
    assert "test image 0\nexplains 7" in labels and "test image 1\nexplains 2" in labels


# --- the pages -------------------------------------------------------------------------------


def test_the_registry_descriptions_keep_their_marks_and_nothing_else():
    assert (
        str(inline_markdown("**a** *b* `c` <script> \\|x\\|"))
        == "<strong>a</strong> <em>b</em> <code>c</code> &lt;script&gt; |x|"
    )


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "analyzer": ["a", "b"],
            "epochs": [5, 5],
            "n_seeds": [2, 2],
            "eval_aopc_mean": [0.4, 0.6],
            "eval_aopc_std": [0.01, 0.02],
            "eval_mprt_mean": [0.4, 0.6],
            "eval_mprt_std": [0.01, 0.02],
            "stability_spearman_mean": [0.9, 0.8],
            "stability_spearman_std": [np.nan, np.nan],  # two seeds: one pair
        }
    )


def test_the_table_marks_direction_and_best_and_no_spread_for_one_pair_of_seeds():
    html = measures_table(
        table(),
        ["eval_aopc", "eval_mprt", "stability_spearman"],
        {"eval_aopc": True, "eval_mprt": False, "stability_spearman": True},
    )
    assert "<th>aopc ↑</th>" in html and "<th>mprt ↓</th>" in html
    # Best: the higher AOPC (b), the lower MPRT (a), the higher stability (a).
    assert "<td class='best'>0.600 ± 0.020</td>" in html
    assert "<td class='best'>0.400 ± 0.010</td>" in html
    assert "<td class='best'>0.900</td>" in html  # no spread: no "± 0.000"
    page = table_page("sweep · a≥b", table(), ["eval_aopc"], ["stability_spearman"], {}, [])
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert "sweep · a≥b" in page


def test_the_report_page_is_self_contained_and_escapes_what_it_shows():
    criteria = [Criterion("faithfulness", "aopc", True, "AOPC")]
    runs = [
        RunScores("a<b>", False, seed, 5, {"aopc": 0.5}, {"aopc": np.array([0.5, 0.6])})
        for seed in (0, 1)
    ] + [
        RunScores("noise", True, seed, 5, {"aopc": 0.1}, {"aopc": np.array([0.1, 0.1])})
        for seed in (0, 1)
    ]
    from src.report.html import image, verdict_view

    verdict = build_verdict(runs, criteria)
    view = verdict_view(verdict, {"aopc": "**faithful**"})
    assert view["criteria"][0]["what"] == "faithful"
    page = render_report(
        title="sweep · x",
        subtitle="s",
        answer=["Trust a<b> on this model (5 epochs): …", "Limit: one seed"],
        missing=["seed=2 (FAILED)"],
        verdict=view,
        sections=[],
        grid=image(b"\x89PNG", "grid", "caption"),
        measures="",
        measure_images=[],
        provenance=[("git commit", "abc")],
        runs=[],
        config="seed: 0",
        config_run="a · seed 0 · 5 ep",
    )
    assert '<meta charset="utf-8">' in page
    assert "a&lt;b&gt;" in page and "a<b>" not in page
    assert "(baseline)" in page and "seed=2 (FAILED)" in page
    # The answer first, above the verdict, escaped like every name.
    assert page.index("<p>Trust a&lt;b&gt; on this model") < page.index('id="verdict"')
    # Nothing to fetch: no script, no stylesheet or font link, every image inline.
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert re.findall(r'src="([^"]+)"', page) == ["data:image/png;base64,iVBORw=="]
    assert not re.search(r"https?://", page)


def test_a_job_that_did_not_finish_is_listed_with_why():
    from types import SimpleNamespace

    from src.report.queries import missing_jobs

    def run(job, status, **tags):
        info = SimpleNamespace(status=status)
        return SimpleNamespace(info=info, data=SimpleNamespace(tags={"job_overrides": job, **tags}))

    runs = [
        run("seed=0", "FINISHED"),
        run("seed=1", "FAILED", error="ValueError: low >= high"),
        run("seed=2", "KILLED", end_reason="time limit: 30 s left"),
        run("seed=3", "FAILED"),
    ]
    assert missing_jobs([f"seed={n}" for n in range(5)], runs) == [
        "seed=1 (FAILED: ValueError: low >= high)",
        "seed=2 (KILLED: time limit: 30 s left)",
        "seed=3 (FAILED)",
        "seed=4 (no run)",
    ]


def test_a_runs_score_figures_are_titled_by_the_run_not_by_its_last_curve(monkeypatch):
    """The perturbation and randomisation figures' title is the run's name and dataset
    (before: the name of the last curve logged, ``mprt_blank_fraction on fashion_mnist``)."""
    from src.report import evaluation as logged
    from src.scores.registry import Evaluation

    drawn = {}
    for figure in ("perturbation_figure", "randomisation_figure"):
        monkeypatch.setattr(
            logged, figure, lambda *args, figure=figure, **kwargs: drawn.setdefault(figure, args)
        )
    for writer in ("log_metrics", "log_arrays", "log_curve", "log_figure"):
        monkeypatch.setattr(logged.records, writer, lambda *args, **kwargs: None)
    steps = np.array([0.9, 0.5, 0.2])
    evaluation = Evaluation(
        curves={
            "perturbation_accuracy": steps,
            "perturbation_accuracy_random": steps,
            "perturbation_accuracy_lerf": steps,
            "mprt_curve": steps,
            "mprt_blank_fraction": steps,
        },
        randomised_layers=["dense", "conv"],
        randomisation_examples=[np.zeros((1, 4, 4))],
        randomisation_classes=np.array([3]),
    )
    logged.log_evaluation(evaluation, "gradient · seed 0 · 1 ep on digits", "heat", "0123")
    # perturbation_figure(curve, random curve, title, lerf curve)
    assert drawn["perturbation_figure"][2] == "gradient · seed 0 · 1 ep on digits"
    # randomisation_figure(layers, curve, examples, title, display, blank curve)
    assert drawn["randomisation_figure"][3:5] == ("gradient · seed 0 · 1 ep on digits", "heat")
