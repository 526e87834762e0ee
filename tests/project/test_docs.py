"""The README and docs/ stay true to each other and to the tree: every link and anchor leads
somewhere, every path they name exists, every page is reachable from the README, and the
README stays short enough to read first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
README = PROJECT_ROOT / "README.md"
PAGES = sorted((PROJECT_ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A path of the tree, in backticks or in the text: `src/…`, conf/…, tests/…, benchmarks/…, …
TREE_PATH = re.compile(
    r"(?<![\w/.-])((?:src|conf|tests|benchmarks|scripts|hydra_plugins)/[\w./<>*-]*[\w>*])"
)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings in code
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_slug_is_githubs():
    assert slug("iNNvestigate's defects, and what the project does instead") == (
        "innvestigates-defects-and-what-the-project-does-instead"
    )
    assert slug("Configuration (`conf/`)") == "configuration-conf"
    assert slug("Which explanation can be trusted? The scores") == (
        "which-explanation-can-be-trusted-the-scores"
    )


def test_the_readme_is_short_and_lists_its_sections():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    contents = next(line for line in text.splitlines() if line.startswith("**Contents**"))
    contents += text.split(contents, 1)[1].split("\n\n", 1)[0]  # the line and its continuation
    sections = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    for section in sections:
        assert f"(#{slug(section)})" in contents, section


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_link_leads_somewhere(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(file), f"{page.name}: link to {target}: no such heading"


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_path_named_exists(page):
    for path in TREE_PATH.findall(page.read_text()):
        if "<" in path or "*" in path:  # a pattern (`benchmarks/results/<time>.json`), not a path
            continue
        assert (PROJECT_ROOT / path).exists(), f"{page.name} names {path}, which does not exist"


def test_every_page_is_reachable_from_the_readme():
    linked = {
        (README.parent / t.partition("#")[0]).resolve() for t in LINK.findall(README.read_text())
    }
    for page in PAGES:
        assert page.resolve() in linked, f"docs/{page.name} is linked from nowhere in the README"
