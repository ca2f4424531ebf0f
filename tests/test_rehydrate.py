"""rehydrate: templates, rendering, and prompts that keep what must survive within a budget."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

import aether_cli
from aether_cli.errors import AetherError
from aether_cli.prompt_template import TemplateError, load_template, render
from aether_cli.rehydrate import (
    STANDARD_RESUME,
    Prompt,
    first_prompt,
    prompt_budget,
    rehydrate_prompt,
)

REPO_TEMPLATES = Path(aether_cli.__file__).resolve().parent.parent / "templates"


def quarter(s: str) -> int:
    return len(s) // 4 + 1


def checkpoint(**over: Any) -> dict[str, Any]:
    chk: dict[str, Any] = {
        "id": "chk_000007_1a2b3c4d",
        "episode": 3,
        "objective": "Port the billing service from Flask to FastAPI without changing its API",
        "progress": [f"step {i} finished: migrated module number {i}" for i in range(10)],
        "next_actions": [
            "Run `pytest tests/api -k invoices` and fix failures",
            "Port src/billing/refunds.py to an APIRouter",
        ],
        "errors": [f"E{i}: assertion failed in test_{i}" for i in range(6)],
        "tasks": [
            {"id": "t1", "status": "in_progress", "next_action": "Port refunds"},
            {"id": "t9", "status": "pending", "next_action": "Only in the checkpoint"},
        ],
        "state": {
            "files_read": [f"src/billing/read_module_{i}.py" for i in range(6)],
            "files_modified": [f"src/billing/changed_module_{i}.py" for i in range(6)],
            "recent_tool_calls": [f'bash {{"command":"pytest -k case_{i}"}}' for i in range(8)],
            "interrupted_calls": ['write_file {"path":"src/billing/refunds.py"}'],
            "constraints": [f"constraint number {i}: keep it" for i in range(6)],
            "decisions": [f"Decision {i}: use approach {i}" for i in range(6)],
        },
        "distiller": "rules",
    }
    chk.update(over)
    return chk


TASKS = [
    {"id": "t1", "title": "Refunds endpoint", "status": "in_progress", "progress": 0.4,
     "next_action": "Port refunds", "notes": "", "files": []},
    {"id": "t2", "title": "Invoices endpoint", "status": "blocked", "progress": 0.9,
     "next_action": "Wait for schema answer", "notes": "", "files": []},
    {"id": "t3", "title": "Customers", "status": "done", "progress": 1.0,
     "next_action": "", "notes": "", "files": []},
    {"id": "t4", "title": "Webhooks", "status": "pending", "progress": 0,
     "next_action": "Write the webhook router", "notes": "", "files": []},
    {"id": "t5", "title": "Scaffold", "status": "done", "progress": 1.0,
     "next_action": "", "notes": "", "files": []},
]

FACTS = [
    {"key": "api", "text": "Public API paths must not change", "pinned": True,
     "priority": 9, "added_seq": 1, "updated_seq": 1},
    {"key": "db", "text": "Postgres 15 via SQLAlchemy 2", "pinned": False,
     "priority": 5, "added_seq": 1, "updated_seq": 2},
    {"key": "lint", "text": "ruff with line length 100", "pinned": False,
     "priority": 1, "added_seq": 1, "updated_seq": 6},
    {"key": "style", "text": "type hints everywhere", "pinned": False,
     "priority": 1, "added_seq": 1, "updated_seq": 3},
    {"key": "py", "text": "Python 3.11", "pinned": True,
     "priority": 0, "added_seq": 2, "updated_seq": 2},
]


def prompt(budget: int = 5000, memory_dir: Path | None = None, **over: Any) -> Prompt:
    return rehydrate_prompt(checkpoint=checkpoint(**over), tasks=TASKS, facts=FACTS, episode=4,
                            count=quarter, budget=budget, memory_dir=memory_dir)


def assert_mandatory(text: str, **over: Any) -> None:
    chk = checkpoint(**over)
    assert chk["objective"] in text
    assert chk["id"] in text
    for action in chk["next_actions"]:
        assert action in text
    for line_start, action in [("- t1 [in_progress 40%] Refunds endpoint", "Port refunds"),
                               ("- t2 [blocked 90%] Invoices endpoint", "Wait for schema answer"),
                               ("- t4 [pending 0%] Webhooks", "Write the webhook router"),
                               ("- t9 [pending 0%]", "Only in the checkpoint")]:
        line = next(ln for ln in text.splitlines() if ln.startswith(line_start))
        assert action in line
    assert "- api: Public API paths must not change" in text
    assert "- py: Python 3.11" in text


# ----------------------------------------------------------------- budget


def test_prompt_budget() -> None:
    assert prompt_budget(128_000) == 2000
    assert prompt_budget(10_000) == 1000
    assert prompt_budget(100) == 64
    assert prompt_budget(0) == 64
    assert prompt_budget(128_000, 300) == 300
    assert prompt_budget(128_000, 10) == 64


# -------------------------------------------------------------- templates


def test_packaged_template_found_in_the_repo_layout(tmp_path: Path) -> None:
    for name in ("start.md", "rehydrate.md"):
        expected = (REPO_TEMPLATES / name).read_text(encoding="utf-8")
        assert load_template(name, None) == expected
        # A memory dir without overrides falls through to the packaged copy.
        assert load_template(name, tmp_path) == expected


def test_user_override_is_used(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "start.md").write_text("GO: $objective\n$pinned_facts\n")
    assert load_template("start.md", tmp_path) == "GO: $objective\n$pinned_facts\n"
    p = first_prompt(objective="win", facts=FACTS, count=quarter, budget=500,
                     memory_dir=tmp_path, session="s1")
    assert p.text.startswith("GO: win\n## Pinned facts")


def test_symlinked_override_is_ignored(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.md"
    secret.write_text("SECRET $objective $pinned_facts")
    tdir = tmp_path / "mem" / "templates"
    tdir.mkdir(parents=True)
    (tdir / "start.md").symlink_to(secret)
    assert load_template("start.md", tmp_path / "mem") == (REPO_TEMPLATES / "start.md").read_text()


def test_symlinked_templates_folder_is_ignored(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "start.md").write_text("SECRET $objective $pinned_facts")
    (tmp_path / "mem").mkdir()
    (tmp_path / "mem" / "templates").symlink_to(real, target_is_directory=True)
    assert "SECRET" not in load_template("start.md", tmp_path / "mem")


def test_directory_named_like_a_template_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "templates" / "start.md").mkdir(parents=True)
    assert load_template("start.md", tmp_path) == (REPO_TEMPLATES / "start.md").read_text()


def test_templates_path_that_is_a_file_means_no_override(tmp_path: Path) -> None:
    (tmp_path / "templates").write_text("not a folder")
    assert load_template("start.md", tmp_path) == (REPO_TEMPLATES / "start.md").read_text()


def test_unreadable_override_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    bad = tmp_path / "templates" / "start.md"
    bad.write_bytes(b"\xff\xfe not utf-8 $objective")
    with pytest.raises(TemplateError, match=r"start\.md is not UTF-8"):
        load_template("start.md", tmp_path)
    bad.write_bytes(b"x" * (256 * 1024 + 1))
    with pytest.raises(TemplateError, match="larger than"):
        load_template("start.md", tmp_path)


@pytest.mark.parametrize("name", ["../start.md", "a/b.md", "", ".hidden", "x..md", "nul\0"])
def test_bad_template_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="bad template name"):
        load_template(name, tmp_path)


def test_unknown_template_lists_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        load_template("nope.md", tmp_path)
    msg = str(info.value)
    assert "'nope.md' not found" in msg
    assert str(tmp_path / "templates" / "nope.md") in msg
    assert isinstance(info.value, AetherError)


# ----------------------------------------------------------------- render


def test_render_substitutes_and_escapes() -> None:
    assert render("$a and ${b}, $$5", {"a": "x", "b": "y"}) == "x and y, $5"


def test_render_lists_every_unknown_variable_in_one_error() -> None:
    with pytest.raises(TemplateError) as info:
        render("$objective $foo ${bar}\n$baz", {"objective": "o"}, name="mine.md")
    msg = str(info.value)
    assert msg.startswith("mine.md: ")
    assert "unknown variables $foo, $bar, $baz" in msg
    assert "(known: objective)" in msg


def test_render_reports_invalid_placeholders_missing_required_and_non_text() -> None:
    with pytest.raises(TemplateError) as info:
        render("ok\ncost $5 and $x", {"x": 3, "y": "v"},  # type: ignore[dict-item]
               required=("objective", "y"))
    msg = str(info.value)
    assert "invalid placeholder ($ not followed by a name) at line 2, column 6" in msg
    assert "values are not text: $x" in msg
    assert "template must use $objective, $y" in msg


def test_render_drops_lines_of_empty_variables_with_one_blank() -> None:
    tpl = "A\n\n$one\n\n  ${two}  \n\n$three\n\nEnd $one"
    out = render(tpl, {"one": "", "two": "", "three": "3"})
    assert out == "A\n\n3\n\nEnd "


# ---------------------------------------------------------------- prompts


def test_rehydrate_prompt_contains_every_section() -> None:
    p = prompt()
    text = p.text
    assert p.evicted == []
    assert p.tokens == quarter(text)
    assert_mandatory(text)
    assert text.startswith("# Resuming: episode 4\n")
    assert "1. Run `pytest tests/api -k invoices` and fix failures" in text
    for section in ("## Progress so far", "## Unresolved errors (first lines verbatim)", "## Known facts",
                    "## Constraints from the user", "## Decisions made", "## Files",
                    "## Last tool calls", "## Finished tasks", "## How to resume"):
        assert section in text
    assert "- interrupted: write_file {\"path\":\"src/billing/refunds.py\"}" in text
    assert "- t3 Customers" in text
    assert "Modified: src/billing/changed_module_0.py" in text
    assert STANDARD_RESUME in text
    # Unfinished tasks: in_progress, then pending, then blocked.
    order = [text.index(f"- {t} [") for t in ("t1", "t4", "t9", "t2")]
    assert order == sorted(order)
    # Done tasks are not listed as unfinished.
    assert "- t3 [" not in text


def test_agent_resume_instructions_are_used() -> None:
    p = prompt(resume_instructions="Start by re-running the failing test.")
    assert "## How to resume\nStart by re-running the failing test." in p.text
    assert STANDARD_RESUME not in p.text


def test_rehydrate_prompt_is_deterministic() -> None:
    for budget in (5000, 400, 64):
        a, b = prompt(budget), prompt(budget)
        assert a.text.encode() == b.text.encode()
        assert a.evicted == b.evicted


def test_tiny_budget_keeps_every_mandatory_item() -> None:
    p = prompt(budget=64)
    assert_mandatory(p.text)
    assert p.budget == 64
    assert p.tokens > 64
    assert p.evicted[-1].startswith("over budget:")
    # The last three progress items survive; older ones are gone.
    assert "step 9 finished" in p.text and "step 7 finished" in p.text
    assert "step 6 finished" not in p.text
    for gone in ("## Files", "## Known facts", "## Unresolved errors", "## Last tool calls",
                 "## Finished tasks", "## Decisions made", "## Constraints", "interrupted:"):
        assert gone not in p.text


def test_eviction_order() -> None:
    p = prompt(budget=64)
    kinds = [e.split(":")[0] for e in p.evicted]
    # Raw tool-call lines first; interrupted calls, errors and files written last.
    assert kinds == [
        "recent_calls", "files_read", "fact", "fact", "fact", "decisions", "progress",
        "done_tasks", "decisions", "constraints", "files_written", "errors", "constraints",
        "files_written", "errors", "interrupted_calls", "over budget",
    ]
    assert p.evicted[:10] == [
        "recent_calls:8", "files_read:6",
        # lowest priority first, then oldest updated_seq
        "fact:style", "fact:lint", "fact:db",
        "decisions:3 oldest", "progress:7 oldest", "done_tasks:2", "decisions:3 latest",
        "constraints:3 oldest",
    ]


def test_eviction_stops_as_soon_as_it_fits() -> None:
    full = prompt()
    p = prompt(budget=full.tokens - 2)
    assert p.tokens <= p.budget
    assert p.evicted == ["recent_calls:1"]
    assert 'pytest -k case_0"' not in p.text
    assert 'pytest -k case_1"' in p.text
    assert "## Known facts" in p.text

    without_calls = prompt(
        state={**checkpoint()["state"], "files_read": [], "recent_tool_calls": []}
    )
    p = prompt(budget=without_calls.tokens - 2)
    assert p.evicted[:3] == ["recent_calls:8", "files_read:6", "fact:style"]
    assert "- db: Postgres 15" in p.text and "- lint: ruff" in p.text


def test_overlong_mandatory_items_are_truncated_never_dropped() -> None:
    long_action = "Refactor " + "the invoice totals module carefully " * 40
    actions = ["short action stays verbatim", long_action]
    p = prompt(budget=64, next_actions=actions)
    assert "short action stays verbatim" in p.text
    assert long_action not in p.text
    assert long_action[:99] + "…" in p.text
    assert any(e.startswith("truncated:") and e.endswith("items to 100 chars")
               for e in p.evicted)
    assert_mandatory(p.text.replace(long_action[:99] + "…", long_action), next_actions=actions)


def test_odd_checkpoint_data_does_not_raise() -> None:
    p = rehydrate_prompt(
        checkpoint={"state": "x", "progress": [1, "ok"], "next_actions": "n", "tasks": [5, {}]},
        tasks=[{"id": "a", "status": "pending", "progress": "half", "title": None}, "junk"],
        facts=[{"key": 3}, "x", {"key": "k", "text": None, "pinned": True}],
        episode=2, count=quarter, budget=500, memory_dir=None,
    )
    assert "(no objective recorded)" in p.text
    assert "- a [pending 0%]" in p.text
    assert "- k: " in p.text


def test_override_missing_required_variables_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "rehydrate.md").write_text("Only $objective and $oops and $oops2\n")
    with pytest.raises(TemplateError) as info:
        prompt(memory_dir=tmp_path)
    msg = str(info.value)
    assert "unknown variables $oops, $oops2" in msg
    assert "template must use $checkpoint, $next_actions, $tasks, $pinned_facts, $progress" in msg


def test_rehydrate_override_is_used(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    custom = "RESUME $checkpoint\n$objective\n$next_actions\n$tasks\n$pinned_facts\n$progress\n"
    (tmp_path / "templates" / "rehydrate.md").write_text(custom)
    p = prompt(memory_dir=tmp_path)
    assert p.text.startswith("RESUME chk_000007_1a2b3c4d\n")
    assert "## Known facts" not in p.text


def test_first_prompt() -> None:
    p = first_prompt(objective="Build the thing", facts=FACTS, count=quarter, budget=2000,
                     memory_dir=None, session="sess-1")
    assert p.text.startswith("# Objective\nBuild the thing\n")
    assert "aether (session sess-1)" in p.text
    assert "- api: Public API paths must not change" in p.text
    assert "- db: Postgres 15 via SQLAlchemy 2" in p.text
    assert "checkpoint_request" in p.text and '"type":"task"' in p.text
    assert p.evicted == []
    small = first_prompt(objective="Build the thing", facts=FACTS, count=quarter, budget=64,
                         memory_dir=None, session="sess-1")
    assert small.evicted[:3] == ["fact:style", "fact:lint", "fact:db"]
    assert "Build the thing" in small.text and "- py: Python 3.11" in small.text
    assert small.text == first_prompt(objective="Build the thing", facts=FACTS, count=quarter,
                                      budget=64, memory_dir=None, session="sess-1").text


def _typical() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    tasks = [
        {"id": f"task_{i}", "title": f"Port the {name} endpoint", "status": status,
         "progress": 0.2 * i, "next_action": f"Write tests for the {name} handler, then port it",
         "notes": "", "files": []}
        for i, (name, status) in enumerate([("refunds", "in_progress"), ("invoices", "pending"),
                                             ("customers", "done"), ("webhooks", "blocked"),
                                             ("reports", "pending")])
    ]
    facts = [{"key": f"fact_{i}", "text": f"The project uses tool number {i} for its builds",
              "pinned": i < 2, "priority": i, "added_seq": 1, "updated_seq": i} for i in range(5)]
    chk = checkpoint(
        progress=[f"Ported module {i} and its tests pass" for i in range(10)],
        errors=["AssertionError: expected 200, got 404 in test_refund_create"],
        tasks=[{"id": t["id"], "status": t["status"], "next_action": t["next_action"]}
               for t in tasks],
        state={"files_modified": ["src/billing/refunds.py", "tests/test_refunds.py"],
               "files_read": ["src/billing/app.py"], "decisions": ["Decision: keep Pydantic v2"],
               "constraints": ["Do not change public API paths"],
               "interrupted_calls": [], "recent_tool_calls": ['bash {"command":"pytest -q"}']},
    )
    return chk, tasks, facts


@pytest.mark.parametrize("counter", ["estimate", "tokens"])
def test_typical_prompt_is_small(counter: str, tmp_path: Path) -> None:
    if counter == "tokens":
        if importlib.util.find_spec("aether_cli.tokens") is None:
            pytest.skip("aether_cli.tokens not written yet")
        from aether_cli.tokens import load_counter

        count = load_counter().count
    else:
        count = quarter
    chk, tasks, facts = _typical()
    p = rehydrate_prompt(checkpoint=chk, tasks=tasks, facts=facts, episode=5, count=count,
                         budget=2000, memory_dir=tmp_path)
    assert p.evicted == []
    assert p.tokens < 700, p.tokens


def test_fifo_override_is_ignored_without_blocking(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    os.mkfifo(tmp_path / "templates" / "start.md")
    assert load_template("start.md", tmp_path) == (REPO_TEMPLATES / "start.md").read_text()
