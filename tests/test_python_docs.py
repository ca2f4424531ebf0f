"""docs/python.md's example runs as written (so the doc cannot rot), and the package ships typed."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "python.md"


def example() -> str:
    """The first ```python block of docs/python.md."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert blocks, "docs/python.md has no ```python block"
    return blocks[0]


def test_the_example_in_docs_python_md_runs(project: Path) -> None:
    code = example()
    r = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    final_id, trigger, _, episodes, _ = r.stdout.split()
    assert trigger == "done" and int(episodes) > 1  # it checkpointed in process along the way
    mem = project / ".memory"
    cont = orjson.loads((mem / "session_continuity.json").read_bytes())
    assert (cont["status"], cont["last_checkpoint"]) == ("done", final_id)
    ids = sorted(p.stem for p in (mem / "checkpoints").glob("chk_*.json"))
    assert len(ids) == int(episodes) and ids[-1] == final_id


def test_the_package_is_marked_typed_and_ships_the_marker() -> None:
    assert (ROOT / "aether_cli" / "py.typed").is_file()
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    # Hatch ships every file under a listed package folder: the marker goes with the package.
    assert "aether_cli" in wheel["packages"] and not wheel.get("exclude")
    try:
        from hatchling.builders.wheel import WheelBuilder
    except ImportError:
        return  # the build backend is not in this environment: the configuration above is the check
    built = next(iter(WheelBuilder(str(ROOT)).build(directory=str(Path.cwd()), versions=["standard"])))
    assert "aether_cli/py.typed" in zipfile.ZipFile(built).namelist()
