"""Any Keras model on any image data, end to end through the real CLI (slow)."""

from __future__ import annotations

import numpy as np
import pytest
from support import client_for, sweep_runs, train_cli
from test_data import colour_npz

SCORES = ("eval_aopc", "eval_mprt", "eval_emprt", "eval_random_logit", "eval_gini")


@pytest.mark.slow
def test_lenet_on_rgb_32x32_with_5_classes_is_explained_and_scored_by_three_analyzers(tmp_path):
    data = colour_npz(tmp_path / "rgb.npz")
    result = train_cli(
        tmp_path,
        "-m",
        "dataset=npz",
        f"dataset.path={data}",
        "model=lenet",
        "train.epochs=2",
        "evaluate.n_images=40",
        "evaluate.perturbation.region_shape=[8,8]",
        "analyzer=deep_taylor,gradient,lrp_epsilon",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,), children = sweep_runs(tmp_path)
    kids = children[parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(kids) == 3
    client = client_for(tmp_path)
    for kid in kids:
        assert kid.info.status == "FINISHED"
        assert set(SCORES) <= set(kid.data.metrics), kid.info.run_name
        assert kid.data.metrics["test_accuracy"] > 0.5  # the coloured bars are learnable
        path = client.download_artifacts(
            kid.info.run_id, "heatmaps.npz", str(tmp_path / kid.info.run_id)
        )
        with np.load(path) as arrays:
            assert arrays["heatmaps"].shape == arrays["images"].shape == (10, 32, 32, 3)
            assert list(arrays["class_names"]) == [f"class {k}" for k in range(5)]
    assert "eval_conservation_error" in next(
        kid.data.metrics for kid in kids if kid.data.params["analyzer.name"] == "deep_taylor"
    )
    # The sweep's comparison and verdict were built for the colour images.
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/grid.png", "comparison/verdict.md"} <= artifacts
    assert "gradient/aopc" in client.get_run(parent.info.run_id).data.metrics
