"""The benchmark's verdicts, its Markdown table and its MLflow run."""

from __future__ import annotations

import statistics
from pathlib import Path


def checks(results: dict) -> dict[str, dict]:
    """Each target: the measured value, the bound, and whether it is met."""
    targets, found = results["targets"], {}

    def check(name: str, value: float, bound: float, at_most: bool = True) -> None:
        met = value <= bound if at_most else value >= bound
        found[name] = {"value": value, "bound": bound, "at_most": at_most, "met": bool(met)}

    if "single" in results:
        ratios = results["single"]["ratios"]
        check("single run wall, project/bare", ratios["wall_s"]["median"], targets["single_wall"])
        check(
            "single run peak RSS, project/bare",
            ratios["peak_rss_mb"]["median"],
            targets["single_rss"],
        )
        if results["single"].get("first_step_gap_s") is not None:
            check(
                "time to the first training step, project - bare, seconds",
                results["single"]["first_step_gap_s"],
                targets["first_step_gap_s"],
            )
    if "flops" in results:
        for name, entry in results["flops"]["throughput"].items():
            check(
                f"{name} images/s, project/bare",
                entry["ratio_median"],
                targets["throughput"],
                at_most=False,
            )
    if "sweep" in results:
        for launcher in ("basic", "joblib"):
            sweep = results["sweep"][f"{launcher}_ratios"]
            check(
                f"{launcher} sweep, reuse/no reuse",
                sweep["reuse_vs_no_reuse"],
                targets["sweep_reuse_vs_no_reuse"],
            )
            check(
                f"{launcher} sweep with reuse / one bare run",
                sweep["reuse_vs_one_bare"],
                targets["sweep_reuse_vs_bare"],
            )
    if "scoring" in results:
        scoring = results["scoring"]
        for analyzer, entry in scoring["analyzers"].items():
            if scoring.get("baseline"):  # the reference commit's own scores, side by side
                before = scoring["baseline"]["analyzers"][analyzer]["default"]["total_s"]
            else:  # without git: the same set of scores by today's code
                before = entry["before"]["total_s"]
            check(
                f"{analyzer} default scores / reference scores, seconds",
                entry["default"]["total_s"] / before,
                targets["scoring_vs_before"],
            )
            if "meta" in entry:
                check(
                    f"{analyzer} evaluate=meta / evaluate=default, seconds",
                    entry["meta"]["total_s"] / entry["default"]["total_s"],
                    targets["meta_vs_default"],
                )
    if "grid" in results:
        growth = results["grid"]["growth"]
        images = [key for key in results["grid"] if key != "growth"]
        check(
            f"grid seconds, {images[-1]} / {images[0]} explained images",
            growth["seconds"],
            targets["grid_images_growth"],
        )
    if "images" in results:
        reps = results["images"]["reps"]
        small, large = (rep["explained"] for rep in reps[0].values())
        check(
            f"run wall, {large} / {small} explained images (evaluation off)",
            results["images"]["growth"]["wall_s"],
            targets["run_images_growth"],
        )
    if "snapshot" in results:
        check(
            "snapshot verification (every file's SHA-256) / one training epoch",
            results["snapshot"]["ratios"]["verify_vs_train_epoch"],
            targets["snapshot_verify_vs_epoch"],
        )
    if "headline" in results:
        headline = results["headline"]
        check(
            f"headline sweep, epochs trained (train_epochs_run sum) / {headline['jobs']} jobs",
            headline["reuse"]["epochs_trained"],
            headline["epochs_needed"],
        )
        if headline["ratios"]["reuse_vs_before"] is not None:
            check(
                "headline sweep / the same sweep before epoch snapshots",
                headline["ratios"]["reuse_vs_before"],
                targets["headline_vs_before"],
            )
        check(
            f"headline sweep / {headline['bare_runs']} bare runs",
            headline["ratios"]["reuse_vs_bare_runs"],
            targets["headline_vs_bare"],
        )
    if "peer" in results:
        rows = results["peer"]["rows"]
        total = sum(row["quantus_s"] for row in rows.values())
        check(
            "shared scores as a whole, Quantus seconds / the project's",
            total / sum(row["project_s"] for row in rows.values()),
            targets["peer_speedup"],
            at_most=False,
        )
        for label, row in rows.items():
            bound = targets["peer_speedup" if row["quantus_s"] > 1 else "peer_never_slower"]
            check(
                f"{label}, Quantus seconds / the project's",
                row["quantus_s"] / row["project_s"],
                bound,
                at_most=False,
            )
    if "loaded" in results:
        for score, ratio in results["loaded"]["ratios"]["policy"].items():
            check(
                f"{score} seconds, beside two busy processes / idle",
                ratio,
                targets["loaded_vs_idle"],
            )
    if "memory" in results:
        memory = results["memory"]
        check(
            f"peak RSS job {memory['jobs']} / job 1",
            memory["last_vs_first_peak"],
            targets["memory_growth"],
        )
    if "startup" in results:
        for name in ("help", "cfg_job"):
            check(
                f"--{name.replace('_', ' ')} seconds",
                results["startup"][name]["median_s"],
                targets["help_s"],
            )
            check(
                f"--{name.replace('_', ' ')} imports TensorFlow (0 = no)",
                float(results["startup"][name]["imports_tensorflow"]),
                0.0,
            )
    return found


QUICK_NOTE = " — a QUICK smoke run: tiny sizes, not a measurement"


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    sizes, machine = results["sizes"], results["machine"]
    lines = [
        "# Benchmark: project vs bare Keras + iNNvestigate",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, Python {machine['python']}; data: "
        f"{results['data']} ({sizes['train']} train / {sizes['test']} test images, "
        f"{sizes['epochs']} epochs){QUICK_NOTE if results['quick'] else ''}.",
        "",
        "## Targets",
        "",
        "| check | measured | target | met |",
        "|---|---|---|---|",
    ]
    for name, check in results["checks"].items():
        sign = "≤" if check["at_most"] else "≥"
        lines.append(
            f"| {name} | {_f(check['value'], 3)} | {sign} {check['bound']} | "
            f"{'yes' if check['met'] else '**no**'} |"
        )

    if "single" in results:
        single = results["single"]
        lines += [
            "",
            f"## 1. Single run ({len(single['reps'])} alternating repetitions; "
            "ratio = project/bare)",
            "",
            "| measure | project | bare | ratio | ratio min–max | bare + determinism | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, ratio in single["ratios"].items():

            def median(side: str, key: str = key) -> float:
                values = [rep[side][key] for rep in single["reps"] if rep[side][key] is not None]
                return statistics.median(values)

            deterministic = single["ratios_vs_deterministic"].get(key, {}).get("median")
            lines.append(
                f"| {key} | {_f(median('project'))} | {_f(median('bare'))} | "
                f"{_f(ratio['median'], 3)} | {_f(ratio['min'], 3)}–{_f(ratio['max'], 3)} | "
                f"{_f(median('bare_deterministic'))} | {_f(deterministic, 3)} |"
            )
        lines += [
            "",
            "Medians; ratio = project/bare per repetition. The project enables TensorFlow's op "
            "determinism (same seed, same bits); the last two columns compare with the bare "
            "script doing the same.",
        ]

    if "flops" in results:
        throughput = results["flops"]["throughput"]
        lines += [
            "",
            f"## 2. Analysis throughput ({results['flops']['n_images']} test images, images/s)",
            "",
            "| analyzer | images per call (project / bare) | project | bare | ratio median "
            "| ratio min–max |",
            "|---|---|---|---|---|---|",
        ]
        for name, entry in throughput.items():
            lines.append(
                f"| {name} | {entry.get('project_call_images', entry['batch_images'])} / "
                f"{entry['batch_images']} | {_f(entry['project_images_per_s'], 0)} | "
                f"{_f(entry['bare_images_per_s'], 0)} | {_f(entry['ratio_median'], 3)} | "
                f"{_f(entry['ratio_min'], 3)}–{_f(entry['ratio_max'], 3)} |"
            )

    if "sweep" in results:
        sweep = results["sweep"]
        lines += [
            "",
            "## 3. Sweep: 3 analyzers × 2 seeds (one run each)",
            "",
            "| launcher | reuse | wall s | jobs | models trained |",
            "|---|---|---|---|---|",
        ]
        for launcher in ("basic", "joblib"):
            for reuse in ("true", "false"):
                entry = sweep[f"{launcher}_reuse_{reuse}"]
                lines.append(
                    f"| {launcher} | {reuse} | {_f(entry['wall_s'], 1)} | {entry['jobs']} | "
                    f"{entry['trained']} |"
                )
        lines += ["", "| launcher | reuse/no reuse | reuse / 1 bare run | reuse / 6 bare runs |"]
        lines.append("|---|---|---|---|")
        for launcher in ("basic", "joblib"):
            ratios = sweep[f"{launcher}_ratios"]
            lines.append(
                f"| {launcher} | {_f(ratios['reuse_vs_no_reuse'], 3)} | "
                f"{_f(ratios['reuse_vs_one_bare'], 3)} | {_f(ratios['reuse_vs_six_bare'], 3)} |"
            )

    if "memory" in results:
        memory = results["memory"]
        lines += [
            "",
            f"## 4. Memory across an in-process sweep ({memory['jobs']} jobs)",
            "",
            "| job | " + " | ".join(str(i + 1) for i in range(memory["jobs"])) + " |",
            "|---" * (memory["jobs"] + 1) + "|",
            "| peak RSS MB | " + " | ".join(_f(v, 0) for v in memory["peak_rss_mb"]) + " |",
            "| RSS MB at the end | " + " | ".join(_f(v, 0) for v in memory["rss_mb"]) + " |",
        ]

    if "startup" in results and "single" in results:
        startup = results["startup"]
        first_step = [
            (rep["project"]["time_to_first_step_s"], rep["bare"]["time_to_first_step_s"])
            for rep in single["reps"]
        ]
        lines += [
            "",
            "## 5. Start-up",
            "",
            "| command | median s | max s | imports TensorFlow | imports MLflow |",
            "|---|---|---|---|---|",
        ]
        for name, entry in startup.items():
            lines.append(
                f"| --{name.replace('_', ' ')} | {_f(entry['median_s'])} | {_f(entry['max_s'])} | "
                f"{entry['imports_tensorflow']} | {entry['imports_mlflow']} |"
            )
        project_first = [p for p, _ in first_step if p is not None]
        project_median = statistics.median(project_first) if project_first else None
        bare_median = statistics.median(b for _, b in first_step)
        lines.append(
            f"| to the first training step | {_f(project_median)} (bare {_f(bare_median)}) | | | |"
        )

    if "gflops" in results:
        gflops, flops = results["gflops"], results["flops"]["flops"]
        lines += [
            "",
            "## 6. Distance to the machine's limit (GFLOP/s)",
            "",
            f"FLOPs per image from TensorFlow's profiler on the model's own graph: forward "
            f"{flops['forward'] / 1e6:.2f} M, training step {flops['train_step'] / 1e6:.2f} M. "
            f"Peak: the best of 5 float32 2048×2048 matmuls in TensorFlow on the same cores "
            f"(**{_f(gflops['sgemm_peak'], 0)} GFLOP/s**).",
            "",
            "| work | MFLOP per image | GFLOP/s | % of matmul peak |",
            "|---|---|---|---|",
        ]
        peak = gflops["sgemm_peak"]
        for side in ("project", "bare"):
            value = gflops[f"training_{side}"]
            lines.append(
                f"| training ({side}) | {flops['train_step'] / 1e6:.1f} | {_f(value, 0)} | "
                f"{100 * value / peak:.0f}% |"
            )
        for name in throughput:
            value = gflops[f"analysis_{name}"]
            lines.append(
                f"| analysis: {name} | {flops[f'analysis_{name}'] / 1e6:.1f} | {_f(value, 0)} | "
                f"{100 * value / peak:.0f}% |"
            )

    if "scoring" in results:
        lines += scoring_table(results["scoring"])

    if "grid" in results:
        lines += grid_table(results["grid"])
    if "headline" in results:
        lines += headline_table(results["headline"])
    if "images" in results:
        lines += images_table(results["images"])
    if "snapshot" in results:
        lines += snapshot_table(results["snapshot"])
    if "roar" in results:
        lines += roar_table(results["roar"], results["sizes"])
    if "loaded" in results:
        lines += loaded_table(results["loaded"])
    if "peer" in results:
        lines += peer_table(results["peer"])
    lines += ["", f"Benchmark wall time: {results['total_s'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def grid_table(grid: dict) -> list[str]:
    """Section 8: the sweep's heatmap grid, as the explained images grow."""
    lines = [
        "",
        "## 8. The sweep's heatmap grid (report.grid_images = 10), synthetic maps",
        "",
        "| analyzers | explained images | seconds | peak RSS MB | PNG MB |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, entry in grid.items():
        if key != "growth":
            lines.append(
                f"| {entry['analyzers']} | {entry['images']} | {entry['seconds']:.2f} | "
                f"{entry['peak_rss_mb']:.0f} | {entry['png_mb']:.2f} |"
            )
    return lines


def images_table(images: dict) -> list[str]:
    """Section 10: one run's cost as the explained images grow."""
    small, large = (entry["explained"] for entry in images["reps"][0].values())
    lines = [
        "",
        f"## 10. One run, {small} vs {large} explained images (evaluation off, model reused)",
        "",
        "Alternating; its figures draw at most `report.grid_images` (10) images, "
        "`heatmaps.npz` holds them all.",
        "",
        "| repetition | explained images | wall s | analysis s | peak RSS MB |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for number, rep in enumerate(images["reps"], start=1):
        for entry in rep.values():
            lines.append(
                f"| {number} | {entry['explained']} | {entry['wall_s']:.1f} | "
                f"{entry['analysis_time_s']:.2f} | {entry['peak_rss_mb']:.0f} |"
            )
    growth = images["growth"]
    lines += [
        "",
        f"Median ratio, more / fewer images: wall {growth['wall_s']:.3f}, peak RSS "
        f"{growth['peak_rss_mb']:.3f}.",
    ]
    return lines


def snapshot_table(snapshot: dict) -> list[str]:
    """Section 11: what checking a model snapshot costs, beside what it is checked for."""
    sizes = ", ".join(f"{name} {size / 1e6:.2f}" for name, size in snapshot["file_bytes"].items())
    ratios = snapshot["ratios"]
    rows = (
        ("verify: meta.json + SHA-256 of every file (a continuation)", "verify_s"),
        ("verify: meta.json + SHA-256 of weights.h5 (a reuse)", "verify_weights_s"),
        ("hash weights.h5 and state.npz (what writing adds)", "hash_s"),
        ("write a snapshot (sums included)", "write_s"),
        ("load: weights into the model, training state read", "load_s"),
        (
            f"a reused model's test accuracy (test_only, {snapshot['test_images']} images)",
            "test_only_s",
        ),
        (f"one training epoch ({snapshot['train_images']} images)", "train_epoch_s"),
    )
    return [
        "",
        f"## 11. Model snapshots: {snapshot['snapshot_bytes'] / 1e6:.2f} MB ({sizes} MB)",
        "",
        f"Medians of {snapshot['reps']} (files in the page cache); one epoch timed once.",
        "",
        "| step | ms |",
        "| --- | ---: |",
        *(f"| {name} | {1000 * snapshot[key]:.2f} |" for name, key in rows),
        "",
        f"Verification / load {ratios['verify_vs_load']:.4f}, / one epoch "
        f"{ratios['verify_vs_train_epoch']:.5f}; measuring a reused model's accuracy / one "
        f"epoch {ratios['test_only_vs_train_epoch']:.4f}.",
    ]


def roar_table(roar: dict, sizes: dict) -> list[str]:
    """Section 12: one remove-and-retrain point per analyzer, and what a sweep of them costs."""
    points = roar["points"]
    rows = [
        f"| {name} | {p['wall_s']:.0f} | {p['order_s']:.1f} | {p['roar_train_s']:.1f} | "
        f"{p['kar_train_s']:.1f} | {p['wall_s'] / roar['base_wall_s']:.2f} | "
        f"{p['roar_accuracy']:.3f} / {p['kar_accuracy']:.3f} |"
        for name, p in points.items()
    ]
    total = sum(p["wall_s"] for p in points.values())
    return [
        "",
        f"## 12. Remove-and-retrain: one point ({roar['fraction']}% removed) per analyzer",
        "",
        f"Each a job of `experiment=roar` on the seed's model ({sizes['train']} train / "
        f"{sizes['test']} test images, {sizes['epochs']} epochs; trained by an ordinary run "
        f"first: {roar['base_wall_s']:.0f} s, of which training {roar['base_train_s']:.0f} s, "
        f"test accuracy {roar['base_accuracy']:.3f}). Order: the analyzer's maps of every "
        "training and test image, ranked (kept in the model cache for the analyzer's other "
        "fractions); then a fresh model trained on the ROAR data and one on the KAR data.",
        "",
        "| analyzer | job s | order s | ROAR training s | KAR training s | job / ordinary run "
        "| accuracy ROAR / KAR |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"All {len(points)} points: {total / 60:.1f} min in one process. A sweep of A analyzers "
        "x F fractions x S seeds is A x F x S such jobs (the order once per analyzer and seed, "
        "the seed's model once), each independent once its seed's model exists: on a cluster "
        "(hydra/launcher=slurm) they run side by side, one CPU job each.",
    ]


def loaded_table(loaded: dict) -> list[str]:
    """Section 13: each score idle and on a busy machine, with the project's thread policy and
    with the libraries' default threads."""
    reps = loaded["reps"]

    def median(key: str, score: str) -> float:
        return statistics.median(rep[key][score] for rep in reps)

    rows = [
        f"| {score} | {median('policy_idle', score):.2f} | {median('policy_loaded', score):.2f} "
        f"| **{loaded['ratios']['policy'][score]:.2f}** | "
        f"{median('library_default_idle', score):.2f} | "
        f"{median('library_default_loaded', score):.2f} | "
        f"{loaded['ratios']['library_default'][score]:.2f} |"
        for score in loaded["ratios"]["policy"]
    ]
    return [
        "",
        f"## 13. Scoring on a busy machine ({loaded['analyzer']}, evaluate=full)",
        "",
        f"Seconds per score, idle and beside {loaded['busy_processes']} processes spinning on "
        f"the cores, alternating, median of {len(reps)}, on {loaded['n_images']} test images. "
        "*Policy*: the project's threads (TensorFlow's intra-op threads one per core, every "
        "BLAS and OpenMP pool one thread: `src/common/tf_runtime.py`). *Library default*: the "
        "same with the BLAS and OpenMP pools at one thread per core, as they start.",
        "",
        "| score | policy idle s | policy loaded s | loaded / idle | default idle s "
        "| default loaded s | loaded / idle |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def peer_table(peer: dict) -> list[str]:
    """Section 14: the scores shared with Quantus 0.6, side by side."""
    rows = peer["rows"]
    lines = [
        "",
        f"## 14. The peer: Quantus 0.6 and the project on the same scores ({peer['analyzer']}, "
        f"{peer['n_images']} images)",
        "",
        "Each score as Quantus computes it (its TensorFlow path, explaining through the run's "
        "analyzer; its settings those of the project's config) and as a run does, on the same "
        "model, images and maps, alternating, median seconds. Values: each side's mean; why "
        "they may differ, in the last column. Robustness: 100 images, 20 samples each.",
        "",
        "| score | Quantus s | project s | Quantus / project | project value | Quantus value "
        "| agreement |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for label, row in rows.items():
        theirs = ", ".join(f"{name} {value:.3f}" for name, value in row["quantus_values"].items())
        lines.append(
            f"| {label} | {row['quantus_s']:.2f} | {row['project_s']:.2f} | "
            f"**{row['quantus_s'] / row['project_s']:.1f}x** | {row['project_value']:.3f} | "
            f"{theirs} | {row['agreement']} |"
        )
    quantus = sum(row["quantus_s"] for row in rows.values())
    project = sum(row["project_s"] for row in rows.values())
    lines.append(
        f"| **all shared scores** | {quantus:.2f} | {project:.2f} | "
        f"**{quantus / project:.1f}x** | | | |"
    )
    return lines


def headline_table(headline: dict) -> list[str]:
    """Section 9: make sweep's grid, what it trains and how long it takes."""
    lines = [
        "",
        f"## 9. The headline sweep: {' '.join(headline['grid'])} (evaluation off)",
        "",
        "One sweep each, one after another (default launcher). `before`: the code before epoch "
        "snapshots, from git; epochs trained: the runs' `train_epochs_run` (before: the epochs "
        f"of each run that trained). {headline['bare_runs']} bare runs: one per job at its "
        "epoch count, priced from one bare run of each epoch count "
        f"({', '.join(f'{e} ep {w:.1f} s' for e, w in headline['bare_wall_s'].items())}).",
        "",
        "| sweep | wall s | jobs | epochs trained |",
        "|---|---|---|---|",
    ]
    for side in ("before", "reuse", "no_reuse"):
        entry = headline[side]
        if entry is None:
            lines.append(f"| {side} | – (not in git) | | |")
            continue
        lines.append(
            f"| {side.replace('_', ' ')} | {_f(entry['wall_s'], 1)} | {entry['jobs']} | "
            f"{entry['epochs_trained']:.0f} |"
        )
    lines.append(
        f"| {headline['bare_runs']} bare runs | {_f(headline['bare_runs_wall_s'], 1)} | | |"
    )
    ratios = headline["ratios"]
    lines += [
        "",
        "| reuse / no reuse | reuse / before | reuse / bare runs |",
        "|---|---|---|",
        f"| {_f(ratios['reuse_vs_no_reuse'], 3)} | {_f(ratios['reuse_vs_before'], 3)} | "
        f"{_f(ratios['reuse_vs_bare_runs'], 3)} |",
    ]
    return lines


def scoring_table(scoring: dict) -> list[str]:
    """Section 7: seconds per score per analyzer, and the totals of the three sets."""
    analyzers = scoring["analyzers"]
    baseline = (scoring.get("baseline") or {}).get("analyzers", {})
    names: list[str] = []
    for entry in analyzers.values():
        names += [n for n in entry["full"]["per_score_s"] if n not in names]
    lines = [
        "",
        f"## 7. Scoring: seconds per score per analyzer ({scoring['n_images']} images, one model)",
        "",
        "`reference s`: the default scores of the reference commit "
        f"({(scoring.get('baseline') or {}).get('commit', 'not available')[:8]}), same model, "
        "same images, run side by side; `before`: the same set of scores by today's code (no "
        "LeRF, faithfulness correlation or ROAD); `default`: `evaluate=default`; `full`: "
        "`evaluate=full` (robustness too); `meta`: `evaluate=meta` (the default scores and "
        "their meta-evaluation, whose own seconds are `meta s`). Per score: the `full` run.",
        "",
        "| analyzer | "
        + " | ".join(names)
        + " | reference s | before s | default s | full s | default/reference | meta s "
        "| meta/default |",
        "|---" * (len(names) + 8) + "|",
    ]
    for analyzer, entry in analyzers.items():
        per_score = entry["full"]["per_score_s"]
        old = baseline.get(analyzer, {}).get("default", {}).get("total_s")
        totals = [old, *(entry[name]["total_s"] for name in ("before", "default", "full"))]
        lines.append(
            f"| {analyzer} | "
            + " | ".join(_f(per_score.get(n)) for n in names)
            + " | "
            + " | ".join(_f(t, 1) for t in totals)
            + f" | {_f(totals[2] / old) if old else '–'} | {_meta_columns(entry)} |"
        )
    return lines


def _meta_columns(entry: dict) -> str:
    """The meta-evaluation's own seconds and evaluate=meta's total over evaluate=default's."""
    if "meta" not in entry:
        return "– | –"
    seconds = entry["meta"]["per_score_s"].get("meta")
    return f"{_f(seconds, 1)} | {_f(entry['meta']['total_s'] / entry['default']['total_s'])}"


def log_to_mlflow(results: dict, json_path: Path, md_path: Path, tracking_dir: str) -> str:
    """One run in the store's ``benchmarks`` experiment: headline ratios as metrics, the
    JSON and Markdown as artifacts."""
    import mlflow

    from src.tracking import set_up
    from src.tracking.store import prepare, resolve_store

    set_up()  # MLflow's settings, as the entry points make them
    store = resolve_store(tracking_dir)
    experiment_id = prepare(store, "benchmarks")
    mlflow.set_tracking_uri(store.tracking_uri)
    name = f"bench · {results['data'][:40]}{' · quick' if results['quick'] else ''}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tags({"quick": str(results["quick"]), "cpu": results["machine"]["cpu"]})
        mlflow.log_params({"data": results["data"][:250], **results["sizes"]})
        metrics = {}
        for check_name, check in results["checks"].items():
            key = "".join(c if c.isalnum() else "_" for c in check_name).strip("_")
            metrics[key] = check["value"]
        metrics["targets_missed"] = sum(not check["met"] for check in results["checks"].values())
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(json_path))
        mlflow.log_artifact(str(md_path))
    return run.info.run_id
