"""The prompt an agent starts from: the first one, and the one that rehydrates it after a reset.

A relaunched agent knows only what this prompt tells it, and the prompt spends
the context the relaunch was meant to free, so it has a hard token budget.
This module renders Markdown templates (user-overridable in
`.memory/templates/`) and fits them to that budget by evicting optional
material in a fixed order, recording what it dropped. What the contract says a
rehydrated prompt always carries (objective, next actions verbatim, every
unfinished task with its next action, every pinned fact, the checkpoint id,
the latest progress) is never dropped: at worst over-long items are shortened.
Pure logic: it reads templates and nothing else, and the same inputs give the
same bytes.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aether_cli
from aether_cli import constants as C
from aether_cli.errors import AetherError

log = logging.getLogger(__name__)

Counter = Callable[[str], int]

MIN_BUDGET = 64
MAX_TEMPLATE_BYTES = 256 * 1024
ELLIPSIS = "…"
# Character limits tried, in order, on mandatory items once all optional
# material is gone; an item at or under the last one is never shortened.
TRUNCATE_LADDER = (400, 200, 100)

START_REQUIRED = ("objective", "pinned_facts")
REHYDRATE_REQUIRED = (
    "objective", "checkpoint", "next_actions", "tasks", "pinned_facts", "progress",
)

STANDARD_RESUME = (
    "Continue from the next actions; do not redo finished work. Check what an interrupted "
    "call did before trusting it, and redo it if needed. Keep sending task updates."
)

_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_LONE_VARIABLE = re.compile(r"^\s*\$(?:([_a-zA-Z][_a-zA-Z0-9]*)|\{([_a-zA-Z][_a-zA-Z0-9]*)\})\s*$")
_UNFINISHED_ORDER = ("in_progress", "pending", "blocked")


class TemplateError(AetherError):
    """A prompt template cannot be loaded or rendered; the message names every problem at once."""


# ----------------------------------------------------------------- budget


def prompt_budget(window: int, override: int | None = None) -> int:
    """Tokens a relaunch prompt may use: `override`, else min(2000, 10% of window); at least 64."""
    if override is not None:
        return max(MIN_BUDGET, int(override))
    share = int(window * C.DEFAULT_PROMPT_BUDGET_SHARE)
    return max(MIN_BUDGET, min(C.DEFAULT_PROMPT_BUDGET_CAP, share))


# -------------------------------------------------------------- templates


def _read_override(path: Path) -> str | None:
    """The text of a user's template override, or None if there is none to use.

    A symlink (the folder or the file) is ignored: a cloned repository must
    not be able to point aether's prompt at a file elsewhere on the machine.
    """
    folder = path.parent
    try:
        folder_mode = folder.lstat().st_mode
        if stat.S_ISLNK(folder_mode):
            log.warning("ignoring %s: the templates folder is a symlink", folder)
            return None
        if not stat.S_ISDIR(folder_mode):
            return None
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        log.warning("ignoring template override %s: not a regular file", path)
        return None
    # O_NOFOLLOW and O_NONBLOCK: if the file was swapped for a symlink or a
    # FIFO since the lstat, the open fails or returns at once instead of
    # following the link or blocking; fstat then checks what was opened.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            log.warning("ignoring template override %s: it is a symlink", path)
            return None
        raise TemplateError(f"cannot read template {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            log.warning("ignoring template override %s: not a regular file", path)
            return None
        data = fh.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"template {path} is larger than {MAX_TEMPLATE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"template {path} is not UTF-8: {exc.reason}") from exc


def load_template(name: str, memory_dir: Path | None) -> str:
    """The text of template `name`: the user's override, else the packaged copy.

    Looks in `<memory_dir>/templates/<name>` (a regular file, never a
    symlink), then in the package data of an installed wheel, then in the
    repository's top-level `templates/` (an editable install).
    """
    if not _TEMPLATE_NAME.match(name) or ".." in name:
        raise TemplateError(f"bad template name {name!r}")
    looked: list[str] = []
    if memory_dir is not None:
        override = Path(memory_dir) / C.TEMPLATES_DIR / name
        looked.append(str(override))
        text = _read_override(override)
        if text is not None:
            return text
    packaged = resources.files("aether_cli").joinpath("templates").joinpath(name)
    looked.append(f"aether_cli/templates/{name} (package data)")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    repo = Path(aether_cli.__file__).resolve().parent.parent / "templates" / name
    looked.append(str(repo))
    if repo.is_file():
        return repo.read_text(encoding="utf-8")
    raise TemplateError(f"template {name!r} not found; looked in: {', '.join(looked)}")


def _where(template: str, index: int) -> str:
    line = template.count("\n", 0, index) + 1
    col = index - (template.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {col}"


def render(
    template: str, values: Mapping[str, str], *, name: str = "template",
    required: tuple[str, ...] = (),
) -> str:
    """Substitute `$name` / `${name}` variables, after validating everything up front.

    One TemplateError lists every problem: unknown variables (used by the
    template, absent from `values`), values that are not strings, invalid
    `$` placeholders, and `required` variables the template does not use.
    A line holding only a variable whose value is empty disappears, with one
    blank line after it, so empty sections leave no gaps. `$$` is a literal `$`.
    """
    tpl = string.Template(template)
    problems: list[str] = []
    invalid = [
        _where(template, m.start())
        for m in tpl.pattern.finditer(template)
        if m.group("invalid") is not None
    ]
    if invalid:
        problems.append("invalid placeholder ($ not followed by a name) at " + "; ".join(invalid))
    used = tpl.get_identifiers()
    unknown = [v for v in used if v not in values or values[v] is None]
    if unknown:
        known = ", ".join(sorted(k for k, v in values.items() if v is not None)) or "none"
        problems.append(
            "unknown variables " + ", ".join(f"${v}" for v in unknown) + f" (known: {known})"
        )
    not_text = [v for v in used if v in values and values[v] is not None
                and not isinstance(values[v], str)]
    if not_text:
        problems.append("values are not text: " + ", ".join(f"${v}" for v in not_text))
    missing = [v for v in required if v not in used]
    if missing:
        problems.append(
            "template must use " + ", ".join(f"${v}" for v in missing)
        )
    if problems:
        raise TemplateError(f"{name}: " + "; ".join(problems))

    out: list[str] = []
    skip_blank = False
    for line in template.split("\n"):
        if skip_blank and not line.strip():
            skip_blank = False
            continue
        skip_blank = False
        m = _LONE_VARIABLE.match(line)
        if m and values[m.group(1) or m.group(2)] == "":
            skip_blank = True
            continue
        out.append(line)
    return string.Template("\n".join(out)).substitute(values)


# ---------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt, its size, its budget and what was dropped or shortened to fit."""

    text: str
    tokens: int
    budget: int
    evicted: list[str] = field(default_factory=list)


@dataclass
class _Pool:
    """Optional items, least valuable first; `dropped` of them are gone, from the front."""

    items: list[str]
    labels: list[str] | None = None  # one label per item when each is reported by name
    display: list[int] | None = None  # indices in the order they are shown, if not `items` order
    dropped: int = 0

    def kept(self) -> list[str]:
        if self.display is None:
            return self.items[self.dropped:]
        return [self.items[i] for i in self.display if i >= self.dropped]


class _Cutter:
    """Shortens mandatory texts to the current limit and counts how many it cut."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.cut = 0

    def __call__(self, text: str) -> str:
        if self.limit is None or len(text) <= self.limit:
            return text
        self.cut += 1
        return text[: self.limit - 1] + ELLIPSIS


Build = Callable[[_Cutter], str]


@dataclass(frozen=True)
class _Step:
    pool: str
    keep: int  # items of the pool this step never drops
    label: str  # what `evicted` says, with {k} the number dropped; facts are named one by one


def _fit(
    build: Build, pools: dict[str, _Pool], steps: list[_Step], count: Counter, budget: int,
) -> Prompt:
    """Drop optional material step by step, then shorten mandatory texts, until it fits."""
    evicted: list[str] = []

    def measure() -> tuple[str, int]:
        text = build(_Cutter(None))
        return text, count(text)

    text, tokens = measure()
    for step in steps:
        if tokens <= budget:
            break
        pool = pools[step.pool]
        start = pool.dropped
        available = len(pool.items) - start - step.keep
        if available <= 0:
            continue

        def fits(k: int, pool: _Pool = pool, start: int = start) -> bool:
            pool.dropped = start + k
            return measure()[1] <= budget

        # Dropping more never makes the text longer, so the smallest k that
        # fits can be found by bisection: few renders even for long lists.
        if fits(available):
            lo, hi = 1, available
            while lo < hi:
                mid = (lo + hi) // 2
                if fits(mid):
                    hi = mid
                else:
                    lo = mid + 1
            k = lo
        else:
            k = available
        pool.dropped = start + k
        text, tokens = measure()
        if pool.labels is not None:
            evicted.extend(pool.labels[start:start + k])
        else:
            evicted.append(step.label.format(k=k))

    if tokens > budget:
        for limit in TRUNCATE_LADDER:
            cutter = _Cutter(limit)
            text = build(cutter)
            tokens = count(text)
            if tokens <= budget or limit == TRUNCATE_LADDER[-1]:
                if cutter.cut:
                    evicted.append(f"truncated:{cutter.cut} items to {limit} chars")
                break
        if tokens > budget:
            evicted.append(f"over budget:{tokens} > {budget} tokens with only mandatory content")
    return Prompt(text=text, tokens=tokens, budget=budget, evicted=evicted)


def _section(title: str, lines: list[str]) -> str:
    return f"## {title}\n" + "\n".join(lines) if lines else ""


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _facts(facts: list[dict]) -> tuple[list[tuple[str, str]], _Pool]:
    """Pinned facts (key, text) in the given order, and a pool of the others.

    The pool's items are in eviction order (lowest priority, then oldest
    `updated_seq`, then key) and are shown in the given order.
    """
    pinned: list[tuple[str, str]] = []
    others: list[dict[str, Any]] = []
    for fact in facts if isinstance(facts, list) else []:
        if not isinstance(fact, dict) or not _str(fact.get("key")):
            continue
        if fact.get("pinned") is True:
            pinned.append((fact["key"], _str(fact.get("text"))))
        else:
            others.append(fact)
    order = sorted(
        range(len(others)),
        key=lambda i: (_int(others[i].get("priority")), _int(others[i].get("updated_seq")),
                       others[i]["key"], i),
    )
    rank = {original: pos for pos, original in enumerate(order)}
    items = [f"- {others[i]['key']}: {_str(others[i].get('text'))}" for i in order]
    labels = [f"fact:{others[i]['key']}" for i in order]
    return pinned, _Pool(items, labels=labels, display=[rank[i] for i in range(len(others))])


def first_prompt(
    *, objective: str, facts: list[dict], count: Counter, budget: int, memory_dir: Path | None,
    session: str,
) -> Prompt:
    """The prompt of a fresh start (template "start.md"), fitted to `budget` tokens.

    Carries the objective, every pinned fact, the other facts as room allows,
    and how to work with aether (task events, checkpoint answers).
    """
    template = load_template("start.md", memory_dir)
    pinned, fact_pool = _facts(facts)
    pools = {"facts": fact_pool}

    def build(cut: _Cutter) -> str:
        return render(template, {
            "objective": cut(objective.strip() or "(no objective given)"),
            "session": session,
            "pinned_facts": _section(
                "Pinned facts (always true)", [f"- {k}: {cut(t)}" for k, t in pinned]
            ),
            "facts": _section("Known facts", fact_pool.kept()),
        }, name="start.md", required=START_REQUIRED)

    return _fit(build, pools, [_Step("facts", 0, "fact:{k}")], count, budget)


def _merge_tasks(tasks: list[dict], checkpoint_tasks: Any) -> list[dict[str, Any]]:
    """Task states by id: the full states given, completed by the checkpoint's rows."""
    merged: dict[str, dict[str, Any]] = {}
    for task in tasks if isinstance(tasks, list) else []:
        if isinstance(task, dict) and _str(task.get("id")):
            merged[task["id"]] = dict(task)
    for row in checkpoint_tasks if isinstance(checkpoint_tasks, list) else []:
        if isinstance(row, dict) and _str(row.get("id")):
            merged[row["id"]] = {**row, **merged.get(row["id"], {})}
    return list(merged.values())


def _percent(task: dict[str, Any]) -> int:
    p = task.get("progress")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or p != p:
        return 0
    return round(min(1.0, max(0.0, float(p))) * 100)


def rehydrate_prompt(
    *, checkpoint: dict, tasks: list[dict], facts: list[dict], episode: int, count: Counter,
    budget: int, memory_dir: Path | None,
) -> Prompt:
    """The relaunch prompt for `episode` from `checkpoint` (template "rehydrate.md").

    Always carries the objective, the checkpoint id, `next_actions` verbatim,
    every unfinished task (id, status, progress %, title, next_action) and
    every pinned fact. Optional material (files, other facts, errors, recent
    calls, constraints, decisions, older progress, finished tasks) is dropped
    in that order until the prompt fits `budget`; then over-long mandatory
    items are shortened with "…". `evicted` records all of it.
    """
    template = load_template("rehydrate.md", memory_dir)
    chk = checkpoint if isinstance(checkpoint, dict) else {}
    raw_state = chk.get("state")
    state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
    objective = _str(chk.get("objective")).strip() or "(no objective recorded)"
    chk_id = _str(chk.get("id")) or "(none)"
    next_actions = _strs(chk.get("next_actions"))
    resume = _str(chk.get("resume_instructions")) or _str(state.get("resume_instructions"))

    all_tasks = _merge_tasks(tasks, chk.get("tasks"))
    rank = {s: i for i, s in enumerate(_UNFINISHED_ORDER)}
    unfinished = sorted(
        (t for t in all_tasks if t.get("status") != "done"),
        key=lambda t: rank.get(_str(t.get("status")), len(rank)),
    )
    done = [t for t in all_tasks if t.get("status") == "done"]
    pinned, fact_pool = _facts(facts)

    pools = {
        "files_read": _Pool(_strs(state.get("files_read"))),
        "files_modified": _Pool(_strs(state.get("files_modified"))),
        "facts": fact_pool,
        "errors": _Pool(_strs(chk.get("errors"))),
        "recent_calls": _Pool(_strs(state.get("recent_tool_calls"))),
        "decisions": _Pool(_strs(state.get("decisions"))),
        "constraints": _Pool(_strs(state.get("constraints"))),
        "progress": _Pool(_strs(chk.get("progress"))),
        "done_tasks": _Pool([
            f"- {t['id']} {_str(t.get('title'))}".rstrip() for t in done
        ]),
        "interrupted": _Pool(
            [f"- interrupted: {c}" for c in _strs(state.get("interrupted_calls"))]
        ),
        "resume": _Pool([resume] if resume.strip() else []),
    }
    steps = [
        _Step("files_read", 0, "files_read:{k}"),
        _Step("files_modified", 0, "files_modified:{k}"),
        _Step("facts", 0, "fact:{k}"),
        _Step("errors", 3, "errors:{k} oldest"),
        _Step("recent_calls", 0, "recent_calls:{k}"),
        _Step("decisions", 3, "decisions:{k} oldest"),
        _Step("constraints", 3, "constraints:{k} oldest"),
        _Step("progress", 3, "progress:{k} oldest"),
        _Step("done_tasks", 0, "done_tasks:{k}"),
        # Still too big: the rest of the optional material goes too.
        _Step("errors", 0, "errors:{k} latest"),
        _Step("decisions", 0, "decisions:{k} latest"),
        _Step("constraints", 0, "constraints:{k} latest"),
        _Step("interrupted", 0, "interrupted_calls:{k}"),
        _Step("resume", 0, "resume_instructions:standard text used"),
    ]

    def task_line(t: dict[str, Any], cut: _Cutter) -> str:
        status = _str(t.get("status")) or "pending"
        title = cut(_str(t.get("title")))
        line = f"- {t['id']} [{status} {_percent(t)}%]" + (f" {title}" if title else "")
        action = _str(t.get("next_action"))
        return line + (f"; next: {cut(action)}" if action else "")

    def build(cut: _Cutter) -> str:
        files = []
        if pools["files_modified"].kept():
            files.append("Modified: " + ", ".join(pools["files_modified"].kept()))
        if pools["files_read"].kept():
            files.append("Read: " + ", ".join(pools["files_read"].kept()))
        kept_resume = pools["resume"].kept()
        return render(template, {
            "objective": cut(objective),
            "checkpoint": chk_id,
            "episode": str(episode),
            "next_actions": _section(
                "Next actions", [f"{i}. {cut(a)}" for i, a in enumerate(next_actions, 1)]
            ),
            "tasks": _section("Unfinished tasks", [task_line(t, cut) for t in unfinished]),
            "pinned_facts": _section(
                "Pinned facts (always true)", [f"- {k}: {cut(v)}" for k, v in pinned]
            ),
            "progress": _section(
                "Progress so far", [f"- {cut(p)}" for p in pools["progress"].kept()]
            ),
            "interrupted": _section(
                "Interrupted tool calls (no result seen)", pools["interrupted"].kept()
            ),
            "errors": _section(
                "Recent errors (verbatim)", [f"- {e}" for e in pools["errors"].kept()]
            ),
            "facts": _section("Known facts", fact_pool.kept()),
            "constraints": _section(
                "Constraints from the user", [f"- {c}" for c in pools["constraints"].kept()]
            ),
            "decisions": _section(
                "Decisions made", [f"- {d}" for d in pools["decisions"].kept()]
            ),
            "files": _section("Files", files),
            "recent_calls": _section(
                "Last tool calls", [f"- {c}" for c in pools["recent_calls"].kept()]
            ),
            "done_tasks": _section("Finished tasks", pools["done_tasks"].kept()),
            "resume": kept_resume[0] if kept_resume else STANDARD_RESUME,
        }, name="rehydrate.md", required=REHYDRATE_REQUIRED)

    return _fit(build, pools, steps, count, budget)
