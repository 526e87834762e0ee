"""The remove-and-retrain table (src/report/roar.py) from hand-made runs: the curves' means and
t-intervals over seeds, the gains over the random ranking and the blurred one, the findings
(Hooker et al.'s included) and the proxies' Kendall's τ, each number worked out by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from src.report import roar

FRACTIONS = (50, 90)
# ROAR accuracy at 50% and 90% per seed (every curve starts at the trained model's 1.0):
CURVES = {
    # area (1 + .8) / 2 * .5 + (.8 + .6) / 2 * .4 = .45 + .28 = .73 at every seed
    ("noise", "baseline.noise"): [(0.8, 0.6)] * 3,
    # areas .56, .515, .605: gains over noise .17, .215, .125
    ("gradient", "gradient"): [(0.6, 0.2), (0.5, 0.2), (0.7, 0.2)],
    # areas .73, .775, .685: gains 0, -.045, .045
    ("vargrad", "vargrad"): [(0.8, 0.6), (0.9, 0.6), (0.7, 0.6)],
    # area .35 + .1 = .45 at every seed: gain .28
    ("smoothgrad_squared", "smoothgrad"): [(0.4, 0.1)] * 3,
    # gradient's first seed at every seed: area .56
    ("blurred_noise", "baseline.blurred_noise"): [(0.6, 0.2)] * 3,
}


def run(analyzer, method, seed, fraction, roar_accuracy, kar_accuracy, status="FINISHED"):
    return SimpleNamespace(
        info=SimpleNamespace(status=status),
        data=SimpleNamespace(
            params={
                "analyzer.name": analyzer,
                "analyzer.method": method,
                "seed": str(seed),
                "roar.fraction": str(fraction),
            },
            metrics={"roar_accuracy": roar_accuracy, "kar_accuracy": kar_accuracy},
        ),
    )


def runs(curves=CURVES):
    # KAR's accuracies are ROAR's: their gains are the same areas, the other way round.
    return [
        run(analyzer, method, seed, fraction, accuracy, accuracy)
        for (analyzer, method), per_seed in curves.items()
        for seed, curve in enumerate(per_seed)
        for fraction, accuracy in zip(FRACTIONS, curve, strict=True)
    ] + [run("gradient", "gradient", 0, 50, 0.0, 0.0, status="FAILED")]  # not read


def test_points_start_at_the_trained_models_accuracy_and_skip_unfinished_runs():
    found = roar.points(runs(), {0: 1.0, 1: 1.0, 2: 1.0})
    # 5 analyzers x 3 seeds x 2 modes x 3 fractions (the two run and 0).
    assert len(found) == 5 * 3 * 2 * 3
    assert {p.accuracy for p in found if p.fraction == 0} == {1.0}
    assert all(p.accuracy > 0 for p in found)  # the failed run's 0.0 is left out


def test_the_table_by_hand():
    proxies = {
        "vargrad": {"eval_aopc": 0.1, "eval_road": 0.3, "eval_faithfulness_correlation": 0.2},
        "gradient": {"eval_aopc": 0.2, "eval_road": 0.2, "eval_faithfulness_correlation": 0.1},
        "smoothgrad_squared": {
            "eval_aopc": 0.3,
            "eval_road": 0.1,
            "eval_faithfulness_correlation": 0.3,
        },
    }
    verdict = roar.roar_verdict(roar.points(runs(), {0: 1.0, 1: 1.0, 2: 1.0}), proxies)
    assert verdict.fractions == (0, 50, 90)
    assert verdict.random == "noise" and verdict.blurred == "blurred_noise"
    rows = {row.analyzer: row for row in verdict.rows}
    assert [row.analyzer for row in verdict.rows][-2:] == ["blurred_noise", "noise"]  # last
    gradient = rows["gradient"]
    # Accuracy at 50%: mean of .6, .5, .7 = .6; sd .1; t(.975, 2) = 4.3027; half .1 * 4.3027 / √3.
    at_50 = gradient.curves["roar"][1]
    assert at_50.mean == pytest.approx(0.6)
    assert at_50.high - at_50.mean == pytest.approx(0.1 * 4.302653 / 3**0.5, rel=1e-5)
    # Gains .17, .215, .125: mean .17, sd .045, half 4.3027 * .045 / √3 = .1118.
    gain = gradient.gain["roar"]
    assert gain.mean == pytest.approx(0.17)
    assert (gain.low, gain.high) == pytest.approx((0.17 - 0.111786, 0.17 + 0.111786), rel=1e-4)
    assert gain.above_zero
    assert gradient.gain["kar"].mean == pytest.approx(-0.17)  # the same areas, KAR's way
    assert rows["vargrad"].gain["roar"].mean == pytest.approx(0.0, abs=1e-12)
    assert not rows["vargrad"].gain["roar"].above_zero
    # No spread: the interval collapses on .28, above 0.
    assert rows["smoothgrad_squared"].gain["roar"].low == pytest.approx(0.28)
    assert rows["noise"].gain["roar"] is None  # the reference itself
    # Over the blurred ranking (area .56): gradient 0, .045, -.045 -> mean 0: not told apart.
    assert rows["gradient"].over_blurred["roar"].mean == pytest.approx(0.0, abs=1e-12)
    # Kendall's tau over vargrad, gradient, smoothgrad_squared (ROAR gains 0, .17, .28):
    # AOPC .1 .2 .3, the same order: 1; ROAD reversed: -1; FCorr .2 .1 .3: one of three pairs
    # discordant: (2 - 1) / 3.
    taus = {(mode, proxy): tau for mode, proxy, tau, _, n in verdict.agreement}
    assert taus["roar", "AOPC"] == pytest.approx(1.0)
    assert taus["roar", "ROAD"] == pytest.approx(-1.0)
    assert taus["roar", "FCorr"] == pytest.approx(1 / 3)
    assert taus["kar", "AOPC"] == pytest.approx(-1.0)  # KAR's gains are the negated areas
    text = roar.text(verdict)
    # The blurred random ranking (area .56) beats the random one too: blobs cost accuracy.
    assert "ROAR: gradient, smoothgrad_squared and blurred_noise beat the random ranking" in text
    assert "; vargrad did not" in text
    # Of the two that beat it, gradient is not told apart from the blurred random ranking.
    assert "ROAR: gradient not told apart from a blurred random ranking" in text
    assert (
        "Hooker et al. 2019's finding does not hold here: gradient beat the random ranking; "
        "vargrad not better than it" in text
    )
    metrics = roar.parent_metrics(verdict)
    assert metrics["roar_gain/gradient"] == pytest.approx(0.17)
    assert metrics["roar_tau/ROAD"] == pytest.approx(-1.0)
    assert "roar_gain/noise" not in metrics
    curves = {(key, step): value for key, value, step in roar.parent_curves(verdict)}
    assert curves["roar_accuracy/gradient", 0] == pytest.approx(1.0)
    assert curves["roar_accuracy/gradient", 50] == pytest.approx(0.6)
    assert curves["kar_accuracy/noise", 90] == pytest.approx(0.6)
    markdown = roar.markdown(verdict, "a sweep")
    assert "| " not in markdown.split("```")[1]  # the table is the fixed-width text
    assert "ROAR gain [95%]" in markdown and "KAR gain [95%]" in markdown


def test_hookers_finding_holds_when_only_the_ensembles_beat_the_random_ranking():
    curves = dict(CURVES)
    curves["gradient", "gradient"] = CURVES["vargrad", "vargrad"]  # gains 0, -.045, .045
    curves["vargrad", "vargrad"] = [(0.4, 0.1)] * 3  # gain .28
    verdict = roar.roar_verdict(roar.points(runs(curves), {0: 1.0, 1: 1.0, 2: 1.0}))
    assert (
        "Hooker et al. 2019's finding holds here: gradient no better than the random ranking; "
        "smoothgrad_squared and vargrad better than it" in verdict.findings
    )
    assert verdict.agreement == []  # no proxies given


def test_a_sweep_without_the_random_ranking_measures_no_gain():
    curves = {key: value for key, value in CURVES.items() if key[0] != "noise"}
    verdict = roar.roar_verdict(roar.points(runs(curves), {0: 1.0, 1: 1.0, 2: 1.0}))
    assert verdict.random is None
    assert all(row.gain["roar"] is None for row in verdict.rows)
    assert verdict.findings == [
        "the sweep ran no random ranking (analyzer=noise): no gain is measured"
    ]


def test_a_retrained_model_that_did_not_learn_is_marked_and_said():
    found = runs()
    for run_ in found:  # vargrad's seed-1 model at 90%, ROAR: its loss stayed at ln 2
        params = run_.data.params
        if (params["analyzer.name"], params["seed"], params["roar.fraction"]) == (
            "vargrad",
            "1",
            "90",
        ):
            run_.data.metrics["roar_learned"] = 0.0
    verdict = roar.roar_verdict(roar.points(found, {0: 1.0, 1: 1.0, 2: 1.0}))
    rows = {row.analyzer: row for row in verdict.rows}
    assert rows["vargrad"].not_learned == {"roar": (90.0,), "kar": ()}
    assert rows["gradient"].not_learned == {"roar": (), "kar": ()}
    (vargrad_line,) = [
        line for line in roar.table_lines(verdict, "roar") if line.startswith("vargrad")
    ]
    assert "0.600†" in vargrad_line
    assert any(
        f.startswith("† a retrained model did not learn") and "vargrad (ROAR 90%)" in f
        for f in verdict.findings
    )
