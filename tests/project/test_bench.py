"""``make bench``: its verdict logic on made-up numbers, and the whole benchmark at tiny sizes
(slow), so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from support import client_for, store_dir

from benchmarks import report
from benchmarks.peer import SHARED
from benchmarks.run import SCORING_BASELINE, SWEEP_BASELINE, TARGETS, _ratios
from src.common.paths import PROJECT_ROOT


def test_ratios_are_project_over_bare_per_repetition():
    reps = [
        {"project": {"wall_s": 33.0, "t": None}, "bare": {"wall_s": 30.0, "t": 1.0}},
        {"project": {"wall_s": 36.0, "t": None}, "bare": {"wall_s": 30.0, "t": 1.0}},
        {"project": {"wall_s": 30.0, "t": None}, "bare": {"wall_s": 30.0, "t": 1.0}},
    ]
    ratios = _ratios(reps)
    assert ratios["wall_s"] == pytest.approx({"median": 1.1, "min": 1.0, "max": 1.2})
    assert "t" not in ratios  # nothing measured on the project's side: no ratio


def made_up_results(**changes) -> dict:
    results = {
        "targets": TARGETS,
        "single": {
            "ratios": {"wall_s": {"median": 0.98}, "peak_rss_mb": {"median": 1.1}},
            "first_step_gap_s": 0.4,
        },
        "flops": {"throughput": {"gradient": {"ratio_median": 0.99}}},
        "sweep": {
            f"{launcher}_ratios": {"reuse_vs_no_reuse": 0.38, "reuse_vs_one_bare": 2.2}
            for launcher in ("basic", "joblib")
        },
        "memory": {"jobs": 12, "last_vs_first_peak": 1.02},
        "startup": {
            name: {"median_s": 0.5, "imports_tensorflow": False} for name in ("help", "cfg_job")
        },
        "scoring": {
            "n_images": 1000,
            "analyzers": {
                "gradient": {
                    "before": {"total_s": 4.0},
                    "default": {"total_s": 7.9},
                    "meta": {"total_s": 20.0, "per_score_s": {"meta": 12.0}},
                },
                "smoothgrad": {"before": {"total_s": 40.0}, "default": {"total_s": 45.0}},
            },
            "baseline": None,
        },
        "grid": {
            "10": {"analyzers": 20, "images": 10, "seconds": 1.9, "peak_rss_mb": 300},
            "1000": {"analyzers": 20, "images": 1000, "seconds": 2.0, "peak_rss_mb": 340},
            "growth": {"seconds": 2.0 / 1.9, "peak_rss_mb": 340 / 300},
        },
        "images": {
            "reps": [
                {
                    "10": {"explained": 10, "wall_s": 20.0, "peak_rss_mb": 700},
                    "1000": {"explained": 1000, "wall_s": 21.0, "peak_rss_mb": 720},
                }
            ],
            "growth": {"wall_s": 1.05, "peak_rss_mb": 720 / 700},
        },
        "headline": {
            "jobs": 27,
            "bare_runs": 27,
            "epochs_needed": 15,
            "reuse": {"epochs_trained": 15},
            "ratios": {"reuse_vs_before": 0.55, "reuse_vs_bare_runs": 0.2},
        },
    }
    results.update(changes)
    return results


def test_every_target_is_checked_and_met_by_numbers_within_it():
    checks = report.checks(made_up_results())
    # ... + 3 scoring checks: two analyzers' default scores, one analyzer's meta-evaluation
    assert len(checks) == 3 + 1 + 4 + 2 + 1 + 3 + 1 + 4 + 1 + 1
    assert "gradient evaluate=meta / evaluate=default, seconds" in checks
    assert all(check["met"] for check in checks.values())


def test_the_headline_sweep_is_held_to_its_epochs_and_its_two_ratios():
    costly = made_up_results()
    costly["headline"]["reuse"]["epochs_trained"] = 27  # a training per epoch count
    costly["headline"]["ratios"] = {"reuse_vs_before": 0.7, "reuse_vs_bare_runs": 0.3}
    assert [name for name, c in report.checks(costly).items() if not c["met"]] == [
        "headline sweep, epochs trained (train_epochs_run sum) / 27 jobs",
        "headline sweep / the same sweep before epoch snapshots",
        "headline sweep / 27 bare runs",
    ]
    # Without the code before snapshots in git (a shallow clone): that ratio is not checked.
    costly["headline"]["ratios"]["reuse_vs_before"] = None
    assert len(report.checks(costly)) == len(report.checks(made_up_results())) - 1


def test_a_number_beyond_its_target_is_reported_missed():
    slow = made_up_results(flops={"throughput": {"gradient": {"ratio_median": 0.9}}})
    heavy = made_up_results(
        startup={
            name: {"median_s": 0.5, "imports_tensorflow": True} for name in ("help", "cfg_job")
        }
    )
    assert [name for name, c in report.checks(slow).items() if not c["met"]] == [
        "gradient images/s, project/bare"
    ]
    late = made_up_results()
    late["single"]["first_step_gap_s"] = 1.3  # 1.3 s after the bare script's first step
    assert [name for name, c in report.checks(late).items() if not c["met"]] == [
        "time to the first training step, project - bare, seconds"
    ]
    costly = made_up_results()
    costly["scoring"]["analyzers"]["gradient"]["default"]["total_s"] = 8.1  # > 2 x 4.0
    assert [name for name, c in report.checks(costly).items() if not c["met"]] == [
        "gradient default scores / reference scores, seconds"
    ]
    # With the reference commit measured side by side, the check holds the scores to that.
    costly["scoring"]["baseline"] = {
        "commit": "40a7ef5",
        "analyzers": {
            "gradient": {"default": {"total_s": 4.7}},
            "smoothgrad": {"default": {"total_s": 40.4}},
        },
    }
    checks = report.checks(costly)
    assert checks["gradient default scores / reference scores, seconds"]["value"] == 8.1 / 4.7
    assert all(check["met"] for check in checks.values())
    # evaluate=meta held to 4x evaluate=default (20.0 / 8.1 is within it).
    assert checks["gradient evaluate=meta / evaluate=default, seconds"]["value"] == 20.0 / 8.1
    costly["scoring"]["analyzers"]["gradient"]["meta"]["total_s"] = 33.0  # > 4 x 8.1
    assert [name for name, c in report.checks(costly).items() if not c["met"]] == [
        "gradient evaluate=meta / evaluate=default, seconds"
    ]
    slow_grid = made_up_results()
    slow_grid["grid"]["growth"]["seconds"] = 100.0  # drawing every explained image again
    assert [name for name, c in report.checks(slow_grid).items() if not c["met"]] == [
        "grid seconds, 1000 / 10 explained images"
    ]
    drawing = made_up_results()
    drawing["images"]["growth"]["wall_s"] = 40.0  # a run's figure drawing every explained image
    assert [name for name, c in report.checks(drawing).items() if not c["met"]] == [
        "run wall, 1000 / 10 explained images (evaluation off)"
    ]
    missed = [name for name, c in report.checks(heavy).items() if not c["met"]]
    assert missed == ["--help imports TensorFlow (0 = no)", "--cfg job imports TensorFlow (0 = no)"]


def test_the_peer_and_the_busy_machine_are_held_to_their_targets():
    rows = {
        "ROAD": {"quantus_s": 12.0, "project_s": 2.0},  # 6x
        "random logit": {"quantus_s": 0.7, "project_s": 0.3},  # under a second: not slower
    }
    loaded = {"ratios": {"policy": {"road": 1.4, "robustness": 2.9}}}
    checks = report.checks(made_up_results(peer={"rows": rows}, loaded=loaded))
    assert checks["shared scores as a whole, Quantus seconds / the project's"]["value"] == (
        pytest.approx(12.7 / 2.3)
    )
    assert checks["ROAD, Quantus seconds / the project's"]["bound"] == 3.0
    assert checks["random logit, Quantus seconds / the project's"]["bound"] == 1.0
    assert all(check["met"] for check in checks.values())
    rows["ROAD"]["project_s"] = 5.0  # 2.4x: a score that takes Quantus over a second
    rows["random logit"]["project_s"] = 0.8  # slower than Quantus
    loaded["ratios"]["policy"]["road"] = 5.7  # ROAD before the thread policy
    missed = [
        name
        for name, check in report.checks(
            made_up_results(peer={"rows": rows}, loaded=loaded)
        ).items()
        if not check["met"]
    ]
    assert missed == [
        "shared scores as a whole, Quantus seconds / the project's",
        "ROAD, Quantus seconds / the project's",
        "random logit, Quantus seconds / the project's",
        "road seconds, beside two busy processes / idle",
    ]


def test_some_sections_alone_are_checked_and_tabled_and_an_unknown_one_refused(capsys):
    from benchmarks.run import main

    peer = {
        "analyzer": "gradient",
        "n_images": 1000,
        "rows": {
            "ROAD": {
                "quantus_s": 12.0,
                "project_s": 2.0,
                "project_value": 0.36,
                "quantus_values": {"ROAD": 0.38},
                "agreement": "other noise draws",
            }
        },
    }
    results = {
        "targets": TARGETS,
        "machine": {"cpu": "x", "cores": 2, "python": "3.11"},
        "sizes": {"train": 10, "test": 10, "epochs": 1},
        "data": "d",
        "quick": False,
        "peer": peer,
        "total_s": 60.0,
    }
    results["checks"] = report.checks(results)
    assert list(results["checks"]) == [
        "shared scores as a whole, Quantus seconds / the project's",
        "ROAD, Quantus seconds / the project's",
    ]
    text = report.markdown(results)
    assert "## 14. The peer" in text and "## 1." not in text
    assert "| ROAD | 12.00 | 2.00 | **6.0x** | 0.360 | ROAD 0.380 | other noise draws |" in text
    with pytest.raises(SystemExit) as stopped:
        main(["--sections=peer,nope"])
    assert stopped.value.code == 2
    assert "--sections: unknown nope; the sections: startup, single," in capsys.readouterr().err


def test_a_snapshots_verification_is_held_to_a_hundredth_of_an_epoch_and_tabled():
    snapshot = {
        "snapshot_bytes": 1_155_177,
        "file_bytes": {"weights.h5": 398_392, "state.npz": 756_080, "meta.json": 705},
        "train_images": 60_000,
        "test_images": 10_000,
        "reps": 20,
        "train_epoch_s": 40.0,
        "write_s": 0.09,
        "hash_s": 0.0008,
        "verify_s": 0.002,
        "verify_weights_s": 0.0005,
        "load_s": 0.06,
        "test_only_s": 1.0,
        "ratios": {
            "verify_vs_load": 0.002 / 0.06,
            "verify_vs_train_epoch": 0.002 / 40.0,
            "test_only_vs_train_epoch": 1.0 / 40.0,
        },
    }
    name = "snapshot verification (every file's SHA-256) / one training epoch"
    checks = report.checks(made_up_results(snapshot=snapshot))
    assert checks[name] == {"value": 0.00005, "bound": 0.01, "at_most": True, "met": True}
    snapshot["ratios"]["verify_vs_train_epoch"] = 0.02
    assert not report.checks(made_up_results(snapshot=snapshot))[name]["met"]
    table = "\n".join(report.snapshot_table(snapshot))
    assert (
        "## 11. Model snapshots: 1.16 MB (weights.h5 0.40, state.npz 0.76, meta.json 0.00 MB)"
        in table
    )
    assert "| verify: meta.json + SHA-256 of every file (a continuation) | 2.00 |" in table
    assert "| one training epoch (60000 images) | 40000.00 |" in table


@pytest.mark.slow
def test_the_quick_benchmark_measures_every_section_and_logs_its_run(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            f"--out={tmp_path / 'results'}",
            f"--tracking-dir={store_dir(tmp_path)}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,  # ~8 min alone; a loaded machine doubles it
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (json_file,) = (tmp_path / "results").glob("*-quick.json")
    results = json.loads(json_file.read_text())

    single = results["single"]["reps"][0]
    for side in ("project", "bare"):
        assert single[side]["wall_s"] > single[side]["train_time_s"] > 0
        assert single[side]["peak_rss_mb"] > 100  # TensorFlow alone takes more
        assert single[side]["time_to_first_step_s"] > 0
    assert set(results["flops"]["throughput"]) == {"deep_taylor", "gradient", "smoothgrad"}
    flops = results["flops"]["flops"]
    # The profiler's counts: a training step costs more than a forward pass, SmoothGrad its 64
    # noisy gradients.
    assert flops["train_step"] > 2 * flops["forward"] > 0
    assert flops["analysis_smoothgrad"] == 64 * flops["analysis_gradient"]
    assert 0 < results["gflops"]["training_project"] < results["gflops"]["sgemm_peak"]

    sweep = results["sweep"]
    for launcher in ("basic", "joblib"):
        assert sweep[f"{launcher}_reuse_true"] | {"wall_s": 0} == {
            "wall_s": 0,
            "jobs": 6,
            "trained": 2,
        }
        assert sweep[f"{launcher}_reuse_false"]["trained"] == 6
    assert results["memory"]["jobs"] == 4 and len(results["memory"]["peak_rss_mb"]) == 4
    assert not results["startup"]["help"]["imports_tensorflow"]
    assert not results["startup"]["cfg_job"]["imports_tensorflow"]
    scoring = results["scoring"]["analyzers"]
    assert set(scoring) == {"gradient", "smoothgrad"}
    for entry in scoring.values():
        assert set(entry["full"]["per_score_s"]) >= {"perturbation", "road", "robustness"}
        assert "road" not in entry["before"]["per_score_s"]
        assert all(entry[name]["total_s"] > 0 for name in ("before", "default", "full", "meta"))
        assert entry["meta"]["per_score_s"]["meta"] > 0
    # The reference commit's code, from git, scored the same model side by side (a
    # shallow clone does not have that commit: the bench says so and compares without it).
    has_baseline = subprocess.run(
        ["git", "cat-file", "-e", f"{SCORING_BASELINE}^{{commit}}"], cwd=PROJECT_ROOT
    )
    if has_baseline.returncode == 0:
        baseline = results["scoring"]["baseline"]["analyzers"]
        assert set(baseline) == {"gradient", "smoothgrad"}
        assert all(entry["default"]["total_s"] > 0 for entry in baseline.values())
    else:
        assert results["scoring"]["baseline"] is None
        assert f"{SCORING_BASELINE} is not in git" in result.stderr

    # The headline sweep's grid (quick: 2 analyzers x 1 seed x 1/2 epochs): each seed's
    # training runs once, to 2 epochs; without reuse, every job trains; before snapshots, one
    # training per epoch count.
    headline = results["headline"]
    assert headline["jobs"] == headline["reuse"]["jobs"] == headline["no_reuse"]["jobs"] == 4
    assert headline["reuse"]["epochs_trained"] == headline["epochs_needed"] == 2
    assert headline["no_reuse"]["epochs_trained"] == 6  # 1 + 2 for each analyzer
    in_git = subprocess.run(
        ["git", "cat-file", "-e", f"{SWEEP_BASELINE}^{{commit}}"], cwd=PROJECT_ROOT
    )
    if in_git.returncode == 0:
        assert headline["before"]["epochs_trained"] == 3  # 1 + 2: one model per epoch count
    else:
        assert headline["before"] is None
    assert headline["bare_runs"] == 4 and set(headline["bare_wall_s"]) == {"1", "2"}
    # One run explaining 10 and all 100 quick test images, its model reused.
    (images,) = results["images"]["reps"]
    assert [entry["explained"] for entry in images.values()] == [10, 100]
    assert all(entry["wall_s"] > entry["analysis_time_s"] > 0 for entry in images.values())

    # A snapshot of the quick model (~1.2 MB): its sums checked in a fraction of its load.
    snapshot = results["snapshot"]
    assert 1_000_000 < snapshot["snapshot_bytes"] < 1_400_000
    assert 0 < snapshot["verify_weights_s"] < snapshot["verify_s"] < snapshot["load_s"]

    grid = results["grid"]
    assert [grid[key]["images"] for key in ("10", "200")] == [10, 200]
    assert all(grid[key]["seconds"] > 0 and grid[key]["peak_rss_mb"] > 100 for key in ("10", "200"))

    # One ROAR point per quick analyzer on the seed's model: the order made, two fresh trainings.
    roar = results["roar"]
    assert set(roar["points"]) == {"gradient", "vargrad"}
    for point in roar["points"].values():
        assert point["wall_s"] > point["order_s"] > 0
        assert point["roar_train_s"] > 0 and point["kar_train_s"] > 0
        assert 0 <= point["roar_accuracy"] <= 1 and 0 <= point["kar_accuracy"] <= 1

    # Section 13: every score idle and beside two busy processes, with the policy and without.
    loaded = results["loaded"]
    assert loaded["busy_processes"] == 2 and loaded["n_images"] == 50
    (rep,) = loaded["reps"]
    assert set(rep) == {
        "policy_idle",
        "policy_loaded",
        "library_default_idle",
        "library_default_loaded",
    }
    assert set(rep["policy_idle"]) >= {"perturbation", "road", "robustness"}
    assert set(loaded["ratios"]["policy"]) == set(rep["policy_idle"])
    # Section 14: every score shared with Quantus, both sides timed and valued.
    peer = results["peer"]
    assert set(peer["rows"]) == set(SHARED)
    for row in peer["rows"].values():
        assert row["quantus_s"] > 0 and row["project_s"] > 0
        assert all(np.isfinite(value) for value in row["quantus_values"].values())

    markdown = json_file.with_suffix(".md").read_text()
    headings = (
        "## Targets",
        "## 1.",
        "## 2.",
        "## 3.",
        "## 4.",
        "## 5.",
        "## 6.",
        "## 7.",
        "## 8.",
        "## 9.",
        "## 11.",
        "## 12. Remove-and-retrain",
        "## 13. Scoring on a busy machine",
        "## 14. The peer",
    )
    for heading in headings:
        assert heading in markdown
    client = client_for(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("benchmarks").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["targets_missed"] == sum(
        not check["met"] for check in results["checks"].values()
    )
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        json_file.name,
        json_file.with_suffix(".md").name,
    }
