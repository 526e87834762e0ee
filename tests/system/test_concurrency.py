"""Two sweeps at once into one SQLite store, each with two parallel workers (joblib)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from support import SMALL, all_runs, client_for, default_overrides, store_dir, sweep_runs

EPOCHS = 2
# What each job of the two sweeps runs.
JOBS = [
    *SMALL,
    "dataset.test_size=100",
    f"train.epochs={EPOCHS}",
    "evaluate=off",
    "compare.baselines=[]",
]
PARALLEL = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
# Same seeds in both sweeps: the same two models, each to be trained once and reused 3 times.
SWEEPS = {
    "a": ["analyzer=gradient,deep_taylor", "seed=0,1"],
    "b": ["analyzer=input_t_gradient,lrp_z", "seed=0,1"],
}


def start_sweep(tmp_path: Path, name: str, *overrides: str) -> subprocess.Popen:
    """``python -m src.train -m`` in the background: the shared store ``tmp_path/store``, its
    own outputs, reports and sweep folder under ``tmp_path/name``. Output goes to files there,
    not pipes: a process blocked on a full pipe would stall while the test waits on the other."""
    store = [o for o in default_overrides(tmp_path) if o.startswith("tracking.")]
    own = [o for o in default_overrides(tmp_path / name) if not o.startswith("tracking.")]
    folder = tmp_path / name
    folder.mkdir()
    with (folder / "stdout.txt").open("w") as out, (folder / "stderr.txt").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "src.train", "-m", *store, *own, *overrides],
            cwd=tmp_path,
            stdout=out,
            stderr=err,
            env={**os.environ, "HOME": str(tmp_path)},  # an empty Keras cache
            start_new_session=True,  # its own process group, with its joblib workers
        )


@pytest.mark.slow
def test_two_parallel_sweeps_share_the_store_and_the_model_cache(tmp_path):
    processes = {}
    try:
        for name, grid in SWEEPS.items():
            processes[name] = start_sweep(tmp_path, name, *JOBS, *PARALLEL, *grid)
        returncodes = {name: process.wait(timeout=600) for name, process in processes.items()}
    finally:  # on a timeout or an error here: stop both sweeps and their workers
        for process in processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    stderr = {name: (tmp_path / name / "stderr.txt").read_text() for name in SWEEPS}
    for name in SWEEPS:
        assert returncodes[name] == 0, stderr[name][-3000:]
        assert "database is locked" not in stderr[name], stderr[name][-3000:]
        assert "Traceback" not in stderr[name], stderr[name][-3000:]

    # Two parents, FINISHED, each with exactly its four jobs as FINISHED children; no other run.
    parent_runs, children_of = sweep_runs(tmp_path)
    # Which sweep a parent belongs to: its folder, tmp_path/<name>/outputs/multiruns/...
    parents = {
        Path(run.data.tags["sweep_dir"]).relative_to(tmp_path).parts[0]: run for run in parent_runs
    }
    assert len(parent_runs) == 2 and sorted(parents) == sorted(SWEEPS)
    children = {name: children_of[parent.info.run_id] for name, parent in parents.items()}
    assert len(all_runs(tmp_path)) == 2 + sum(len(kids) for kids in children.values())
    client = client_for(tmp_path)
    for name, parent in parents.items():
        assert parent.info.status == "FINISHED", stderr[name][-3000:]
        analyzers = SWEEPS[name][0].removeprefix("analyzer=").split(",")
        expected = sorted(f"{a} · seed {s} · {EPOCHS} ep" for a in analyzers for s in (0, 1))
        assert sorted(kid.info.run_name for kid in children[name]) == expected
        for kid in children[name]:
            run_id, analyzer = kid.info.run_id, kid.data.params["analyzer.name"]
            assert kid.info.status == "FINISHED"
            assert kid.info.run_name.startswith(f"{analyzer} · seed {kid.data.params['seed']} ")
            assert "test_accuracy" in kid.data.metrics
            history = client.get_metric_history(run_id, "val_accuracy")
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
            artifacts = {a.path for a in client.list_artifacts(run_id)}
            artifacts |= {a.path for a in client.list_artifacts(run_id, "figures")}
            assert {"heatmaps.npz", "config.yaml", f"figures/heatmaps_{analyzer}.png"} <= artifacts

    # Across both sweeps each distinct model (one per seed) was trained exactly once.
    kids = [kid for group in children.values() for kid in group]
    models = {kid.data.tags["model_fingerprint"] for kid in kids}
    assert len(models) == 2
    trained = [kid for kid in kids if kid.data.tags["model_reused"] == "false"]
    trainings = collections.Counter(kid.data.tags["model_fingerprint"] for kid in trained)
    assert trainings == {model: 1 for model in models}
    trainers = {kid.data.tags["model_fingerprint"]: kid for kid in trained}
    for kid in kids:
        trainer = trainers[kid.data.tags["model_fingerprint"]]
        assert kid.data.tags.get("trained_by_run", kid.info.run_id) == trainer.info.run_id

    # One complete cache entry per model, and no staging folder left behind.
    cache = store_dir(tmp_path) / "model_cache"
    assert not list(cache.glob(".*.tmp")), sorted(path.name for path in cache.iterdir())
    entries = [path for path in cache.iterdir() if path.suffix not in (".lock", ".holder")]
    # An entry per training, a snapshot per epoch; the model of EPOCHS epochs is the last.
    assert sorted(f"{entry.name.split('-')[0]}.e{EPOCHS}" for entry in entries) == sorted(models)
    for training in entries:
        assert training.is_dir()
        assert sorted(path.name for path in training.iterdir()) == [
            f"epoch-{epoch:04d}" for epoch in range(1, EPOCHS + 1)
        ]
        entry = training / f"epoch-{EPOCHS:04d}"
        assert sorted(path.name for path in entry.iterdir() if path.is_file()) == [
            "meta.json",
            "state.npz",
            "weights.h5",
        ]
        trainer = trainers[f"{training.name.split('-')[0]}.e{EPOCHS}"]
        meta = json.loads((entry / "meta.json").read_text())
        assert meta["trained_by_run"] == trainer.info.run_id
        assert meta["model_uri"] == trainer.data.tags["model_uri"]
        assert len(meta["training"]["history"]["val_accuracy"]) == EPOCHS
        with h5py.File(entry / "weights.h5", "r") as weights:
            assert len(weights.attrs["layer_names"]) > 0
