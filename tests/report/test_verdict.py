"""The verdict on hand-made scores: intervals, paired tests against baselines, the best, the
terminal table's width and the parent's metric names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from src.report.verdict import Criterion, RunScores, build_verdict, paired_test
from src.report.verdict_text import markdown, metric_name, parent_metrics, terminal_table

AOPC = Criterion("faithfulness", "aopc", True, "AOPC")
MPRT = Criterion("randomisation", "mprt", False, "MPRT")


def run(row, seed, aopc, mprt, baseline=False, epochs=5):
    aopc, mprt = np.asarray(aopc, float), np.asarray(mprt, float)
    return RunScores(
        row=row,
        baseline=baseline,
        seed=seed,
        epochs=epochs,
        means={"aopc": float(np.nanmean(aopc)), "mprt": float(np.nanmean(mprt))},
        per_image={"aopc": aopc, "mprt": mprt},
    )


def test_paired_test_by_hand():
    # Differences 1, 2, 3, 4, 5, 6 all positive: the signed-rank statistic is the maximum, 21,
    # whose exact one-sided p is 1 / 2**6 = 0.015625.
    better = np.arange(1.0, 7.0)
    p, dropped = paired_test(better, np.zeros(6), higher_is_better=True)
    assert p == pytest.approx(1 / 64) and dropped == 0
    # The same pairs where lower is better: the analyzer is worse everywhere, p = 1 - 0 = 1.
    assert paired_test(better, np.zeros(6), higher_is_better=False)[0] == pytest.approx(1.0)
    # Undefined pairs are left out and counted; no difference at all is p = 1.
    p, dropped = paired_test(np.array([1.0, np.nan, 2.0]), np.array([0.0, 0.0, np.nan]), True)
    assert dropped == 2
    assert paired_test(np.ones(4), np.ones(4), True) == (1.0, 0)


def test_verdict_means_intervals_beats_and_best():
    images = 8
    runs = [
        # good: AOPC 0.6.. / 0.8.. over two seeds, every image above the baseline's 0.1 by a
        # different amount (no ties: scipy's exact test)
        run("good", 0, 0.6 + 0.01 * np.arange(images), np.full(images, 0.2)),
        run("good", 1, 0.8 + 0.01 * np.arange(images), np.full(images, 0.4)),
        # meh: no better than the baseline on AOPC, lower (better) MPRT than good
        run("meh", 0, np.full(images, 0.1), np.full(images, 0.1)),
        run("meh", 1, np.full(images, 0.1), np.full(images, 0.1)),
        run("noise", 0, np.full(images, 0.1), np.full(images, 0.5), baseline=True),
        run("noise", 1, np.full(images, 0.1), np.full(images, 0.5), baseline=True),
    ]
    verdict = build_verdict(runs, [AOPC, MPRT])
    assert verdict.rows == [("good", 5), ("meh", 5), ("noise", 5)]  # baselines last
    assert verdict.baselines == ["noise"]
    good = verdict.cells["good", 5, "aopc"]
    # per-seed means 0.635 and 0.835: mean 0.735, sd sqrt(0.02)
    assert good.mean == pytest.approx(0.735) and good.std == pytest.approx(math.sqrt(0.02))
    # A t interval over the two seeds would be 0.735 ± 1.27, far outside AOPC's range; the
    # bootstrap's stays between the lowest and the highest image's score.
    assert 0.6 <= good.low < good.mean < good.high <= 0.87
    # good beats meh on all 16 pairs (distinct differences): the only pair, p = 2 / 2**16.
    assert good.n_seeds == 2 and good.best and not good.tied_best
    # 16 pairs (8 images x 2 seeds), all better: p = 1 / 2**16, one-sided exact.
    assert good.beats == {"noise": True}
    assert good.p_values["noise"] == pytest.approx(2.0**-16)
    assert verdict.cells["meh", 5, "aopc"].beats == {"noise": False}  # equal everywhere
    # MPRT: lower is better; meh (0.1) is best, both beat noise's 0.5.
    assert verdict.cells["meh", 5, "mprt"].best and not verdict.cells["good", 5, "mprt"].best
    assert verdict.cells["good", 5, "mprt"].beats == {"noise": True}
    # A baseline is never "best", and is not tested against itself.
    assert not verdict.cells["noise", 5, "aopc"].best
    assert verdict.cells["noise", 5, "aopc"].beats == {}


def test_pairs_are_made_per_seed_and_image():
    # Per seed, the analyzer beats the baseline only if image i is compared with image i of
    # the same seed: seed 0's maps are good on image 0, seed 1's on image 1, and so is the
    # baseline's; paired properly, every difference is 0.
    runs = [
        run("a", 0, [1.0, 0.0], [0.0, 0.0]),
        run("a", 1, [0.0, 1.0], [0.0, 0.0]),
        run("b", 0, [1.0, 0.0], [0.0, 0.0], baseline=True),
        run("b", 1, [0.0, 1.0], [0.0, 0.0], baseline=True),
    ]
    cell = build_verdict(runs, [AOPC]).cells["a", 5, "aopc"]
    assert cell.p_values["b"] == 1.0 and not cell.beats["b"]


def test_several_training_lengths_are_rows_of_their_own_and_best_is_per_length():
    # 8 images, every difference of its own sign and size: two-sided exact p = 2 / 2**8.
    steps = 0.01 * np.arange(8)
    runs = [run("a", 0, 0.5 + steps, [0.5], epochs=1), run("a", 0, 0.9 + steps, [0.5], epochs=3)]
    runs += [run("b", 0, 0.7 + 2 * steps, [0.5], epochs=1)]
    runs += [run("b", 0, 0.8 + 2 * steps, [0.5], epochs=3)]
    verdict = build_verdict(runs, [AOPC])
    assert verdict.name("a", 3) == "a 3ep"
    assert verdict.cells["b", 1, "aopc"].best and verdict.cells["a", 3, "aopc"].best
    assert not verdict.cells["a", 1, "aopc"].best


def test_terminal_table_fits_100_columns_and_marks_what_it_says():
    long = "lrp_epsilon (analyzer.params.epsilon=0.01, train.learning_rate=0.001)"
    runs = []
    for seed in (0, 1, 2):
        runs += [run(long, seed, np.full(5, 0.5 + seed / 10), np.full(5, 0.3))]
        runs += [run("gradient", seed, np.full(5, 0.4), np.full(5, 0.2))]
        for baseline in ("noise", "input", "edge"):
            runs += [run(baseline, seed, np.full(5, 0.1), np.full(5, 0.9), baseline=True)]
    table = terminal_table(build_verdict(runs, [AOPC, MPRT]))
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split()[:3] == ["analyzer", "AOPC", "↑"]
    gradient = next(line for line in lines if line.startswith("gradient"))
    assert "0.400 ein" in gradient  # beats all three baselines on AOPC, not the best
    assert "0.200*ein" in gradient  # the best MPRT, and beats all three
    assert "mean over images × 3 seeds (95% bootstrap intervals in verdict.md)" in table
    assert any(set(line) == {"-"} for line in lines)  # baselines below a rule
    assert "e = beats edge" in table and "n = beats noise" in table


def test_markdown_and_parent_metrics():
    runs = [run("lrp ε=0.1", s, [0.5, 0.6], [0.2, 0.3]) for s in (0, 1)]
    runs += [run("noise", s, [0.1, 0.1], [0.0, 0.0], baseline=True) for s in (0, 1)]
    verdict = build_verdict(runs, [AOPC, MPRT])
    text = markdown(verdict, "sweep · analyzer=lrp,noise")
    assert "| noise (baseline) |" in text
    # 2 images x 2 seeds: the smallest one-sided p is 1/16 > 0.05, so not significant. The
    # interval: each seed's resampled mean is 0.5 with probability 1/4, so is the whole mean
    # with probability 5/32 (> 2.5%): [0.5, 0.6]. One analyzer: nobody to be best against.
    assert "| 0.550 [0.500, 0.600]<br>not noise (p=0.062) |" in text
    metrics = parent_metrics(verdict)
    # One chart section per score in MLflow (the part before "/"), the rows side by side.
    assert metrics["aopc/lrp eps:0.1"] == pytest.approx(0.55)
    assert metrics["aopc_std/lrp eps:0.1"] == pytest.approx(0.0)
    assert "mprt/noise" in metrics
    assert metric_name("a (b=1), c·d σ") == "a _b:1__ c_d sigma"


def test_rounding_is_no_difference_and_blank_maps_get_a_note():
    # Two baselines that never change (MPRT 1, up to rounding): not different.
    assert paired_test(np.ones(5), np.ones(5) - 1e-16, higher_is_better=False)[0] == 1.0
    blanking = run("deep_taylor", 0, [0.5], [0.0])
    blanking.means["mprt_blank_fraction_full"] = 0.5
    kept = run("gradient", 0, [0.5], [0.5])
    kept.means["mprt_blank_fraction_full"] = 0.05
    verdict = build_verdict([blanking, kept], [AOPC, MPRT])
    assert verdict.notes == [
        "deep_taylor: 50% of its maps are blank once every layer is randomised; "
        "MPRT counts them as completely changed"
    ]
    table = terminal_table(verdict, width=60).splitlines()
    first = next(i for i, line in enumerate(table) if line.startswith("note: "))
    assert table[first].startswith("note: deep_taylor: 50%")
    assert len(table) - first > 1 and all(line.startswith("  ") for line in table[first + 1 :])
    assert max(len(line) for line in table) <= 60


def test_many_criteria_are_split_into_tables_that_fit_and_keep_every_row():
    criteria = [Criterion(f"criterion {i}", "aopc", True, f"Crit{i}") for i in range(12)]
    runs = []
    for seed in (0, 1, 2):
        runs += [run("integrated_gradients", seed, np.full(5, 0.5 + seed / 10), np.full(5, 0.3))]
        runs += [run("noise", seed, np.full(5, 0.1), np.full(5, 0.9), baseline=True)]
    lines = terminal_table(build_verdict(runs, criteria)).splitlines()
    assert max(len(line) for line in lines) <= 100
    headers = [line for line in lines if line.startswith("analyzer")]
    assert len(headers) >= 2  # twelve columns of ~17 characters do not fit in one
    shown = [heading for header in headers for heading in header.split() if heading[:4] == "Crit"]
    assert shown == [f"Crit{i}" for i in range(12)]  # every criterion once, in order
    assert sum(line.startswith("integrated_gradients") for line in lines) == len(headers)
    assert sum(line.startswith("noise") for line in lines) == len(headers)


def test_the_default_criteria_come_from_the_score_registry():
    from src.report.verdict import registry_criteria

    shown = [(c.score, c.short, c.higher_is_better) for c in registry_criteria()]
    assert shown[:5] == [
        ("aopc", "AOPC", True),
        ("aopc_lerf", "LeRF", False),
        ("abpc", "ABPC", True),
        ("faithfulness_correlation", "FCorr", True),
        ("road", "ROAD", True),
    ]
    assert ("relevance_rank_accuracy", "Rank", True) in shown
    assert ("max_sensitivity", "MaxSens", False) in shown


def test_verdict_md_shows_html_in_names_as_text():
    """Names come from the user (a swept value, a dataset's name): in verdict.md they are
    text, never HTML a Markdown renderer would run or draw, nor a table column break."""
    from src.report.verdict_text import plain

    assert plain("a<b>&c|d") == "a&lt;b&gt;&amp;c\\|d"  # by hand
    evil = '<img src=x onerror="alert(1)"> | x'
    runs = [run(evil, s, [0.5, 0.6], [0.2, 0.3]) for s in (0, 1)]
    runs += [run("noise", s, [0.1, 0.1], [0.0, 0.0], baseline=True) for s in (0, 1)]
    text = markdown(build_verdict(runs, [AOPC]), "sweep · dataset.name=<script>x</script>")
    assert "<img" not in text and "<script" not in text
    assert "# Verdict: sweep · dataset.name=&lt;script&gt;x&lt;/script&gt;" in text
    assert '| &lt;img src=x onerror="alert(1)"&gt; \\| x |' in text
    assert "<br>" in text  # the table's own line breaks stay
