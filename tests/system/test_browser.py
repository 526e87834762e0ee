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
from support import client_for, free_port, make_service, require, store_dir, train_cli

from src.common.paths import PROJECT_ROOT
from src.report.figures import DPI, TEXT_SIZE

try:
    from playwright.sync_api import expect, sync_playwright

    # The UI's first page of an experiment takes seconds on a loaded 2-core machine; Playwright
    # waits 5 s by default before an expectation fails.
    expect.set_options(timeout=20_000)
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
# A sweep over analyzers runs the default baselines too (compare.baselines).
PARENT = (
    "sweep · dataset=digits analyzer=deep_taylor,gradient,noise,edge,input seed=0 "
    "train.epochs=2 evaluate.n_images=50"
)
EXPERIMENT = "xai-lab-digits"  # one experiment per dataset
CHILDREN = tuple(
    f"{analyzer} · seed 0 · 2 ep"
    for analyzer in ("deep_taylor", "gradient", "noise", "edge", "input")
)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """A store holding one sweep: two analyzers on one model trained for two epochs, scored on
    50 images, its criteria meta-evaluated on 20."""
    tmp_path = tmp_path_factory.mktemp("ui")
    result = train_cli(
        tmp_path,
        "-m",
        "dataset=digits",
        "analyzer=deep_taylor,gradient",
        "seed=0",
        "train.epochs=2",
        "evaluate.n_images=50",
        "evaluate=meta",
        "evaluate.meta.n_images=20",
        "evaluate.meta.perturbations=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (parent,) = client.search_runs(
        [experiment.experiment_id], "tags.sweep_role = 'parent'", max_results=5
    )
    return tmp_path, parent


@pytest.fixture(scope="module")
def ui(sweep: tuple[Path, Run]) -> Iterator[str]:
    tmp_path, _ = sweep
    with make_service("ui", free_port(), STORE=str(store_dir(tmp_path))) as url:
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
    page.get_by_role("link", name=EXPERIMENT, exact=True).click()
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
    return preview_image(page, folder, name)[:2]


def preview_image(page, folder: str, name: str) -> tuple[int, int, float]:
    """:func:`open_image`, and the width at which the preview shows the image."""
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(folder, exact=True).click()
    page.get_by_text(name, exact=True).click()
    preview = page.locator("img[src^='blob:']").first
    expect(preview).to_be_visible()
    page.wait_for_function(
        "image => image.complete && image.naturalWidth > 0", arg=preview.element_handle()
    )
    return tuple(
        preview.evaluate(
            "image => [image.naturalWidth, image.naturalHeight,"
            " image.getBoundingClientRect().width]"
        )
    )


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
    charts = page.get_by_test_id("experiment-view-compare-runs-card")
    for metric in ("train_accuracy", "val_accuracy"):
        page.get_by_placeholder("Search metric charts").fill(metric)
        chart = charts.filter(has=page.get_by_text(metric, exact=True))
        expect(chart).to_have_count(1)
        # A line through one point per epoch.
        expect(chart.locator(".scatterlayer .point")).to_have_count(2)
    page.screenshot(path=SCREENSHOTS / "3-child-accuracy-per-epoch.png")

    run_id = re.search("/runs/([0-9a-f]+)", page.url).group(1)
    expected = artifact_png_size(sweep, run_id, "figures/heatmaps_deep_taylor.png")
    width, height, shown = preview_image(page, "figures", "heatmaps_deep_taylor.png")
    assert (width, height) == expected
    # Legible where MLflow previews it: the figure's text, scaled to the preview, is >= 9 px.
    assert TEXT_SIZE * DPI / 72 * min(1.0, shown / width) >= 9, (shown, width)
    page.screenshot(path=SCREENSHOTS / "4-child-heatmaps.png")


def test_the_parent_run_holds_the_comparison_grid(page, sweep):
    _, parent = sweep
    open_experiment(page)
    page.get_by_role("row").filter(has_text=PARENT).get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(f"/runs/{parent.info.run_id}"))
    expected = artifact_png_size(sweep, parent.info.run_id, "comparison/grid.png")
    assert open_image(page, "comparison", "grid.png") == expected
    page.screenshot(path=SCREENSHOTS / "5-parent-comparison-grid.png")


def test_the_runs_show_their_dataset_and_compare_heatmaps_side_by_side(page):
    """The runs table's Dataset column, and MLflow's image chart of the key ``heatmaps``: one
    image per run (logged with ``mlflow.log_image(key=..., step=epochs)``)."""
    open_experiment(page)
    expand_parent(page)
    for name in (PARENT, *CHILDREN):
        # The table draws a row in two parts (the pinned name, the other columns).
        row_id = page.get_by_role("row").filter(has_text=name).first.get_attribute("row-id")
        parts = page.locator(f"[role=row][row-id='{row_id}']")
        expect(parts.filter(has_text=re.compile(r"digits \([0-9a-f]{12}\)"))).to_have_count(1)
    page.screenshot(path=SCREENSHOTS / "6-runs-with-datasets.png")
    # The runs' view switch: table, charts, artifacts; a radio button each.
    page.locator("[role=radiogroup] label").filter(has=page.locator("input[value='CHART']")).click()
    page.get_by_test_id("experiment-view-compare-runs-chart-area").wait_for()
    page.get_by_placeholder(re.compile("Search")).last.fill("heatmaps")
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has=page.get_by_text("heatmaps", exact=True)
    )
    expect(card).to_have_count(1)
    images = card.locator("img")
    expect(images).to_have_count(len(CHILDREN))
    for child in CHILDREN:
        expect(card).to_contain_text(child)
    page.wait_for_function(
        "card => [...card.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)",
        arg=card.element_handle(),
    )
    # Full screen: the runs' heatmaps one under the other, each under its name (and, MLflow's
    # choice, all its params), with a slider over the steps (epochs).
    card.locator("[data-component-id='fullscreen_button_chartcard']").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("img")).to_have_count(len(CHILDREN))
    page.set_viewport_size({"width": 1400, "height": 1700})
    page.wait_for_function(
        "dialog => [...dialog.querySelectorAll('img')].every(i => i.complete && i.naturalWidth)",
        arg=dialog.element_handle(),
    )
    page.screenshot(path=SCREENSHOTS / "7-image-chart-heatmaps.png")


def test_the_sweeps_html_report_opens_offline_with_every_image(browser, sweep):
    """``report.html`` as a person opens it from ``reports/<parent>/``: offline, no console
    error, every image loaded, the verdict first."""
    tmp_path, parent = sweep
    report = tmp_path / "reports" / parent.info.run_id / "report.html"
    context = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
    page = context.new_page()
    errors, fetched = [], []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: fetched.append(request.url))
    page.goto(report.as_uri())
    page.wait_for_function("() => [...document.images].every(image => image.complete)")
    widths = page.evaluate("() => [...document.images].map(image => image.naturalWidth)")
    # The verdict's per-criterion figures, the curves, the grid, accuracy and cost.
    assert len(widths) >= 5 and all(width > 0 for width in widths), widths
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched
    headings = page.locator("h2").all_inner_texts()
    assert headings[:2] == ["The answer", "Verdict: which explanation can be trusted"]
    assert "Provenance" in headings[-1]
    # The answer on top; the analyzers against each other, the controls, the agreement of
    # criteria and their meta-evaluation under the verdict.
    expect(page.locator("#answer")).to_contain_text("one seed")
    expect(page.locator("ul.rankings li").first).to_be_visible()
    expect(page.locator("#controls-table")).to_contain_text("blank-like")
    expect(page.locator("#agreement-table")).to_contain_text("AOPC")
    meta = page.locator("#meta-table")
    expect(meta.locator("th").first).to_have_text("criterion")
    expect(meta).to_contain_text("model IEC AR")
    expect(meta.get_by_role("cell", name="AOPC", exact=True)).to_be_visible()
    expect(page.locator("#meta + p.sub")).to_contain_text("MetaQuantus")
    table = page.locator("#verdict-table")
    expect(table).to_be_visible()
    expect(table.locator("th").first).to_have_text("analyzer")
    for child in ("deep_taylor", "gradient"):
        expect(table.get_by_role("cell", name=child, exact=True)).to_be_visible()
    assert table.locator("td.best").count() >= 1  # the best per criterion marked
    expect(page.get_by_text(parent.info.run_id).first).to_be_visible()  # provenance
    page.screenshot(path=SCREENSHOTS / "8-report.png", full_page=True)
    context.close()


def test_the_report_is_on_the_parent_run_in_mlflow(page, sweep):
    _, parent = sweep
    open_experiment(page)
    page.get_by_role("row").filter(has_text=PARENT).get_by_role("link").first.click()
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("comparison", exact=True).click()
    page.get_by_text("report.html", exact=True).click()
    frame = page.frame_locator("iframe").first
    expect(frame.locator("#verdict-table")).to_be_visible()
    # UTF-8 both ways: "±" and "↑" as written, not "Â±".
    expect(frame.locator("#verdict-table")).to_contain_text("↑")
    page.screenshot(path=SCREENSHOTS / "9-parent-report-in-mlflow.png")
