from __future__ import annotations

import numpy as np

from src.experiment import build_model, explain_model, load_data, train_model


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
    from src.tf_runtime import tensorflow

    run_once(compose_config, seed=0)
    nodes_after_first = len(tensorflow().compat.v1.get_default_graph().as_graph_def().node)
    run_once(compose_config, seed=0)
    assert len(tensorflow().compat.v1.get_default_graph().as_graph_def().node) == nodes_after_first
