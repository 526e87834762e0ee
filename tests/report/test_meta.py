"""The meta-evaluation (MetaQuantus's IAC, IEC and MC) on hand-made scores, with every expected
number worked out by hand in the comments; and the verdict that marks a criterion whose MC is
below the threshold unreliable, which the answer then sets aside."""

from __future__ import annotations

import numpy as np
import pytest

from src.report.answer import answer
from src.report.meta import (
    THRESHOLD,
    Draw,
    iac,
    iec_adversary,
    iec_resilience,
    meta_consistency,
)
from src.report.verdict import Criterion, RunScores, build_verdict
from src.report.verdict_text import judgement_text, markdown, parent_metrics
from src.scores import meta as kept

Q = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
ALL = np.ones(6, bool)


def test_intra_consistency_by_hand():
    # No difference at all: the signed ranks split evenly, p = 1: perfectly resilient.
    assert iac(Q, Q, ALL, minor=True) == pytest.approx(1.0)
    # Every one of 6 images lower: the signed-rank statistic is 0, whose exact two-sided p is
    # 2 / 2**6; a disruptive perturbation scores 1 - p.
    assert iac(Q, Q - 1, ALL, minor=False) == pytest.approx(1 - 2 / 64)
    # Differences -.01, .02, -.03, .04, -.05, .06: ranks 1..6, W- = 1 + 3 + 5 = 9 the smaller;
    # 27 of the 64 sign patterns give a sum <= 9 (1+1+1+2+2+3+4+4+4+5 subsets of sums 0..9),
    # so p = 2 * 27 / 64.
    moved = Q - np.array([-0.01, 0.02, -0.03, 0.04, -0.05, 0.06])
    assert iac(Q, moved, ALL, minor=True) == pytest.approx(54 / 64)
    # Only the images that count in the test: the first three, all lower by 1 -> W = 0 over
    # n = 3, p = 2 / 8.
    first = np.array([True] * 3 + [False] * 3)
    assert iac(Q, Q - 1, first, minor=True) == pytest.approx(2 / 8)
    # No image counts (no prediction changed): undefined, not "perfectly reactive".
    assert np.isnan(iac(Q, Q - 1, np.zeros(6, bool), minor=False))


def test_inter_consistency_by_hand():
    # Three analyzers (rows), two images (columns). Image 0 keeps its ranks (3 of 3 pairs);
    # image 1's ranks go from (2, 3, 1) to (3, 2, 1): 1 of 3 kept. 4 of 6.
    before = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 4.0]])
    after = np.array([[1.0, 6.0], [2.0, 5.0], [3.0, 4.0]])
    assert iec_resilience(before, after, np.ones(2, bool)) == pytest.approx(4 / 6)
    # Only image 1 counts: 1 of 3.
    assert iec_resilience(before, after, np.array([False, True])) == pytest.approx(1 / 3)
    # Ties share their mean rank: (1, 1, 2) -> ranks (1.5, 1.5, 3), the same after.
    tied = np.array([[1.0], [1.0], [2.0]])
    assert iec_resilience(tied, tied, np.ones(1, bool)) == 1.0
    # Worse under a disruptive perturbation: of 1 -> 0, 5 -> 5, 2 -> 3, 6 -> 4, higher is
    # better: 1 -> 0 and 6 -> 4 are worse, 2 of 4; lower is better: 2 -> 3 only, 1 of 4.
    star = np.array([[1.0, 5.0], [2.0, 6.0]])
    hat = np.array([[0.0, 5.0], [3.0, 4.0]])
    assert iec_adversary(star, hat, np.ones(2, bool), higher_is_better=True) == 0.5
    assert iec_adversary(star, hat, np.ones(2, bool), higher_is_better=False) == 0.25


def _draws(make, analyzers: int, images: int, count: int, generator=None):
    """Per space, ``count`` (resilience, adversary) draws from ``make(star, minor)``."""
    generator = generator or np.random.default_rng(0)
    result = {}
    for space in ("input", "model"):
        result[space] = []
        for _ in range(count):
            pair = []
            for minor in (True, False):
                star = generator.uniform(size=(analyzers, images))
                pair.append(Draw(star, make(star, minor, generator), np.ones(images, bool)))
            result[space].append(tuple(pair))
    return result


def test_a_perfectly_reliable_criterion():
    # Unmoved by minor perturbations, every score lower (worse) under disruptive ones: per
    # space IAC_NR = 1, IAC_AR = 1 - 2/2**6, IEC_NR = 1, IEC_AR = 1; MC = (4 - 1/32) / 4.
    score = meta_consistency(
        _draws(lambda star, minor, _: star if minor else star - 1, 2, 6, 3),
        higher_is_better=True,
    )
    expected = (4 - 1 / 32) / 4
    assert score.measures["input"] == pytest.approx(
        {"iac_nr": 1.0, "iac_ar": 1 - 1 / 32, "iec_nr": 1.0, "iec_ar": 1.0}
    )
    assert score.mc == pytest.approx(expected)
    assert score.low == pytest.approx(expected) and score.high == pytest.approx(expected)
    assert score.reliable


def test_a_criterion_that_never_moves_scores_one_half():
    # MetaQuantus's own sanity check "Estimator_Same": perturbed scores equal to the
    # unperturbed, minor or disruptive: IAC_NR 1, IAC_AR 1 - 1 = 0, IEC_NR 1, IEC_AR 0.
    score = meta_consistency(_draws(lambda star, minor, _: star, 3, 6, 2), True)
    assert score.measures["model"] == pytest.approx(
        {"iac_nr": 1.0, "iac_ar": 0.0, "iec_nr": 1.0, "iec_ar": 0.0}
    )
    assert score.mc == pytest.approx(0.5)
    assert not score.reliable


@pytest.mark.parametrize("analyzers", [2, 4])
def test_a_random_criterion_scores_what_its_definition_gives(analyzers):
    # Scores drawn afresh at every evaluation: p-values uniform (IAC_NR and IAC_AR 0.5 in
    # expectation), a rank kept with chance 1/L, worse with chance 1/2:
    # MC = (3 * 0.5 + 1/L) / 4 (0.5 for two analyzers, 0.4375 for four).
    score = meta_consistency(
        _draws(lambda star, minor, g: g.uniform(size=star.shape), analyzers, 40, 30),
        higher_is_better=True,
    )
    expected = (1.5 + 1 / analyzers) / 4
    assert score.noise_level == pytest.approx(expected)
    assert score.measures["input"]["iec_nr"] == pytest.approx(1 / analyzers, abs=0.02)
    assert score.mc == pytest.approx(expected, abs=0.03)
    assert score.low < expected < score.high
    assert not score.reliable


CRITERION = Criterion("faithfulness", "aopc", True, "AOPC")


def _run(label: str, seed: int, values: np.ndarray, perturbed) -> RunScores:
    per_image = {"aopc": values, kept.unperturbed_key("aopc"): values}
    for test in kept.TESTS:
        for k in range(2):
            per_image[kept.key(test.name, k, "aopc")] = perturbed(values, test.minor, k)
            per_image[kept.key(test.name, k, kept.KEPT)] = np.ones(len(values))
    return RunScores(label, False, seed, 5, {"aopc": float(values.mean())}, per_image)


def _baseline(seed: int, images: int) -> RunScores:
    values = np.zeros(images)
    return RunScores("input", True, seed, 5, {"aopc": 0.0}, {"aopc": values}, "baseline.input")


def test_the_verdict_marks_an_unreliable_criterion_and_the_answer_sets_it_aside():
    generator = np.random.default_rng(1)
    images = 12
    good = 0.5 + 0.01 * np.arange(images)
    fair = 0.3 + 0.01 * np.arange(images)
    noise = lambda values, minor, k: generator.uniform(size=len(values))  # noqa: E731
    runs = [
        _run("a", 0, good, noise),
        _run("b", 0, fair, noise),
        _baseline(0, images),
    ]
    verdict = build_verdict(runs, [CRITERION])
    result = verdict.meta["aopc"]
    assert result.analyzers == 2 and result.draws == 2
    assert result.mc < THRESHOLD and "aopc" in verdict.unreliable
    said = answer(verdict)
    assert said.counted == [] and any("unreliable on this model" in s for s in said.set_aside)
    assert "meta-evaluation of the criteria" in judgement_text(verdict)
    assert "## Meta-evaluation of the criteria on this model" in markdown(verdict, "t")
    assert parent_metrics(verdict)["meta_mc/aopc"] == result.mc  # charted on the parent run

    # The same runs with a criterion that holds under minor and reacts to disruptive
    # perturbations: reliable, counted, and the answer trusts the analyzer beating the baseline.
    steady = lambda values, minor, k: values if minor else values - 1  # noqa: E731
    verdict = build_verdict(
        [_run("a", 0, good, steady), _run("b", 0, fair, steady), _baseline(0, images)],
        [CRITERION],
    )
    assert verdict.meta["aopc"].reliable and not verdict.unreliable
    assert answer(verdict).counted == ["AOPC"]
