"""The planted shortcut (experiment=shortcut) on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from src.common.errors import UserError
from src.data.shortcut import Shortcut, border_positions, from_config, plant


def test_markers_sit_evenly_on_the_border_ring():
    # 28x28, 4-pixel squares, 1-pixel margin: corners range over 1..23, a ring of 4 x 22 = 88;
    # four classes, 22 apart: the four corners, clockwise from the top left.
    assert border_positions(4, (28, 28), 4) == [(1, 1), (1, 23), (23, 23), (23, 1)]
    # Eight classes: the corners and the middles of the sides.
    assert border_positions(8, (28, 28), 4) == [
        *[(1, 1), (1, 12), (1, 23), (12, 23)],
        *[(23, 23), (23, 12), (23, 1), (12, 1)],
    ]
    ten = border_positions(10, (28, 28), 4)
    assert len(set(ten)) == 10
    for index, (a, b) in enumerate(zip(ten, ten[1:] + ten[:1], strict=True)):
        assert max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 4, index  # no two squares overlap


def test_markers_that_do_not_fit_are_refused():
    with pytest.raises(UserError, match="do not fit apart along the border"):
        border_positions(10, (28, 28), 9)
    with pytest.raises(UserError, match="dataset.shortcut.size 30 does not fit"):
        border_positions(2, (28, 28), 30)
    spec = {"size": 29, "share": 0.5, "value": 1.0, "positions": None, "seed": 0}
    with pytest.raises(UserError, match="larger than the 28x28 images"):
        from_config(spec, (28, 28, 1), 10)
    spec = {**spec, "size": 4, "positions": [[0, 0], [26, 26]]}
    with pytest.raises(UserError, match=r"at \[26, 26\] does not fit in the 28x28 images"):
        from_config(spec, (28, 28, 1), 2)


def tiny() -> Shortcut:
    return Shortcut(size=2, share=0.5, value=1.0, positions=((0, 0), (0, 3), (3, 3)), seed=0)


def test_the_marker_is_drawn_where_its_class_says():
    images = np.zeros((2, 5, 5, 1), dtype=np.float32)
    marked, masks = tiny().draw(images, np.array([1, 2]))
    assert masks.shape == (2, 5, 5) and masks.sum(axis=(1, 2)).tolist() == [4, 4]
    assert masks[0, 0:2, 3:5].all() and masks[1, 3:5, 3:5].all()
    np.testing.assert_array_equal(marked[..., 0], masks.astype(np.float32))
    assert images.max() == 0.0  # drawn into a copy


def test_plant_marks_the_share_of_training_images_and_every_test_image():
    rng = np.random.default_rng(0)
    train = rng.random((400, 5, 5, 1)).astype(np.float32) * 0.5
    labels = rng.integers(0, 3, size=400)
    test, test_labels = train[:50].copy(), labels[:50]
    for share, low, high in ((0.0, 0, 0), (1.0, 400, 400), (0.5, 160, 240)):
        shortcut = Shortcut(2, share, 1.0, tiny().positions, 0)
        planted, marked_test, masks = plant(shortcut, train, labels, test, test_labels)
        changed = (planted != train).any(axis=(1, 2, 3))
        assert low <= changed.sum() <= high, share
        # Only the marker's pixels change, and only to its value.
        expected = shortcut.mask(train.shape[1:], labels)
        assert np.all(planted[changed][expected[changed]] == 1.0)
        assert np.all(planted[~expected[..., None].repeat(1, -1)] == train[~expected[..., None]])
        assert masks.sum() == 50 * 4 and np.all(marked_test[masks] == 1.0)
    # The data's seed, not the run's, decides which images: the same every time.
    again = plant(Shortcut(2, 0.5, 1.0, tiny().positions, 0), train, labels, test, test_labels)
    np.testing.assert_array_equal(again[0], plant(shortcut, train, labels, test, test_labels)[0])


def test_the_reliance_test_moves_every_marker_to_another_class():
    labels = np.arange(300) % 3
    moved = tiny().moved(labels)
    assert np.all(moved != labels) and set(moved) == {0, 1, 2}
    np.testing.assert_array_equal(moved, tiny().moved(labels))  # seeded


@pytest.mark.slow
def test_a_shortcut_sweep_scores_every_analyzer_against_the_marker(tmp_path):
    """experiment=shortcut end to end on the digits: the marker in every training image, so
    the model leans on it; every run logs the reliance and the localisation scores, keeps the
    masks, outlines the marker; the sweep's verdict judges localisation against the baseline."""
    from support import client_for, sweep_runs, train_cli

    result = train_cli(
        tmp_path,
        "-m",
        "experiment=shortcut",
        "dataset=digits",
        "dataset.shortcut.share=1.0",
        "train.epochs=4",
        "evaluate.n_images=100",
        "analyzer=input_t_gradient,edge",
        "compare.baselines=[]",
        "seed=0,1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parents, children = sweep_runs(tmp_path)
    (parent,) = parents
    runs = children[parent.info.run_id]
    assert len(runs) == 4 and all(run.info.status == "FINISHED" for run in runs)
    client = client_for(tmp_path)
    assert client.get_experiment(parent.info.experiment_id).name == "xai-lab-shortcut"
    for run in runs:
        metrics = run.data.metrics
        for name in ("relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game"):
            assert 0.0 <= metrics[f"eval_{name}"] <= 1.0, name
        # Every training image carried the marker: moving it costs accuracy.
        assert metrics["shortcut_accuracy_moved"] < metrics["shortcut_accuracy_marked"] - 0.1
        assert metrics["shortcut_follows_marker"] > 0.1
        path = client.download_artifacts(run.info.run_id, "heatmaps.npz", str(tmp_path / "a"))
        with np.load(path) as arrays:
            masks = arrays["masks"]
            assert masks.shape == arrays["images"].shape[:3]
            assert (masks.sum(axis=(1, 2)) == 16).all()  # one 4x4 marker per image
            assert np.all(arrays["images"][masks] == 1.0)
        figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
        assert f"figures/heatmaps_{run.data.tags['analyzer']}.png" in figures
    for heading in ("Mass ↑", "Rank ↑", "Point ↑", "ABPC ↑", "FCorr ↑", "ROAD ↑"):
        assert heading in result.stdout + result.stderr, heading
    assert "e = beats edge" in result.stdout + result.stderr


def test_a_dataset_config_with_a_shortcut_loads_marked_data_with_masks():
    from src.data import load_configured

    spec = {"_target_": "src.data.load_digits", "name": "digits"}
    shortcut = {"size": 3, "share": 1.0, "value": 1.0, "positions": None, "seed": 0}
    clean = load_configured(spec)
    data = load_configured({**spec, "shortcut": shortcut})
    assert clean.shortcut is None and clean.test_masks is None
    assert data.test_masks.shape == data.test_images.shape[:3]
    assert (data.test_masks.sum(axis=(1, 2)) == 9).all()
    np.testing.assert_array_equal(data.clean_test_images, clean.test_images)
    np.testing.assert_array_equal(data.test_images[data.test_masks], 1.0)
    # Outside the marker every pixel is the clean one's; every training image is marked.
    np.testing.assert_array_equal(
        data.test_images[~data.test_masks], clean.test_images[~data.test_masks]
    )
    assert (data.train_images != clean.train_images).any(axis=(1, 2, 3)).mean() > 0.9
