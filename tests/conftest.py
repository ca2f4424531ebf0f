"""Shared fixtures: every test works in its own tmp project, never in a real user folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test in a fresh project folder with a private HOME and no inherited AETHER_* settings."""
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("HOME", str(home))
    for key in list(os.environ):
        if key.startswith("AETHER_"):
            monkeypatch.delenv(key)
    yield


@pytest.fixture
def project() -> Path:
    """The test's project folder (the working directory)."""
    return Path.cwd()
