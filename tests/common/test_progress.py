"""Progress bars: live in a terminal, whole timestamped lines in a log file."""

from __future__ import annotations

import io
import re

from src.common import progress


def test_in_a_log_each_redraw_is_a_whole_line_and_the_last_is_not_repeated(monkeypatch):
    log = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # a line for every update
    bar = progress.progress_bar(3, "training", "batch")
    for _ in range(3):
        bar.update(1)
    bar.set_description("training (epoch 1/1)")
    bar.close()

    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert all(re.match(r"\[\d\d:\d\d:\d\d\] training", line) for line in lines), lines
    counts = [re.search(r"(\d)/3 ", line).group(1) for line in lines]
    assert counts == ["0", "1", "2", "3", "3"]  # the last is the new description, not a repeat
    assert "training (epoch 1/1): 100%" in lines[-1] and "#" in lines[-1]


def test_in_a_log_a_quick_job_gives_its_first_and_last_line(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    bar = progress.progress_bar(100, "explaining", "img")
    for _ in range(10):
        bar.update(10)  # faster than the interval: no line until the end
    bar.close()
    lines = log.getvalue().splitlines()
    assert [re.search(r"(\d+)/100 ", line).group(1) for line in lines] == ["0", "100"]
