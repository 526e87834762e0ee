"""The answer read off a verdict (src/report/answer.py), on hand-made scores: evidence is beating
every baseline (fresh noise aside where it passes by construction), a blank-passing criterion
is set aside for an analyzer whose maps go blank, properties are not evidence, and the answer
says when no analyzer earned trust and what limits it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from src.report import answer as answer_module
from src.report.answer import answer
from src.report.verdict import Criterion, RunScores, build_verdict

AOPC = Criterion("faithfulness", "aopc", True, "AOPC")
MPRT = Criterion("randomisation", "mprt", False, "MPRT", True, True, True)
GINI = Criterion("complexity", "gini", True, "Gini", False)
STEPS = 0.01 * np.arange(8)  # 8 images, every difference its own size: exact tests


def run(row, seed, aopc, mprt, gini, method="", blank=None):
    scores = {"aopc": aopc + STEPS, "mprt": mprt + STEPS, "gini": gini + STEPS}
    means = {name: float(values.mean()) for name, values in scores.items()}
    if blank is not None:
        means["mprt_blank_fraction_full"] = blank
    return RunScores(row, method.startswith("baseline."), seed, 5, means, scores, method)


def baselines(seed, names=("noise", "input", "edge")):
    # noise: AOPC of a random order, MPRT ~0 (it changes with anything); input and edge ignore
    # the model: MPRT 1. None is sparse.
    scores = {"noise": (0.1, 0.0, 0.2), "input": (0.1, 1.0, 0.3), "edge": (0.1, 1.0, 0.4)}
    return [run(name, seed, *scores[name], method=f"baseline.{name}") for name in names]


def sweep(seeds=(0, 1), names=("noise", "input", "edge"), **analyzers):
    runs = []
    for seed in seeds:
        runs += baselines(seed, names)
        runs += [run(label, seed, *values) for label, values in analyzers.items()]
    return answer(build_verdict(runs, [AOPC, MPRT, GINI]))


def test_the_analyzer_that_beats_every_baseline_on_most_evidence_is_trusted():
    """good beats every baseline on AOPC, and on MPRT the baselines that ignore the model (not
    noise, which no map can beat there); sparse beats them only on Gini, a property."""
    said = sweep(good=(0.6, 0.3, 0.5), sparse=(0.1, 1.0, 0.9))
    assert said.trusted == ["good"]
    assert said.evidence == {"good": ["AOPC", "MPRT"], "sparse": []}
    assert said.counted == ["AOPC", "MPRT"]  # Gini read alongside, never evidence
    assert said.headline == (
        "Trust good on this model (5 epochs): it beats every baseline on 2 of 2 criteria "
        "(AOPC, MPRT), and is best or tied best on AOPC, MPRT."
    )
    assert said.limits == []  # two seeds, every default baseline, two analyzers
    assert json.loads(said.to_json())["trusted"] == ["good"]
    assert said.text(width=40).splitlines()[:2] == [
        "Trust good on this model (5 epochs): it",
        "  beats every baseline on 2 of 2",
    ]


def test_a_criterion_a_blank_map_passes_is_set_aside_for_an_analyzer_whose_maps_go_blank():
    runs = []
    for seed in (0, 1):
        runs += baselines(seed)
        runs += [run("blanking", seed, 0.6, 0.2, 0.5, blank=0.5)]
        runs += [run("steady", seed, 0.6, 0.3, 0.5, blank=0.0)]
    said = answer(build_verdict(runs, [AOPC, MPRT]))
    assert said.evidence == {"steady": ["AOPC", "MPRT"], "blanking": ["AOPC"]}
    assert said.trusted == ["steady"]
    assert said.set_aside == [
        "MPRT for blanking (50% of its maps go blank under randomisation, and a blank map "
        "passes it)"
    ]


def test_no_analyzer_beating_every_baseline_is_said_plainly():
    said = sweep(meh=(0.1, 1.0, 0.5), other=(0.1, 1.0, 0.6))
    assert said.trusted == []
    assert said.headline == (
        "No analyzer earned trust here: none beats every baseline on any of AOPC, MPRT."
    )
    assert said.unbeaten == ["AOPC", "MPRT"]


def test_without_baselines_there_is_no_answer_and_one_seed_is_a_limit():
    said = sweep(seeds=(0,), names=(), good=(0.6, 0.3, 0.5), other=(0.5, 0.4, 0.5))
    assert said.trusted == []
    assert said.headline.startswith("No answer: the sweep ran no baseline")
    assert said.limits[0].startswith("one seed: the intervals cover the test images")


def test_equal_evidence_names_both_and_a_missing_baseline_is_a_limit():
    said = sweep(names=("noise", "input"), first=(0.6, 0.3, 0.5), second=(0.5, 0.4, 0.5))
    assert said.trusted == ["first", "second"]
    assert said.headline.startswith("Trust first and second on this model (5 epochs): each ")
    assert answer_module.listed(["a", "b", "c"]) == "a, b and c"
    assert said.limits == ["no edge baseline: no score is read against it"]


def test_report_html_shows_the_answer_the_rankings_and_the_agreement_of_criteria():
    from src.report.html import render_report, verdict_view

    runs = []
    for seed in (0, 1):
        runs += baselines(seed)
        runs += [run("good", seed, 0.6, 0.3, 0.5), run("meh", seed, 0.1, 0.5, 0.5)]
    verdict = build_verdict(runs, [AOPC, MPRT])
    said = answer(verdict)
    page = render_report(
        title="sweep",
        subtitle="",
        answer=said.lines(),
        missing=[],
        verdict=verdict_view(verdict, {}),
        sections=[],
        grid=None,
        measures="",
        measure_images=[],
        provenance=[],
        runs=[],
        config="",
        config_run="",
    )
    assert page.index("Trust good on this model") < page.index('id="verdict"')
    assert "AOPC: good beats every other analyzer (good vs meh p=" in page
    # AOPC and MPRT rank good over meh alike: tau 1 off the diagonal too.
    agreement = page[page.index('id="agreement-table"') :]
    assert agreement.count("<td>1.00</td>") == 4


def test_an_interval_chart_spans_the_scores_range_so_a_small_difference_looks_small():
    from src.report.charts import score_intervals

    rows = [("a", 0.500, 0.49, 0.51, False, True), ("b", 0.505, 0.50, 0.51, False, False)]
    ranged = score_intervals(rows, "AOPC", True, bounds=(0.0, 1.0)).axes[0]
    assert ranged.get_xlim() == (-0.02, 1.02)
    assert "the axis spans the score's range" in ranged.get_xlabel()
    zoomed = score_intervals(rows, "eMPRT", True).axes[0]
    assert zoomed.get_xlim()[1] - zoomed.get_xlim()[0] < 0.1
    assert "the axis is zoomed to the values" in zoomed.get_xlabel()


def test_a_criterion_a_control_passes_is_uninformative_and_not_counted():
    """On AOPC the inverted maps of good score above good's own: AOPC does not read the maps'
    order on this model. On MPRT the blank-like control of good scores 0 (every map blank),
    better than good's 0.3: MPRT rewards collapse. Neither is counted; the answer says why."""
    aopc = Criterion("faithfulness", "aopc", True, "AOPC", controls=("blurred", "inverted"))
    mprt = Criterion("randomisation", "mprt", False, "MPRT", True, True, True, ("blank_like",))
    runs = []
    for seed in (0, 1):
        runs += baselines(seed)
        good = run("good", seed, 0.6, 0.3, 0.5)
        good.per_image["control.inverted.aopc"] = 0.7 + STEPS
        good.per_image["control.blurred.aopc"] = 0.5 + STEPS  # below good's own: fine
        good.per_image["control.blank_like.mprt"] = np.zeros(8)
        runs.append(good)
    verdict = build_verdict(runs, [aopc, mprt])
    assert verdict.uninformative == {
        "aopc": ["the inverted maps of good score at or above its own (0.735 vs 0.635)"],
        "mprt": ["the blank-like maps of good score at or above its own (0.000 vs 0.335)"],
    }
    assert not verdict.controls["aopc", "good", "blurred"].fooled
    assert verdict.controls["aopc", "good", "inverted"].beats_every_baseline
    assert "AOPC is uninformative on this model: the inverted maps of good" in verdict.notes[0]
    said = answer(verdict)
    assert said.trusted == [] and said.evidence == {"good": []} and said.counted == []
    assert said.headline.startswith("No answer: every criterion that could be evidence is ")
    assert said.unbeaten == []  # set aside, not unbeaten
    assert said.set_aside[0].startswith("AOPC for every analyzer (uninformative on this model")


def test_a_sweep_too_small_to_separate_the_top_two_says_how_much_more_it_would_take():
    """a and b differ by +0.1 and -0.05 alternately over 8 images x 2 seeds: the paired test
    cannot tell them apart; the differences' mean 0.025 over their sd 0.0775 is an effect of
    0.3227, which needs ((1.95996 + 0.84162) / 0.3227)^2 / (3 / pi) = 78.9 -> 79 pairs."""
    runs = []
    for seed in (0, 1):
        runs += baselines(seed)
        runs.append(run("a", seed, 0.6, 0.3, 0.5))
        b = run("b", seed, 0.6, 0.3, 0.5)
        b.per_image["aopc"] = b.per_image["aopc"] - np.where(np.arange(8) % 2, 0.1, -0.05)
        b.means["aopc"] = float(b.per_image["aopc"].mean())
        runs.append(b)
    verdict = build_verdict(runs, [AOPC])
    needed, had = verdict.needed["aopc", 5]
    difference = np.tile(np.where(np.arange(8) % 2, 0.1, -0.05), 2)
    effect = difference.mean() / difference.std(ddof=1)
    assert effect == pytest.approx(0.3227, abs=1e-4)
    assert (needed, had) == (79, 16)
    assert answer(verdict).limits == [
        "too small to tell the top two apart on AOPC (about 79 image × seed pairs needed, 16 here)"
    ]


def test_a_measure_no_row_has_a_value_of_is_left_out_not_charted_empty():
    """Stability across seeds with one seed is NaN in every row: no column, no empty chart."""
    import pandas as pd

    from src.report.sections import table_columns

    table = pd.DataFrame(
        {
            "analyzer": ["a", "b"],
            "test_accuracy_mean": [0.9, 0.9],
            "stability_spearman_mean": [np.nan, np.nan],
            "eval_aopc_mean": [0.5, 0.4],
        }
    )
    scores, others, _ = table_columns(table)
    assert scores == ["eval_aopc"] and others == ["test_accuracy"]


def test_blurred_maps_fool_a_criterion_only_by_scoring_significantly_better():
    """Blurred maps a hair above the analyzer's own, as often below as above image by image:
    not fooled (a blurred faithful map may be as faithful). Better on every one of the 16
    image x seed pairs (one-sided exact p = 2^-16): the criterion rewards blur."""
    aopc = Criterion("faithfulness", "aopc", True, "AOPC", controls=("blurred",))
    alternating = np.where(np.arange(8) % 2, 0.02, -0.02)
    alternating[0] = -0.01  # the mean 0.00125 above, the signed ranks about even
    for offset, fooled in ((alternating, ""), (0.001 * np.arange(1, 9), "better than")):
        runs = []
        for seed in (0, 1):
            runs += baselines(seed)
            good = run("good", seed, 0.6, 0.3, 0.5)
            good.per_image["control.blurred.aopc"] = good.per_image["aopc"] + offset
            runs.append(good)
        verdict = build_verdict(runs, [aopc])
        assert verdict.controls["aopc", "good", "blurred"].fooled == fooled
        assert ("aopc" in verdict.uninformative) == bool(fooled)


def test_the_inverted_maps_of_maps_without_signal_fault_no_criterion():
    """weak scores like the baselines on AOPC; its inverted maps score the same: nothing to
    lose, so AOPC is not faulted for it."""
    aopc = Criterion("faithfulness", "aopc", True, "AOPC", controls=("inverted",))
    runs = []
    for seed in (0, 1):
        runs += baselines(seed)
        weak = run("weak", seed, 0.1, 0.3, 0.5)
        weak.per_image["control.inverted.aopc"] = weak.per_image["aopc"].copy()
        runs.append(weak)
    verdict = build_verdict(runs, [aopc])
    assert verdict.controls["aopc", "weak", "inverted"].fooled == ""
    assert verdict.uninformative == {}
