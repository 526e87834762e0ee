from __future__ import annotations

import numpy as np
import pytest

from src.common.internals import random_layers
from src.experiment import load_data
from src.explain.configured import explain_model
from src.models.configured import build_model, train_model
from src.models.training import Resume, TrainingState


def run_once(compose_config, seed: int):
    cfg = compose_config(
        "dataset=digits",
        "dataset.train_size=400",
        "train.epochs=2",
        f"seed={seed}",
        "analyzer=input_t_gradient",
    )
    data = load_data(cfg)
    model = build_model(cfg, data.input_shape, data.num_classes)
    history = train_model(cfg, data, model).history
    return history, explain_model(cfg, data, model).explanation.heatmaps, model.get_weights()


def test_same_seed_same_weights_metrics_and_heatmaps(compose_config):
    history_a, heatmaps_a, weights_a = run_once(compose_config, seed=3)
    history_b, heatmaps_b, weights_b = run_once(compose_config, seed=3)
    assert history_a == history_b
    np.testing.assert_array_equal(heatmaps_a, heatmaps_b)
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_another_seed_gives_another_model(compose_config):
    _, heatmaps_a, _ = run_once(compose_config, seed=3)
    _, heatmaps_b, _ = run_once(compose_config, seed=4)
    assert not np.array_equal(heatmaps_a, heatmaps_b)


def test_runs_in_one_process_do_not_pile_up_graph_nodes(compose_config):
    from src.common.tf_runtime import tensorflow

    run_once(compose_config, seed=0)
    nodes_after_first = len(tensorflow().compat.v1.get_default_graph().as_graph_def().node)
    run_once(compose_config, seed=0)
    assert len(tensorflow().compat.v1.get_default_graph().as_graph_def().node) == nodes_after_first


def snapshots_of(compose_config, epochs: int, *overrides: str):
    """Train ``epochs`` from the start; every epoch's snapshot (result, state, weights)."""
    cfg = compose_config(
        "dataset=digits", "dataset.train_size=400", f"train.epochs={epochs}", "seed=3", *overrides
    )
    data = load_data(cfg)
    model = build_model(cfg, data.input_shape, data.num_classes)
    snapshots = {}

    def keep(done, so_far, state):
        snapshots[done] = (so_far, state, model.get_weights())

    final = train_model(cfg, data, model, on_snapshot=keep)
    return cfg, data, final, snapshots, model.get_weights()


@pytest.mark.parametrize("validate", ["true", "false"])
def test_a_training_continued_from_a_snapshot_is_the_training_that_never_stopped(
    compose_config, validate
):
    _, _, final, snapshots, weights = snapshots_of(
        compose_config, 3, f"train.validate_each_epoch={validate}"
    )
    assert sorted(snapshots) == [1, 2, 3]
    # Epoch 1 of the 3-epoch training is the 1-epoch model, curve and weights.
    _, _, one, _, one_weights = snapshots_of(
        compose_config, 1, f"train.validate_each_epoch={validate}"
    )
    first, _, first_weights = snapshots[1]
    assert first.history == one.history
    for a, b in zip(first_weights, one_weights, strict=True):
        assert a.tobytes() == b.tobytes()

    # A new graph (as in another process) with the weights of epoch 1, on to epoch 3.
    cfg = compose_config(
        "dataset=digits",
        "dataset.train_size=400",
        "train.epochs=3",
        "seed=3",
        f"train.validate_each_epoch={validate}",
    )
    data = load_data(cfg)
    model = build_model(cfg, data.input_shape, data.num_classes)
    model.set_weights(first_weights)
    np.random.seed(12345)  # whatever the global state was, the snapshot's is restored
    continued = train_model(cfg, data, model, resume=Resume(1, first, snapshots[1][1]))
    assert continued.history == final.history
    assert (continued.test_loss, continued.test_accuracy) == (final.test_loss, final.test_accuracy)
    for a, b in zip(model.get_weights(), weights, strict=True):
        assert a.tobytes() == b.tobytes()


def test_without_the_optimizer_or_batch_order_state_the_continuation_differs(compose_config):
    # The two parts of a snapshot's state are each needed: the test above is not vacuous.
    _, _, final, snapshots, weights = snapshots_of(compose_config, 2)
    first, state, first_weights = snapshots[1]
    cfg = compose_config("dataset=digits", "dataset.train_size=400", "train.epochs=2", "seed=3")
    data = load_data(cfg)
    other_order = np.random.RandomState(99).get_state()
    fresh_adam = [np.zeros_like(w) for w in state.optimizer_weights]
    for broken in (
        TrainingState(state.optimizer_weights, other_order),
        TrainingState(fresh_adam, state.random_state),
    ):
        model = build_model(cfg, data.input_shape, data.num_classes)
        model.set_weights(first_weights)
        train_model(cfg, data, model, resume=Resume(1, first, broken))
        assert any(
            a.tobytes() != b.tobytes() for a, b in zip(model.get_weights(), weights, strict=True)
        )


def test_a_model_that_draws_random_numbers_while_training_is_never_continued(compose_config):
    from src.common.tf_runtime import tensorflow

    layers = tensorflow().keras.layers
    cnn = compose_config("dataset=digits")
    model = build_model(cnn, (28, 28, 1), 10)
    assert random_layers(model) == []
    noisy = tensorflow().keras.Sequential(
        [
            layers.Input((4,)),
            layers.Dropout(0.5, name="drop"),
            layers.GaussianNoise(0.1),
            layers.Dense(2, name="out"),
        ]
    )
    assert random_layers(noisy)[0] == "drop" and len(random_layers(noisy)) == 2
