"""What the SLURM launcher decides without a cluster (src/sweep/launcher.py: the waves of a sweep,
the jobs' labels, the request checked against ``sinfo``, the pending reasons from ``squeue``),
the repair of runs whose SLURM job has ended (src/tracking/repair.py, asking ``sacct``), and a
job's outcome in one line (src/common/outcome.py). ``sinfo``, ``squeue`` and ``sacct`` are small
scripts put first on PATH that print fixed lines and record how they were called."""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from src.common import internals
from src.common.errors import UserError
from src.common.outcome import JobOutcome
from src.sweep import launcher
from src.sweep.launcher import check_request, job_labels, model_group, pending_reasons, waves
from src.tracking.lifecycle import HOST, PID, SLURM_JOB, STARTED, process_tags
from src.tracking.repair import repair


@pytest.fixture
def bin_dir(tmp_path, monkeypatch) -> Path:
    """A folder that is the whole PATH: only the fakes written there can be found."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def fake_command(
    folder: Path, name: str, stdout: str = "", returncode: int = 0, stderr: str = ""
) -> Path:
    """An executable ``name`` that prints ``stdout`` (and ``stderr``), exits ``returncode``,
    and appends its arguments, one JSON list per call, to the file it returns."""
    calls = folder / f"{name}.calls"
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(calls)!r}, 'a') as stream:\n"
        "    stream.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({returncode})\n"
    )
    script.chmod(0o755)
    return calls


def calls_of(calls: Path) -> list[list[str]]:
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


# -- waves and labels ---------------------------------------------------------------------------


def test_jobs_that_differ_only_in_what_they_explain_share_a_model():
    assert model_group(["model=cnn", "seed=1"]) == model_group(["seed=1", "model=cnn"])
    assert model_group(
        [
            "model=cnn",
            "analyzer=gradient",
            "explain.n_images=8",
            "evaluate=off",
            "report.grid_images=4",
            "tracking.experiment_name=x",
            "paths.output_dir=/out",
            "hydra.launcher.cpus_per_task=2",
            "+analyzer.extra=1",
            "~evaluate",
        ]
    ) == ("model=cnn",)
    # A shorter training is a snapshot of the longer one: the same training.
    assert model_group(["model=cnn", "train.epochs=2"]) == model_group(["model=cnn"])
    assert model_group(["model=cnn", "train.batch_size=32"]) != model_group(["model=cnn"])
    assert model_group(["dataset=digits"]) != model_group(["dataset=mnist"])


def test_the_first_wave_has_the_first_job_of_each_model():
    job_overrides = [
        ["model=cnn", "seed=0", "analyzer=gradient"],
        ["model=cnn", "seed=0", "analyzer=lrp_z"],
        ["model=mlp", "seed=0", "analyzer=gradient"],
        ["model=mlp", "seed=0", "analyzer=lrp_z"],
        ["model=cnn", "seed=1", "analyzer=gradient"],
        ["model=cnn", "seed=1", "analyzer=lrp_z", "evaluate=off"],
    ]
    assert waves(job_overrides) == ([0, 2, 4], [1, 3, 5])


def test_the_first_wave_has_the_longest_training_of_each_seed():
    # make sweep's order: analyzer x seed x epochs; per seed, the 5-epoch job trains first and
    # leaves the 1- and 3-epoch models as snapshots.
    job_overrides = [
        [f"analyzer={a}", f"seed={s}", f"train.epochs={e}"]
        for a in ("deep_taylor", "gradient")
        for s in (0, 1)
        for e in (1, 3, 5)
    ]
    first, later = waves(job_overrides)
    assert first == [2, 5]
    assert [job_overrides[i] for i in first] == [
        ["analyzer=deep_taylor", "seed=0", "train.epochs=5"],
        ["analyzer=deep_taylor", "seed=1", "train.epochs=5"],
    ]
    assert sorted(first + later) == list(range(12))


def test_a_sweep_over_analyzers_only_trains_one_model_first():
    job_overrides = [["analyzer=gradient"], ["analyzer=lrp_z"], ["analyzer=smoothgrad"]]
    assert waves(job_overrides) == ([0], [1, 2])
    assert waves([]) == ([], [])


def test_job_labels_show_only_the_overrides_that_vary():
    job_overrides = [
        ["dataset=digits", "analyzer=gradient", "seed=0", "hydra.job.chdir=false"],
        ["dataset=digits", "analyzer=gradient", "seed=1", "hydra.job.chdir=true"],
        ["dataset=digits", "analyzer=lrp_z", "seed=0", "hydra.job.chdir=false"],
    ]
    assert job_labels(job_overrides, first_index=3) == [
        "#3 (analyzer=gradient seed=0)",
        "#4 (analyzer=gradient seed=1)",
        "#5 (analyzer=lrp_z seed=0)",
    ]


def test_a_job_alone_or_like_the_others_is_labelled_by_its_number():
    assert job_labels([["seed=0", "analyzer=gradient"]], first_index=0) == ["#0"]
    assert job_labels([["seed=0"], ["seed=0"]], first_index=7) == ["#7", "#8"]


# -- the request checked against sinfo ----------------------------------------------------------

NODES = "node1|debug*|2|23000\nnode2|big|16|128000\n"
SINFO_ARGS = ["--noheader", "--Node", "--format=%N|%P|%c|%m"]


def test_a_request_that_fits_a_node_of_the_default_partition_passes(bin_dir):
    calls = fake_command(bin_dir, "sinfo", NODES)
    check_request({"cpus_per_task": 2, "mem_gb": 4})
    check_request({"cpus_per_task": 1, "tasks_per_node": 2, "mem_gb": 22})
    assert calls_of(calls) == [SINFO_ARGS, SINFO_ARGS]


@pytest.mark.parametrize(
    "request_, asked",
    [
        ({"cpus_per_task": 4}, "4 CPUs and 0 GB"),
        ({"cpus_per_task": 2, "tasks_per_node": 2}, "4 CPUs and 0 GB"),
        ({"cpus_per_task": 2, "mem_gb": 64}, "2 CPUs and 64 GB"),
        ({"cpus_per_task": 1, "mem_gb": 22.5}, "1 CPUs and 22.5 GB"),
    ],
)
def test_a_request_larger_than_every_node_of_the_default_partition_is_a_user_error(
    bin_dir, request_, asked
):
    # node2 (16 CPUs, 125 GB) is in another partition: it does not count.
    fake_command(bin_dir, "sinfo", NODES)
    with pytest.raises(UserError) as error:
        check_request(request_)
    message = str(error.value)
    assert f"a job asks for {asked}, but the largest node of partition debug has 2 CPUs" in message
    assert "has 2 CPUs and 22.5 GB (sinfo)" in message  # 23000 MB
    assert "\n" not in message


def test_a_named_partition_is_asked_for_and_its_nodes_count(bin_dir):
    calls = fake_command(bin_dir, "sinfo", "node2|big|16|128000\nnode3|big|8|64000\n")
    check_request({"partition": "big", "cpus_per_task": 16, "mem_gb": 100})
    with pytest.raises(UserError, match=r"partition big has 16 CPUs and 125\.0 GB"):
        check_request({"partition": "big", "cpus_per_task": 32})
    assert calls_of(calls) == [[*SINFO_ARGS, "--partition", "big"]] * 2


def test_a_partition_without_nodes_is_a_user_error(bin_dir):
    fake_command(bin_dir, "sinfo", "")
    with pytest.raises(UserError, match="sinfo lists no node in partition gpu$"):
        check_request({"partition": "gpu"})
    fake_command(bin_dir, "sinfo", "node2|big|16|128000\n")  # no default partition
    with pytest.raises(UserError, match="sinfo lists no node in the default partition$"):
        check_request({})


def test_no_sinfo_on_path_is_a_user_error(bin_dir):
    with pytest.raises(UserError) as error:
        check_request({"cpus_per_task": 1})
    assert "sinfo is not on PATH, so this is not a SLURM submit host" in str(error.value)


def test_a_failing_sinfo_is_a_user_error_with_its_last_line(bin_dir):
    fake_command(
        bin_dir,
        "sinfo",
        returncode=1,
        stderr="sinfo: error: first\nsinfo: error: Unable to contact slurm controller\n",
    )
    with pytest.raises(UserError) as error:
        check_request({})
    assert str(error.value).startswith(
        "hydra/launcher=slurm: sinfo failed (sinfo: error: Unable to contact slurm controller): "
        "is slurmctld up"
    )


# -- pending reasons from squeue ----------------------------------------------------------------


def test_pending_reasons_are_read_from_squeue(bin_dir):
    calls = fake_command(bin_dir, "squeue", "101|Resources\n102_3|Dependency\n")
    assert pending_reasons(["101", "102_3"]) == {"101": "Resources", "102_3": "Dependency"}
    assert calls_of(calls) == [["--noheader", "--array", "--format=%i|%r", "--jobs", "101,102_3"]]


def test_pending_reasons_ask_nothing_without_jobs_or_squeue(bin_dir):
    assert pending_reasons(["101"]) == {}  # no squeue on PATH
    calls = fake_command(bin_dir, "squeue", "101|Resources\n")
    assert pending_reasons([]) == {}
    assert calls_of(calls) == []


def test_pending_reasons_with_spaces_are_kept_whole(bin_dir):
    # SLURM's reasons are not all one word: these are squeue's own words.
    fake_command(
        bin_dir,
        "squeue",
        "103|launch failed requeued held\n104|ReqNodeNotAvail, UnavailableNodes:node[1-2]\n",
    )
    assert pending_reasons(["103", "104"]) == {
        "103": "launch failed requeued held",
        "104": "ReqNodeNotAvail, UnavailableNodes:node[1-2]",
    }


# -- repair of runs whose SLURM job has ended ---------------------------------------------------

SACCT_ARGS = ["--noheader", "--allocations", "--parsable2", "--format=JobIDRaw,State", "--jobs"]
SACCT_STATES = (
    "101|CANCELLED by 0\n102|RUNNING\n103|TIMEOUT\n104|COMPLETED\n105|PENDING\n"
    "201|CANCELLED by 0\n"  # asked about or not, the run of this host is judged by its process
)


def elsewhere(job: str | None) -> dict[str, str]:
    """The process tags of a run made on another host, in SLURM job ``job``."""
    tags = {HOST: "node7", PID: "4321", STARTED: "2026-01-01T00:00:00.000000+00:00"}
    return {**tags, SLURM_JOB: job} if job else tags


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """A store with experiment ``e`` and no run, made once (MLflow's tables take a second)."""
    folder = tmp_path_factory.mktemp("template")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    client.create_experiment("e", artifact_location=(folder / "artifacts").as_uri())
    return folder / "mlflow.db"


@pytest.fixture
def client(tmp_path, empty_store) -> MlflowClient:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture
def runs(client) -> dict[str, str]:
    experiment = client.get_experiment_by_name("e").experiment_id
    cases = {
        "cancelled": elsewhere("101"),
        "running": elsewhere("102"),
        "timeout": elsewhere("103"),
        "completed": elsewhere("104"),
        "pending": elsewhere("105"),
        "unknown to sacct": elsewhere("106"),
        "no job": elsewhere(None),
        "here": {**process_tags(), SLURM_JOB: "201"},  # this process: alive
    }
    made = {
        name: client.create_run(experiment, tags=tags).info.run_id for name, tags in cases.items()
    }
    finished = client.create_run(experiment, tags=elsewhere("301")).info.run_id
    client.set_terminated(finished, "FINISHED")
    return made


def statuses(client: MlflowClient, runs: dict[str, str]) -> dict[str, str]:
    return {name: client.get_run(run_id).info.status for name, run_id in runs.items()}


def test_runs_whose_slurm_job_has_ended_are_marked_killed(bin_dir, client, runs):
    calls = fake_command(bin_dir, "sacct", SACCT_STATES)

    result = repair(client)

    assert calls_of(calls) == [[*SACCT_ARGS, "101,102,103,104,105,106"]]
    assert statuses(client, runs) == {
        "cancelled": "KILLED",
        "running": "RUNNING",
        "timeout": "KILLED",
        "completed": "KILLED",
        "pending": "RUNNING",
        "unknown to sacct": "RUNNING",
        "no job": "RUNNING",
        "here": "RUNNING",
    }
    assert sorted(result.killed) == sorted(runs[n] for n in ("cancelled", "timeout", "completed"))
    assert sorted(result.alive) == sorted(runs[n] for n in ("running", "pending", "here"))
    assert sorted(result.unchecked) == sorted(runs[n] for n in ("unknown to sacct", "no job"))
    note = client.get_run(runs["cancelled"]).data.tags["repair.note"]
    assert note.endswith(": SLURM job 101 on node7 had ended (CANCELLED, sacct)")
    assert "(TIMEOUT, sacct)" in client.get_run(runs["timeout"]).data.tags["repair.note"]
    assert "repair.note" not in client.get_run(runs["running"]).data.tags


def test_a_dry_run_asks_sacct_but_changes_nothing(bin_dir, client, runs, caplog):
    fake_command(bin_dir, "sacct", SACCT_STATES)
    result = repair(client, dry_run=True)
    assert sorted(result.killed) == sorted(runs[n] for n in ("cancelled", "timeout", "completed"))
    assert set(statuses(client, runs).values()) == {"RUNNING"}
    assert "repair.note" not in client.get_run(runs["cancelled"]).data.tags
    assert caplog.text.count("would mark it KILLED") == 3


def test_without_sacct_the_runs_of_other_hosts_are_unchecked(bin_dir, client, runs):
    result = repair(client)  # PATH has no sacct
    assert result.killed == []
    assert result.alive == [runs["here"]]
    assert sorted(result.unchecked) == sorted(v for k, v in runs.items() if k != "here")
    assert set(statuses(client, runs).values()) == {"RUNNING"}


def test_a_failing_sacct_leaves_the_runs_of_other_hosts_unchecked(bin_dir, client, runs, caplog):
    fake_command(bin_dir, "sacct", returncode=1, stderr="sacct: error: no slurmdbd\n")
    with caplog.at_level(logging.WARNING, logger="src.tracking.repair"):
        result = repair(client)
    assert "sacct failed" in caplog.text
    assert result.killed == []
    assert set(statuses(client, runs).values()) == {"RUNNING"}


def test_a_run_of_an_array_task_whose_job_has_ended_is_marked_killed(bin_dir, client):
    # In task 2 of job array 36, SLURM_JOB_ID is the task's own job id, 37; sacct's JobID
    # column names the task 36_2 (the launcher submits every sweep as job arrays), its
    # JobIDRaw column 37: repair asks for JobIDRaw (checked by SACCT_ARGS above).
    experiment = client.get_experiment_by_name("e").experiment_id
    run_id = client.create_run(experiment, tags=elsewhere("37")).info.run_id
    calls = fake_command(bin_dir, "sacct", "37|CANCELLED by 0\n")

    result = repair(client)

    assert calls_of(calls) == [[*SACCT_ARGS, "37"]]
    assert result.killed == [run_id]
    assert client.get_run(run_id).info.status == "KILLED"


def test_this_hosts_runs_are_judged_by_their_process_not_asked_to_sacct(bin_dir, client):
    experiment = client.get_experiment_by_name("e").experiment_id
    alive = client.create_run(experiment, tags={**process_tags(), SLURM_JOB: "201"}).info.run_id
    calls = fake_command(bin_dir, "sacct", "201|CANCELLED by 0\n")
    result = repair(client)
    assert result.alive == [alive]
    assert calls_of(calls) == []
    assert client.get_run(alive).info.status == "RUNNING"


# -- a job's end, as the sweep's progress tells it -------------------------------------------------


class CancelledJob:
    """A job ``scancel`` has stopped: the scheduler counts it ended (CANCELLED) at once, while
    its process is still ending its run; the process writes its result ``polls`` polls later."""

    def __init__(self, folder: Path, polls: int) -> None:
        self.job_id, self.state, self.polls = "4_0", "CANCELLED", polls
        self.paths = type("Paths", (), {"result_pickle": folder / "4_0_result.pkl"})()

    def done(self) -> bool:
        return True

    def poll(self) -> None:
        self.polls -= 1
        if self.polls == 0:
            self.paths.result_pickle.write_bytes(b"")

    def results(self) -> list:
        outcome = JobOutcome("KILLED", reason="stopped by SIGTERM")
        return [internals.completed_job_return(["seed=0"], outcome)]


def test_a_cancelled_job_is_done_once_it_has_said_how_it_ended(tmp_path, monkeypatch, caplog):
    job = CancelledJob(tmp_path, polls=3)

    def in_queue(jobs):  # squeue lists the job (COMPLETING) until its process has ended
        job.poll()
        return [] if job.paths.result_pickle.exists() else [job.job_id]

    monkeypatch.setattr(launcher, "in_queue", in_queue)
    monkeypatch.setattr(launcher, "POLL_S", 0.0)
    with caplog.at_level(logging.INFO, logger=launcher.__name__):
        launcher._Progress(["seed=0"], 1).until_done({0: job})
    lines = [record.getMessage() for record in caplog.records]
    assert lines[-1] == "sweep: 1/1 jobs done · seed=0 4_0: KILLED (stopped by SIGTERM)"
    assert "sweep: job seed=0 4_0: CANCELLED" in lines  # while it was ending


def test_a_job_that_ended_without_a_result_is_done_with_the_schedulers_state(
    tmp_path, monkeypatch, caplog
):
    job = CancelledJob(tmp_path, polls=-1)  # killed outright: never writes a result
    monkeypatch.setattr(launcher, "in_queue", lambda jobs: [])
    with caplog.at_level(logging.INFO, logger=launcher.__name__):
        launcher._Progress(["seed=0"], 1).until_done({0: job})
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["sweep: 1/1 jobs done · seed=0 4_0: CANCELLED"]


# -- a job's outcome in one line ----------------------------------------------------------------


def test_a_job_outcome_says_what_it_came_to_in_one_line():
    assert JobOutcome("FINISHED", test_accuracy=0.91236).summary() == (
        "FINISHED (test accuracy 0.9124)"
    )
    assert JobOutcome("KILLED", reason="slurm job 12_3 cancelled").summary() == (
        "KILLED (slurm job 12_3 cancelled)"
    )
    assert JobOutcome("FAILED").summary() == "FAILED"
    assert JobOutcome("FINISHED").finished
    assert not JobOutcome("KILLED", test_accuracy=0.9).finished
    assert math.isnan(JobOutcome("FAILED").test_accuracy)
