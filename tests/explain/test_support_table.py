"""The support table of docs/models.md, measured: every analyzer on every model family, built by the
project's Keras and saved by Keras 3 and read back. The test fails when a cell changes;
``make support-table`` writes the measured table there."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from makers.families import FAMILIES, build, file_stem
from omegaconf import OmegaConf

from src.common.paths import CONFIG_DIR, PROJECT_ROOT, group_options
from src.common.tf_runtime import reset, tensorflow
from src.explain.configured import analyzer_of
from src.explain.heatmaps import build_analyzer
from src.models.zoo import load_keras_file

pytestmark = [pytest.mark.slow, pytest.mark.system]

TABLE_PAGE = PROJECT_ROOT / "docs" / "models.md"
START, END = "<!-- support-table:start -->", "<!-- support-table:end -->"
# Baselines ignore the model: they explain every model by construction.
ANALYZERS = [
    option
    for option in group_options("analyzer")
    if not OmegaConf.load(CONFIG_DIR / "analyzer" / f"{option}.yaml").method.startswith("baseline.")
]


def outcome(model, option: str) -> str:
    """ "explains", or the one-line reason the analyzer gives for not explaining the model."""
    spec = OmegaConf.create(
        {"seed": 0, "analyzer": OmegaConf.load(CONFIG_DIR / "analyzer" / f"{option}.yaml")}
    ).analyzer
    params = OmegaConf.to_container(spec.params, resolve=True)
    params = {**params, **({"steps": 4} if "steps" in params else {})}
    params = {**params, **({"augment_by_n": 4} if "augment_by_n" in params else {})}
    images = np.random.default_rng(0).random((2, *model.input_shape[1:])).astype(np.float32)
    try:  # as a run creates and builds it
        analyzer = analyzer_of(model, spec.method, params, "max_activation")
        build_analyzer(analyzer)
        maps = analyzer.analyze(images)
    except Exception as error:  # noqa: BLE001 - the reason is what the table records
        text = str(error).strip().splitlines()
        first = text[0] if text else type(error).__name__
        return re.sub(r"^.*? cannot (explain|be built for) this model: ", "", first)
    if maps.shape != images.shape or not np.isfinite(maps).all():
        return "maps of another shape or not finite"
    return "explains"


def measure(keras3_dir: Path) -> dict[str, dict[str, str]]:
    """family -> analyzer -> outcome; the Keras 3 file's outcome is noted where it differs."""
    table: dict[str, dict[str, str]] = {}
    keras = tensorflow().keras
    for family in FAMILIES:
        table[family] = {}
        for option in ANALYZERS:
            reset(0)
            ours = outcome(build(family, keras), option)
            reset(0)
            converted = load_keras_file(
                (28, 28, 1), 10, str(keras3_dir / f"{file_stem(family)}.keras")
            ).model
            theirs = outcome(converted, option)
            table[family][option] = ours if ours == theirs else f"{ours}; Keras 3 file: {theirs}"
    return table


def markdown(table: dict[str, dict[str, str]]) -> str:
    """Rows: analyzers; columns: families; ✓ or a numbered reason listed under the table."""
    reasons: list[str] = []
    lines = [
        "| analyzer | " + " | ".join(table) + " |",
        "| --- |" + " :-: |" * len(table),
    ]
    for option in ANALYZERS:
        cells = []
        for family in table:
            result = table[family][option]
            if result == "explains":
                cells.append("✓")
                continue
            if result not in reasons:
                reasons.append(result)
            cells.append(f"✗ ({reasons.index(result) + 1})")
        lines.append(f"| {option} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"({number}) {reason}" for number, reason in enumerate(reasons, start=1)]
    return "\n".join(lines)


def test_the_support_table_is_what_the_analyzers_do(keras3_files):
    measured = markdown(measure(keras3_files))
    readme = TABLE_PAGE.read_text()
    section = re.compile(re.escape(START) + r"\n(.*?)\n" + re.escape(END), re.S)
    if os.environ.get("XAI_LAB_WRITE_SUPPORT_TABLE") == "1":
        TABLE_PAGE.write_text(section.sub(lambda _: f"{START}\n{measured}\n{END}", readme))
        readme = TABLE_PAGE.read_text()
    found = section.search(readme)
    assert found, f"{TABLE_PAGE} has no {START} ... {END} section"
    assert found.group(1) == measured, (
        "the support table changed; run `make support-table` and review docs/models.md's diff:\n"
        + measured
    )
