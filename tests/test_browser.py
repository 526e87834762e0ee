"""The MLflow UI as a person uses it: ``make ui`` on a store holding a small sweep, driven in
headless Chromium (Debian's, through Playwright). Screenshots of each step are test output, in
``test-output/browser/`` (``XAI_LAB_TEST_OUTPUT`` moves it)."""

from __future__ import annotations

import os
import re
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Run
from support import client_for, free_port, make_service, require, train_cli

from src.paths import PROJECT_ROOT

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture then skips (or fails, where it must run)
    expect = sync_playwright = None

pytestmark = [pytest.mark.slow, pytest.mark.system]

CHROMIUM = shutil.which("chromium")
# Without the last two, Chromium keeps calling Google's servers, which this network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SCREENSHOTS = Path(os.environ.get("XAI_LAB_TEST_OUTPUT", PROJECT_ROOT / "test-output")) / "browser"
# The parent is named by what the sweep compares (not by where it writes: tracking.dir etc.).
PARENT = "sweep · dataset=digits analyzer=deep_taylor,gradient seed=0 train.epochs=2 evaluate=off"
CHILDREN = ("deep_taylor · seed 0 · 2 ep", "gradient · seed 0 · 2 ep")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """A store holding one sweep: two analyzers on one model trained for two epochs."""
    tmp_path = tmp_path_factory.mktemp("ui")
    result = train_cli(
        tmp_path,
        "-m",
        "dataset=digits",
        "analyzer=deep_taylor,gradient",
        "seed=0",
        "train.epochs=2",
        "evaluate=off",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("xai-lab")
    (parent,) = client.search_runs(
        [experiment.experiment_id], "tags.sweep_role = 'parent'", max_results=5
    )
    return tmp_path, parent


@pytest.fixture(scope="module")
def ui(sweep: tuple[Path, Run]) -> Iterator[str]:
    tmp_path, _ = sweep
    with make_service("ui", free_port(), STORE=str(tmp_path / "store")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator:
    require(CHROMIUM is not None, "Chromium (Debian's chromium)")
    require(sync_playwright is not None, "Playwright (the `browser` extra)")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, ui: str) -> Iterator:
    context = browser.new_context(base_url=ui, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def open_experiment(page) -> None:
    """What a person does: open the UI, pick the model-training view, open the experiment."""
    page.goto("/")
    # MLflow 3 opens on its GenAI view, with an assistant panel: closed, to see the runs.
    page.get_by_role("button", name="Close", exact=True).click()
    page.get_by_text("Model training", exact=True).click()
    page.get_by_role("link", name="xai-lab", exact=True).click()
    expect(page.get_by_role("row").filter(has_text=PARENT)).to_have_count(1)


def expand_parent(page) -> None:
    parent_row = page.get_by_role("row").filter(has_text=PARENT)
    # The parent's row has a [+] button before its name that shows its children.
    parent_row.locator("[col-id='attributes.`Run Name`'] button").click()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def artifact_png_size(sweep: tuple[Path, Run], run_id: str, path: str) -> tuple[int, int]:
    tmp_path, _ = sweep
    local = client_for(tmp_path).download_artifacts(run_id, path, str(tmp_path / "downloads"))
    return png_size(Path(local).read_bytes())


def open_image(page, folder: str, name: str) -> tuple[int, int]:
    """In a run's Artifacts tab: open ``folder``, click ``name``; the preview's natural size."""
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(folder, exact=True).click()
    page.get_by_text(name, exact=True).click()
    preview = page.locator("img[src^='blob:']").first
    expect(preview).to_be_visible()
    page.wait_for_function(
        "image => image.complete && image.naturalWidth > 0", arg=preview.element_handle()
    )
    return tuple(preview.evaluate("image => [image.naturalWidth, image.naturalHeight]"))


def test_the_experiment_lists_the_sweep_parent_with_its_children(page):
    open_experiment(page)
    for child in CHILDREN:
        expect(page.get_by_role("link", name=child, exact=True)).to_have_count(0)
    expand_parent(page)
    for child in CHILDREN:
        expect(page.get_by_role("link", name=child, exact=True)).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "1-sweep-with-children.png")


def test_a_child_run_shows_its_params_accuracy_per_epoch_and_heatmaps(page, sweep):
    open_experiment(page)
    expand_parent(page)
    page.get_by_role("link", name=CHILDREN[0], exact=True).click()
    expect(page.get_by_role("heading", name=CHILDREN[0])).to_be_visible()
    for param, value in {"train.epochs": "2", "analyzer.name": "deep_taylor"}.items():
        row = page.get_by_role("row").filter(has=page.get_by_text(param, exact=True))
        expect(row).to_contain_text(value)
    row.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOTS / "2-child-params.png")

    page.get_by_role("tab", name="Model metrics").click()
    page.get_by_placeholder("Search metric charts").fill("accuracy")
    charts = page.get_by_test_id("experiment-view-compare-runs-card")
    for metric in ("train_accuracy", "val_accuracy"):
        chart = charts.filter(has=page.get_by_text(metric, exact=True))
        expect(chart).to_have_count(1)
        # A line through one point per epoch.
        expect(chart.locator(".scatterlayer .point")).to_have_count(2)
    page.screenshot(path=SCREENSHOTS / "3-child-accuracy-per-epoch.png")

    run_id = re.search("/runs/([0-9a-f]+)", page.url).group(1)
    expected = artifact_png_size(sweep, run_id, "figures/heatmaps_deep_taylor.png")
    assert open_image(page, "figures", "heatmaps_deep_taylor.png") == expected
    page.screenshot(path=SCREENSHOTS / "4-child-heatmaps.png")


def test_the_parent_run_holds_the_comparison_grid(page, sweep):
    _, parent = sweep
    open_experiment(page)
    page.get_by_role("row").filter(has_text=PARENT).get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(f"/runs/{parent.info.run_id}"))
    expected = artifact_png_size(sweep, parent.info.run_id, "comparison/grid.png")
    assert open_image(page, "comparison", "grid.png") == expected
    page.screenshot(path=SCREENSHOTS / "5-parent-comparison-grid.png")
