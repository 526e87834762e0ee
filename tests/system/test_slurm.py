"""Sweeps on a real one-node SLURM cluster (scripts/slurm-cluster: slurmctld, slurmd, slurmdbd for
sacct, munge) through ``hydra/launcher=slurm``, logging to ``make server``; with ``scancel``, a
time limit and Ctrl-C injected. Every run's and the parent's status is read back from the
server.

The cluster is started by the test if it is not up (and stopped again after); .ci/run starts it
with ``make slurm``. Without SLURM's packages the tests skip, or fail under
XAI_LAB_REQUIRE_SYSTEM_TESTS=1.
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from support import (
    SMALL_UNSCORED,
    all_runs,
    assert_one_line_error,
    client_for,
    default_overrides,
    free_port,
    make_service,
    require,
    run_record,
    train_cli,
)

from src.common.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow
CLUSTER = PROJECT_ROOT / "scripts" / "slurm-cluster"
ON_SLURM = ["hydra/launcher=slurm", "hydra.launcher.mem_gb=2"]


@pytest.fixture(scope="module")
def slurm() -> Iterator[dict[str, str]]:
    """The environment that reaches the cluster (SLURM_CONF), started if it was not up."""
    require(
        all(Path("/usr/sbin", daemon).exists() for daemon in ("slurmctld", "slurmdbd", "mariadbd")),
        "SLURM (slurm-wlm, slurmdbd, munge, mariadb-server: make install-system-tests)",
    )
    was_up = subprocess.run([CLUSTER, "status"], capture_output=True).returncode == 0
    started = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr[-3000:]
    conf = started.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
    try:
        yield {**os.environ, "SLURM_CONF": conf}
    finally:
        if not was_up:
            subprocess.run([CLUSTER, "stop"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    backend = f"sqlite:///{folder / 'mlflow.db'}"
    with make_service("server", port, BACKEND=backend, ARTIFACTS=str(folder / "artifacts")) as url:
        yield url


@pytest.fixture(autouse=True)
def no_jobs_left_behind(slurm) -> Iterator[None]:
    """A failing test's jobs are cancelled, so the next test starts on an idle node."""
    yield
    subprocess.run(["scancel", "--user", getpass.getuser()], env=slurm)


def sweep_command(tmp_path: Path, url: str, *args: str, cpus: int = 1) -> list[str]:
    """The sweep against the server; one CPU a job by default, so the node's two run two jobs
    side by side."""
    return [
        sys.executable,
        "-m",
        "src.train",
        "-m",
        *default_overrides(tmp_path),
        f"tracking.uri={url}",
        f"tracking.experiment_name={tmp_path.name}",
        f"train.cache_dir={tmp_path / 'cache'}",
        *ON_SLURM,
        f"hydra.launcher.cpus_per_task={cpus}",
        *SMALL_UNSCORED,
        *args,
    ]


def run_sweep(
    tmp_path: Path, url: str, env: dict[str, str], *args: str, cpus: int = 1
) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(tmp_path, url, *args, cpus=cpus),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_sweep(tmp_path: Path, url: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        sweep_command(tmp_path, url, *args),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def runs_of(url: str, tmp_path: Path) -> tuple[Run, list[Run]]:
    """The sweep's parent run and its jobs' runs, from the server."""
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(tmp_path.name)
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("sweep_role") == "parent"]
    return parent, [run for run in runs if run is not parent]


def squeue(env: dict[str, str], *args: str) -> list[str]:
    listed = subprocess.run(
        ["squeue", "--noheader", "--format=%i %T", *args], env=env, capture_output=True, text=True
    )
    return listed.stdout.split("\n")[:-1]


def wait_for(condition, process: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never came:\n{process.communicate()[1][-4000:]}")
        time.sleep(1)


def running_runs(url: str, tmp_path: Path, count: int) -> bool:
    """Whether ``count`` job runs are RUNNING with an epoch logged."""
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(tmp_path.name)
    if experiment is None:
        return False
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    jobs = [run for run in runs if "sweep_role" not in run.data.tags]
    return sum(1 for run in jobs if "train_loss" in run.data.metrics) >= count


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "UncompletedJobError" not in stderr, stderr[-4000:]


def test_a_sweep_on_slurm_reports_progress_and_reuses_models_after_training(
    tmp_path, slurm, server
):
    result = run_sweep(
        tmp_path,
        server,
        slurm,
        "train.epochs=2",
        "analyzer=gradient,deep_taylor",
        "compare.baselines=[]",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert_no_traceback(result.stderr)
    # The first job trains; the second, which reuses its model, waits in SLURM's queue (not on
    # an allocation) until it has ended; the terminal hears of both.
    assert "sweep: submitted 1 slurm job(s)" in result.stderr
    assert "(they reuse their models)" in result.stderr
    assert "PENDING (Dependency)" in result.stderr
    assert "sweep: 2/2 jobs done" in result.stderr
    parent, jobs = runs_of(server, tmp_path)
    assert parent.info.status == "FINISHED"
    assert sorted(run.info.status for run in jobs) == ["FINISHED", "FINISHED"]
    assert sorted(run.data.tags["model_reused"] for run in jobs) == ["false", "true"]
    assert all(run.data.tags.get("process.slurm_job_id") for run in jobs)


def test_a_job_cancelled_with_scancel_ends_killed_and_the_others_finish_first(
    tmp_path, slurm, server
):
    sweep = start_sweep(tmp_path, server, slurm, "train.epochs=400", "seed=0,1")
    wait_for(lambda: running_runs(server, tmp_path, 2), sweep)
    (first, _), *_ = (line.split() for line in squeue(slurm, "--states=RUNNING"))
    subprocess.run(["scancel", first], env=slurm, check=True)
    _, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 1, stderr[-4000:]  # not every job finished
    assert_no_traceback(stderr)
    assert f"{first}: KILLED (stopped by SIGTERM)" in stderr
    parent, jobs = runs_of(server, tmp_path)
    assert sorted(run.info.status for run in jobs) == ["FINISHED", "KILLED"]
    assert parent.info.status == "KILLED"
    # The parent was ended only once every job had.
    assert parent.info.end_time >= max(run.info.end_time for run in jobs)


def test_a_job_reaching_its_time_limit_ends_killed_saying_so(tmp_path, slurm, server):
    """SLURM warns a job (SIGUSR2) signal_delay_s before its time limit; the run ends KILLED
    with the reason in its end_reason tag and in one line on the terminal."""
    limit = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30"]
    result = run_sweep(tmp_path, server, slurm, "train.epochs=100000", "seed=0", *limit)
    assert result.returncode == 1, result.stderr[-4000:]
    assert_no_traceback(result.stderr)
    (done,) = [line for line in result.stderr.splitlines() if "sweep: 1/1 jobs done" in line]
    assert "KILLED" in done and "reached its time limit" in done, done
    parent, (job,) = runs_of(server, tmp_path)
    assert job.info.status == "KILLED"
    assert "time limit" in job.data.tags["end_reason"]
    assert parent.info.status == "KILLED"


def test_ctrl_c_cancels_the_sweeps_jobs_and_says_so(tmp_path, slurm, server):
    sweep = start_sweep(tmp_path, server, slurm, "train.epochs=2000", "seed=0,1,2")
    wait_for(lambda: running_runs(server, tmp_path, 1), sweep)
    ids = [line.split()[0] for line in squeue(slurm, "--array")]
    if len(ids) != 3:  # say what became of the missing job before failing
        sweep.kill()
        accounted = subprocess.run(
            ["sacct", "-X", "--format=JobID,State,ExitCode,Reason%40"],
            env=slurm,
            capture_output=True,
            text=True,
        ).stdout
        raise AssertionError(f"{ids}\n{accounted}\n{sweep.communicate()[1][-4000:]}")
    sent = time.monotonic()
    sweep.send_signal(signal.SIGINT)
    _, stderr = sweep.communicate(timeout=180)
    seconds = time.monotonic() - sent
    assert sweep.returncode == 130, stderr[-4000:]
    assert seconds < 90, seconds
    assert_no_traceback(stderr)
    assert "interrupted: cancelling 3 job(s) of the sweep that had not ended" in stderr
    assert "interrupted: the 3 job(s) cancelled have ended" in stderr
    assert squeue(slurm, "--jobs", ",".join(ids)) == []  # nothing queued or running
    parent, jobs = runs_of(server, tmp_path)
    assert parent.info.status == "KILLED"
    assert jobs and {run.info.status for run in jobs} == {"KILLED"}
    last = stderr.strip().splitlines()[-1]
    assert last.endswith(f"the sweep's parent run is KILLED; its runs: {len(jobs)} KILLED"), last


def test_a_request_no_node_can_hold_is_refused_in_one_line_before_any_run(tmp_path, slurm, server):
    result = run_sweep(tmp_path, server, slurm, "seed=0,1", cpus=4)
    assert result.returncode == 2, result.stderr[-4000:]
    assert_one_line_error(result, "a job asks for 4 CPUs and 2 GB, but the largest node")
    assert MlflowClient(server).get_experiment_by_name(tmp_path.name) is None
    assert squeue(slurm) == []


def test_a_sweep_on_slurm_trains_each_seed_once_to_the_same_models_as_from_the_start(
    tmp_path, slurm, server
):
    """Two training lengths on SLURM: the 2-epoch job trains first (its snapshots are the
    1-epoch model), 2 epochs trained in all; every metric and heatmap is that of a run that
    trained its epochs from the start (here, with the basic launcher and the same 2 threads)."""
    grid = ["train.epochs=1,2", "analyzer=gradient,input_t_gradient", "compare.baselines=[]"]
    result = run_sweep(tmp_path, server, slurm, *grid, cpus=2)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "sweep: submitted 1 slurm job(s)" in result.stderr
    _, jobs = runs_of(server, tmp_path)
    assert sorted(run.info.status for run in jobs) == ["FINISHED"] * 4
    assert sum(run.data.metrics["train_epochs_run"] for run in jobs) == 2
    (trainer,) = [run for run in jobs if run.data.metrics["train_epochs_run"] > 0]
    assert trainer.data.params["train.epochs"] == "2"

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    local = train_cli(scratch, "-m", *SMALL_UNSCORED, *grid, "train.reuse=false")
    assert local.returncode == 0, local.stderr[-3000:]

    def by_job(client, runs, folder):
        records = {}
        for run in runs:
            record = run_record(client, run, folder, artifacts=("heatmaps.npz",))
            key = (run.data.params["analyzer.name"], run.data.params["train.epochs"])
            records[key] = record
        return records

    expected = by_job(
        client_for(scratch),
        [run for run in all_runs(scratch) if run.data.tags.get("sweep_role") != "parent"],
        scratch,
    )
    assert len(expected) == 4
    assert by_job(MlflowClient(server), jobs, tmp_path / "downloads") == expected


def test_a_remove_and_retrain_sweep_on_slurm_gives_the_local_launchers_numbers(
    tmp_path, slurm, server
):
    """experiment=roar on SLURM: each (analyzer, fraction) a job, the seed's model trained once
    and the degraded data's models by the jobs at 50%, the table on the parent; the retrained
    models' accuracies bit for bit those of the same sweep run locally (with the same 2
    threads)."""
    grid = [
        "experiment=roar",  # its Fashion-MNIST yields to SMALL_UNSCORED's digits
        "analyzer=gradient,input_t_gradient",
        "roar.fractions=[50]",
        "compare.baselines=[noise]",
        "train.epochs=1",
    ]
    result = run_sweep(tmp_path, server, slurm, *grid, cpus=2)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_no_traceback(result.stderr)
    assert "sweep: remove-and-retrain at 0, 50% of the pixels" in result.stderr
    assert "remove-and-retrain (" in result.stderr and "ROAR gain [95%]" in result.stderr
    parent, jobs = runs_of(server, tmp_path)
    assert sorted(run.info.status for run in jobs) == ["FINISHED"] * 6  # 3 analyzers x 2
    assert sum(run.data.metrics["train_epochs_run"] for run in jobs) == 1  # one seed, one model
    retrained = {
        run.data.params["analyzer.name"]: run.data.metrics
        for run in jobs
        if run.data.params["roar.fraction"] == "50"
    }
    assert sorted(retrained) == ["gradient", "input_t_gradient", "noise"]
    assert all(m["roar_train_time_s"] > 0 and m["kar_train_time_s"] > 0 for m in retrained.values())
    assert "roar_gain/gradient" in parent.data.metrics
    assert "roar_gain/noise" not in parent.data.metrics  # the reference itself

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    local = train_cli(scratch, "-m", *SMALL_UNSCORED, *grid, "train.reuse=false")
    assert local.returncode == 0, local.stderr[-3000:]
    here = {
        run.data.params["analyzer.name"]: run.data.metrics
        for run in all_runs(scratch)
        if run.data.params.get("roar.fraction") == "50"
    }
    for name, metrics in retrained.items():
        for key in ("roar_accuracy", "kar_accuracy"):
            assert here[name][key] == metrics[key], (name, key)
