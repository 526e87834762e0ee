"""One answer to "which explanation of my model can I trust?", read off a sweep's verdict by one
declared rule, at the longest training the sweep ran:

- **Evidence** for an analyzer: a criterion of an evidence score (faithfulness, randomisation,
  random logit, localisation; not the properties, complexity and robustness, which a map can
  have without explaining anything) on which it beats every baseline the sweep ran. Where fresh
  noise passes a criterion by construction (MPRT, eMPRT, random logit: noise changes with
  anything), the baselines that ignore the model (``input``, ``edge``) are the ones to beat.
- **Set aside** for every analyzer: a criterion a control passed (the verdict marks it
  uninformative on this model: :mod:`src.scores.controls`), or, with ``evaluate=meta``, one
  whose meta-consistency is below the threshold (unreliable on this model:
  :mod:`src.report.meta`). For one analyzer: a criterion a
  blank map passes (MPRT) when more than :data:`src.report.verdict.BLANK_NOTE` of its maps
  went blank under randomisation (Binder et al., CVPR 2023: blank-like maps pass top-down
  randomisation checks).
- **Trust**: the analyzer(s) with evidence on the most criteria; named together when they
  tie. None with any evidence: no analyzer earned trust here, and the answer says so.
- **Limits**: one seed (the intervals cover the test images, not another training), a missing
  baseline, a criterion no analyzer beats every baseline on, a criterion no baseline can be
  read against.

``answer.md`` and ``answer.json`` hold it; it is the first thing the terminal, ``report.html``
and the parent run show.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from src.report.verdict import BLANK_NOTE, Criterion, Verdict

# The baselines a sweep over analyzers runs by default (conf/config.yaml's compare.baselines).
DEFAULT_BASELINES = ("noise", "edge", "input")


@dataclass
class Answer:
    trusted: list[str]  # the analyzers to trust, ordered; [] if none earned it
    epochs: int
    seeds: int
    baselines: list[str]
    counted: list[str]  # the criteria read as evidence (their short names)
    evidence: dict[str, list[str]] = field(default_factory=dict)  # analyzer -> criteria
    best: dict[str, list[str]] = field(default_factory=dict)  # analyzer -> best or tied best
    set_aside: list[str] = field(default_factory=list)  # "MPRT for deep_taylor: why"
    unbeaten: list[str] = field(default_factory=list)  # criteria no analyzer has evidence on
    limits: list[str] = field(default_factory=list)
    headline: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def lines(self) -> list[str]:
        """The answer in a few lines: headline, runners-up, what was set aside, limits."""
        lines = [self.headline]
        others = [a for a in self.evidence if a not in self.trusted and self.evidence[a]]
        if others:
            lines.append(
                "Next: "
                + ", ".join(f"{a} ({len(self.evidence[a])} of {len(self.counted)})" for a in others)
            )
        if self.set_aside:
            lines.append("Set aside: " + "; ".join(self.set_aside))
        if self.unbeaten:
            lines.append("No analyzer beats every baseline on: " + ", ".join(self.unbeaten))
        lines += [f"Limit: {limit}" for limit in self.limits]
        return lines

    def text(self, width: int = 100) -> str:
        """The lines for a terminal: each wrapped to ``width``, continued indented."""
        return "\n".join(
            wrapped
            for line in self.lines()
            for wrapped in textwrap.wrap(line, width=width, subsequent_indent="  ")
        )

    def markdown(self, title: str) -> str:
        return "\n".join([f"# Answer: {title}", "", *(f"{line}  " for line in self.lines())]) + "\n"


def answer(verdict: Verdict) -> Answer:
    """The answer of ``verdict`` by the rule of the module docstring."""
    epochs = verdict.longest
    analyzers = [label for label, e in verdict.analyzers if e == epochs]
    evidence = [c for c in verdict.criteria if c.evidence]
    counted = [c for c in evidence if c.score not in set_aside(verdict)]
    result = Answer(
        trusted=[],
        epochs=epochs,
        seeds=verdict.seeds,
        baselines=list(verdict.baselines),
        counted=[c.short for c in counted],
    )
    read = set()
    for criterion in evidence:
        reasons = verdict.uninformative.get(criterion.score)
        if reasons:
            read.add(criterion.short)
            result.set_aside.append(
                f"{criterion.short} for every analyzer (uninformative on this model: {reasons[0]})"
            )
        elif criterion.score in verdict.unreliable:
            read.add(criterion.short)
            result.set_aside.append(
                f"{criterion.short} for every analyzer (unreliable on this model: "
                f"{verdict.unreliable[criterion.score]})"
            )
    for label in analyzers:
        result.evidence[label], result.best[label] = [], []
        for criterion in counted:
            cell = verdict.cells.get((label, epochs, criterion.score))
            if cell is None:
                continue
            if cell.best or cell.tied_best:
                result.best[label].append(criterion.short)
            required = verdict.to_beat(criterion, list(cell.beats))
            if not required:
                continue
            read.add(criterion.short)
            blank = verdict.blank_shares.get((label, epochs), 0.0)
            if criterion.blank_passes and blank > BLANK_NOTE:
                result.set_aside.append(
                    f"{criterion.short} for {label} ({blank:.0%} of its maps go blank under "
                    "randomisation, and a blank map passes it)"
                )
                continue
            if all(cell.beats[b] for b in required):
                result.evidence[label].append(criterion.short)
    result.unbeaten = [
        c for c in result.counted if c in read and not any(c in e for e in result.evidence.values())
    ]
    most = max((len(e) for e in result.evidence.values()), default=0)
    if most:
        result.trusted = [a for a in analyzers if len(result.evidence[a]) == most]
    result.evidence = dict(
        sorted(result.evidence.items(), key=lambda item: (-len(item[1]), analyzers.index(item[0])))
    )
    result.limits = _limits(verdict, analyzers, evidence, read)
    result.headline = _headline(result)
    return result


def set_aside(verdict: Verdict) -> set[str]:
    """The criteria set aside for every analyzer: uninformative or unreliable on this model."""
    return set(verdict.uninformative) | set(verdict.unreliable)


def _headline(result: Answer) -> str:
    if not result.baselines:
        return (
            "No answer: the sweep ran no baseline (compare.baselines=[]), so nothing says how "
            "far above chance any score is."
        )
    if not result.counted:
        return (
            "No answer: every criterion that could be evidence is uninformative (a control "
            "passed it) or unreliable (its meta-consistency) on this model, or was not scored."
        )
    if not result.trusted:
        return (
            "No analyzer earned trust here: none beats every baseline on any of "
            f"{', '.join(result.counted)}."
        )
    names = listed(result.trusted)
    first = result.trusted[0]
    evidence = result.evidence[first]
    best = [c for c in result.best.get(first, []) if c in evidence]
    text = (
        f"Trust {names} on this model ({result.epochs} epochs): "
        f"{'each' if len(result.trusted) > 1 else 'it'} beats every baseline on "
        f"{len(evidence)} of {len(result.counted)} criteria ({', '.join(evidence)})"
    )
    if len(result.trusted) == 1 and best:
        text += f", and is best or tied best on {', '.join(best)}"
    return text + "."


def listed(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``; empty for none."""
    names = list(names)
    if len(names) < 2:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _limits(
    verdict: Verdict, analyzers: list[str], counted: list[Criterion], read: set[str]
) -> list[str]:
    limits = []
    if verdict.seeds == 1:
        limits.append(
            "one seed: the intervals cover the test images, not another training, and the "
            "ranking may change with the seed (sweep seed=0,1,2)"
        )
    ran = {row.split()[0] for row in verdict.baselines}
    missing = [b for b in DEFAULT_BASELINES if b not in ran]
    if verdict.baselines and missing:
        them = "it" if len(missing) == 1 else "them"
        limits.append(f"no {', '.join(missing)} baseline: no score is read against {them}")
    if len(analyzers) < 2:
        limits.append("one analyzer: nothing to choose between")
    unread = [c.short for c in counted if c.short not in read]
    if verdict.baselines and unread:
        limits.append(f"no baseline to read {', '.join(unread)} against")
    small = [
        f"{c.short} (about {needed:,.0f} image × seed pairs needed, {had:,} here)"
        for c in counted
        if c.score not in set_aside(verdict)
        for needed, had in [verdict.needed.get((c.score, verdict.longest), (math.nan, 0))]
        if math.isfinite(needed) and needed > had
    ]
    if small:
        limits.append("too small to tell the top two apart on " + ", ".join(small))
    return limits
