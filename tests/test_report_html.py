"""`aether report --html`: the page of a real demo session rendered in headless Chromium.

The rendered DOM must hold the charts' marks, as many as `--json` has points,
markers and tools, with the same values; a screenshot is written and its path
printed. A browser that cannot start fails the test: it is never skipped
(`make test` installs Debian's chromium when it is missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import aether
from tests.test_report import demo  # noqa: F401  (the module-scoped demo session fixture)


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    flags = ["--headless", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    res = subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"chromium failed to start ({res.returncode}): {res.stderr[-2000:]}"
    return res


class Marks(HTMLParser):
    """The values of the chart marks in each figure, per series: {figure: {series: [value text]}}."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[str, dict[int, list[str]]] = {}
        self.figure: str | None = None
        self.series: int | None = None
        self.in_value = False
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "figure":
            self.figure = a.get("id")
            self.marks.setdefault(self.figure or "", {})
        # Lines sit in the plot's series groups, dots and bars (each with its value) in theirs too.
        if tag == "g" and self.figure and "series" in classes:
            self.series = int(next(c for c in classes if c.startswith("serie-")).split("-")[1])
            self.marks[self.figure or ""].setdefault(self.series, [])
        if tag == "desc" and "value" in classes and self.series is not None:
            self.in_value = True
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.figure, self.series = None, None
        if tag == "desc":
            self.in_value = False

    def handle_data(self, data: str) -> None:
        if self.in_value and self.figure and self.series is not None:
            self.marks[self.figure][self.series].append(data)


def y_values(values: list[str]) -> list[int]:
    return [int(v.split(": ")[-1]) for v in values]


@pytest.mark.slow
def test_the_page_renders_in_chromium_with_the_json_figures(demo: Path, tmp_path: Path) -> None:  # noqa: F811
    page = tmp_path / "report.html"
    res = aether("report", "--json", "--html", str(page), cwd=demo)
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = orjson.loads(res.stdout)
    text = page.read_text(encoding="utf-8")
    # Self-contained: nothing is fetched when the page is viewed.
    for needle in ("<link", " src=", "@import", "url(http", 'href="http'):
        assert needle not in text, needle

    dom = chromium("--dump-dom", page.as_uri()).stdout
    parser = Marks()
    parser.feed(dom)
    context, tools = parser.marks["context-chart"], parser.marks["tools-chart"]

    # One line of marks per episode, each mark a point of --json's series with its value.
    episodes = [e["episode"] for e in data["episodes"]]
    for i, episode in enumerate(episodes):
        points = [p for p in data["context"]["points"] if p["episode"] == episode]
        assert y_values(context[i]) == [p["tokens"] for p in points], f"episode {episode}"
        assert [float(v.split(": ")[0]) for v in context[i]] == [p["t"] for p in points]
    relaunches, checkpoints = context[len(episodes)], context[len(episodes) + 1]
    assert len(relaunches) == data["totals"]["relaunches"] == len(episodes) - 1
    assert y_values(relaunches) == [e["prompt_tokens"] for e in data["episodes"][1:]]
    assert len(checkpoints) == data["totals"]["checkpoints"]
    assert y_values(checkpoints) == [c["episode_tokens"] for c in data["checkpoints"]]
    # The tokens-by-tool bars: one per tool, its total as the value.
    assert [int(v) for v in tools[0]] == [row["tokens"] for row in data["by_tool"]]

    shot = tmp_path / "report.png"
    chromium("--window-size=1000,1600", f"--screenshot={shot}", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    keep = os.environ.get("REPORT_SCREENSHOT_COPY")
    if keep:
        shutil.copy(shot, keep)
    print(f"screenshot: {keep or shot}")
