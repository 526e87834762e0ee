"""A joblib worker killed (SIGKILL: the OOM killer, say) in the middle of a sweep."""

from __future__ import annotations

import os
import signal

import pytest
from support import (
    SMALL,
    all_runs,
    client_for,
    metrics_logged,
    signal_when,
    store_dir,
    sweep_runs,
    train_cli,
)

pytestmark = pytest.mark.slow
# 4 jobs, 2 models (one per seed), 2 workers: the models are trained by the first two jobs.
SWEEP = [
    "-m",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
    *SMALL,
    "train.epochs=3",
    "evaluate=off",
    "analyzer=gradient,deep_taylor",
    "seed=0,1",
    "compare.baselines=[]",
]


def test_a_killed_worker_leaves_the_other_runs_intact_and_a_rerun_completes(tmp_path):
    killed: dict[str, str] = {}

    def kill_the_third_jobs_worker() -> bool:
        """Once two jobs have finished and a third is running, SIGKILL the worker running it
        (the run's process.pid tag says which)."""
        if metrics_logged(store_dir(tmp_path) / "mlflow.db") == 0:
            return False  # the store may still be being created: no client before then
        runs = [r for r in all_runs(tmp_path) if r.data.tags.get("sweep_role") != "parent"]
        running = [r for r in runs if r.info.status == "RUNNING"]
        if sum(r.info.status == "FINISHED" for r in runs) < 2 or not running:
            return False
        os.kill(int(running[0].data.tags["process.pid"]), signal.SIGKILL)
        killed["run"] = running[0].info.run_id
        return True

    # Signal 0 sends nothing: the kill is in ready(); this only waits for the sweep to end.
    stopped = signal_when(tmp_path, 0, *SWEEP, ready=kill_the_third_jobs_worker)
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert "worker process managed by the executor was unexpectedly terminated" in stopped.stderr
    assert "SIGKILL" in stopped.stderr
    assert "a worker process died (killed by the system: out of memory?)" in stopped.stderr

    (parent,), children = sweep_runs(tmp_path)
    kids = {kid.info.run_id: kid for kid in children[parent.info.run_id]}
    assert parent.info.status in ("FAILED", "KILLED")
    assert kids[killed["run"]].info.status == "KILLED"
    assert "repair.note" in kids[killed["run"]].data.tags
    assert "RUNNING" not in {kid.info.status for kid in kids.values()}
    finished = [kid for kid in kids.values() if kid.info.status == "FINISHED"]
    assert len(finished) >= 2  # the two jobs before the kill; joblib stops the rest with it
    client = client_for(tmp_path)
    for run in finished:
        analyzer = run.data.params["analyzer.name"]
        assert {"test_accuracy", "val_accuracy", "analysis_time_s"} <= set(run.data.metrics)
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [1, 2, 3]
        logged = {a.path for a in client.list_artifacts(run.info.run_id)}
        logged |= {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
        assert {"config.yaml", "heatmaps.npz", f"figures/heatmaps_{analyzer}.png"} <= logged
    metrics = client.get_run(parent.info.run_id).data.metrics
    assert metrics["jobs_finished"] == len(finished) and metrics["jobs_not_finished"] == 4 - len(
        finished
    )

    # The same sweep again: every job finishes, on the models the first sweep trained.
    cache = store_dir(tmp_path) / "model_cache"
    entries = sorted(path.name for path in cache.iterdir() if path.is_dir())
    assert len(entries) == 2
    rerun = train_cli(tmp_path, *SWEEP)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    parents, children = sweep_runs(tmp_path)
    (again,) = [p for p in parents if p.info.run_id != parent.info.run_id]
    assert again.info.status == "FINISHED"
    kids = children[again.info.run_id]
    assert [kid.info.status for kid in kids] == ["FINISHED"] * 4
    assert {kid.data.tags["model_reused"] for kid in kids} == {"true"}
    assert sorted(path.name for path in cache.iterdir() if path.is_dir()) == entries
    # The runs of the first sweep are as they were.
    for run_id, run in {r.info.run_id: r for r in finished}.items():
        assert client.get_run(run_id).info.status == run.info.status == "FINISHED"
