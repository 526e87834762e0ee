"""A first Ctrl-C or SIGTERM in any phase of a run ends it at once, KILLED: training,
explaining, drawing, scoring, uploading. Only a write to the store holds a signal back, until
the write is done (src/common/signals.py); drawing a figure is not part of it.

In process: the run is :func:`src.experiment.run_experiment`; the process sends itself a real
signal (through the run's own handlers) at a known point of the phase (its progress bar's first
step, the figure's rendering, the upload of heatmaps.npz), and the test times the stop from there.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from support import SMALL, client_for, composed

from src import experiment
from src.common.errors import Terminated
from src.explain import heatmaps as explain
from src.models import training
from src.report.figures import heatmap_figure, heatmap_strip

RAISED = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}
STOP_S = 10.0  # what the issue allows from the signal to the process's end


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """One store and one model cache for the module: the phases after training reuse the
    model trained once, and the store is created once."""
    return tmp_path_factory.mktemp("lab")


@pytest.fixture
def handlers():
    """SIGINT as in a terminal's foreground process (a shell starts background jobs with it
    ignored, and an ignored signal stays ignored)."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


class Sender:
    """Sends ``signum`` to this process once, and remembers when."""

    def __init__(self, signum: int) -> None:
        self.signum, self.sent_at = signum, None

    def __call__(self) -> None:
        if self.sent_at is None:
            self.sent_at = time.monotonic()
            os.kill(os.getpid(), self.signum)


def at_progress(monkeypatch, module, description: str, send: Sender) -> None:
    """``send`` when a progress bar of ``module`` whose description starts with
    ``description`` first moves (its first batch is done)."""
    original = module.progress_bar

    def progress_bar(total, what, unit):
        bar = original(total, what, unit)
        if what.startswith(description):
            update = bar.update

            def updated(n=1):
                update(n)
                send()

            bar.update = updated
        return bar

    monkeypatch.setattr(module, "progress_bar", progress_bar)


def while_drawing(monkeypatch, send: Sender, drawn: list) -> None:
    """``send`` as the run's heatmap figure starts to be rendered to PNG."""
    from src.report import outcome

    original = outcome.heatmap_figure

    def heatmap_figure(*args, **kwargs):
        figure = original(*args, **kwargs)
        savefig = figure.savefig

        def rendering(*args, **kwargs):
            drawn.append(figure)
            send()
            return savefig(*args, **kwargs)

        figure.savefig = rendering
        return figure

    monkeypatch.setattr(outcome, "heatmap_figure", heatmap_figure)


def while_uploading(monkeypatch, send: Sender, name: str) -> None:
    """``send`` as the artifact ``name`` starts to be uploaded (inside the store write)."""
    original = mlflow.log_artifact

    def log_artifact(local_path, artifact_path=None, *args, **kwargs):
        if Path(local_path).name == name:
            send()
        return original(local_path, artifact_path, *args, **kwargs)

    monkeypatch.setattr(mlflow, "log_artifact", log_artifact)


# Scoring is stopped in the randomisation test; the scores before it are not needed.
CHEAP_SCORES_OFF = ("perturbation", "faithfulness_correlation", "road", "complexity")
PHASES = {
    # phase: (signal, overrides)
    "training": (signal.SIGINT, ["train.reuse=false", "train.epochs=3"]),
    "explaining": (signal.SIGTERM, ["explain.n_images=100", "explain.batch_size=5"]),
    # As many images as the test set has (359): the figure still draws report.grid_images.
    "drawing": (signal.SIGINT, ["explain.n_images=1000"]),
    "scoring": (
        signal.SIGTERM,
        ["evaluate=default", "evaluate.n_images=20"]
        + [f"evaluate.scores.{score}=false" for score in CHEAP_SCORES_OFF],
    ),
    "uploading": (signal.SIGINT, []),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_signal_in_each_phase_ends_the_run_killed_at_once(
    lab, handlers, monkeypatch, tmp_path, phase
):
    signum, overrides = PHASES[phase]
    cache = f"train.cache_dir={lab / 'cache'}"
    cfg = composed(lab, cache, *SMALL, "train.epochs=1", "evaluate=off", *overrides)
    send, drawn = Sender(signum), []
    if phase == "training":
        at_progress(monkeypatch, training, "training", send)
    elif phase == "explaining":
        at_progress(monkeypatch, explain, "explaining", send)
    elif phase == "scoring":
        # Within a score: the randomisation test's first re-initialised model explained.
        at_progress(monkeypatch, explain, "randomised 1/", send)
    elif phase == "drawing":
        while_drawing(monkeypatch, send, drawn)
    else:
        while_uploading(monkeypatch, send, "heatmaps.npz")

    with pytest.raises(RAISED[signum]):
        experiment.run_experiment(cfg)
    stopped_after = time.monotonic() - send.sent_at

    client = client_for(lab)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
    assert run.info.status == "KILLED"
    assert stopped_after < STOP_S
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    logged |= {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    metrics = run.data.metrics
    assert "peak_rss_mb" not in metrics  # the run's last write: it did not go on to the end
    if phase == "training":
        assert "train_time_s" not in metrics and "val_accuracy" not in metrics  # epoch 1
    elif phase == "explaining":
        assert "analysis_time_s" not in metrics
    elif phase == "drawing":
        # Rendered outside the store write: the signal stopped it before any upload.
        assert "figures/heatmaps_deep_taylor.png" not in logged, logged
        assert "heatmaps.npz" not in logged
        # The figure shows report.grid_images of the 359 explained images, and says so.
        (figure,) = drawn
        shown = [axis for axis in figure.axes if axis.get_images()]
        assert len(shown) == 2 * 10
        assert "the first 10 of 359 explained images" in figure.get_suptitle()
    elif phase == "scoring":
        assert "analysis_time_s" in metrics and "eval_aopc" not in metrics
    else:
        # The write the signal came in finished: the arrays are stored whole, all of them.
        folder = client.download_artifacts(run.info.run_id, "heatmaps.npz", str(tmp_path))
        with np.load(folder) as arrays:
            assert arrays["heatmaps"].shape == (10, 28, 28, 1)


def test_the_heatmap_figure_shows_at_most_max_images_and_says_so():
    count = 7
    images = np.zeros((count, 4, 4, 1))
    heatmaps = np.ones((count, 4, 4, 1))
    classes = np.arange(count) % 2
    figure = heatmap_figure(images, heatmaps, classes, classes, ["a", "b"], title="t", max_images=3)
    # 3 images: one line of 3, each an input above its heatmap; and the colour bar.
    assert len([axis for axis in figure.axes if axis.get_images()]) == 2 * 3
    assert figure.get_suptitle() == (
        "t\nthe first 3 of 7 explained images (report.grid_images; heatmaps.npz: all)"
    )
    whole = heatmap_figure(images, heatmaps, classes, classes, ["a", "b"], title="t", max_images=10)
    assert len([axis for axis in whole.axes if axis.get_images()]) == 2 * 7
    assert whole.get_suptitle() == "t"


def test_the_heatmap_strip_shows_at_most_max_images():
    images, heatmaps = np.zeros((7, 4, 4, 1)), np.ones((7, 4, 4, 1))
    # 5 columns: 7 images take two lines, 3 one; a line is 2 x 4 pixels + 3 gaps of 2, x 3.
    assert heatmap_strip(images, heatmaps).shape[0] == 2 * (8 + 6) * 3
    bounded = heatmap_strip(images, heatmaps, max_images=3)
    assert bounded.shape == ((8 + 6) * 3, (5 * (4 + 2) + 2) * 3, 3)
