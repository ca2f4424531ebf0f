"""`aether report`: where one session's tokens went, read from its ledger and checkpoints.

One streaming pass over `runs/<session>.jsonl` (never the whole file in
memory: the context series is thinned by doubling its stride, the open tool
calls and the names of tools and event kinds are capped), then the session's
checkpoints. The figures are plain data (`Report.to_dict()`, the `--json`
output documented in docs/report.md); suggestions and prices live in
`report_advice`, tables in `report_render`, the HTML page in `report_html`.

Every file read here is untrusted (a `.memory/` arrives through git): a
field of the wrong type is ignored, an unreadable line or checkpoint becomes
a line in `problems`, never an exception. It knows nothing of the terminal,
the supervisor or how a run decides anything.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aether_cli import constants as C
from aether_cli.checkpoint import sources_of
from aether_cli.errors import AetherError, NotFoundError, UsageError
from aether_cli.store import MemoryStore
from aether_cli.store.ledger import read_ledger
from aether_cli.tokens import TokenCounter

SCHEMA_VERSION = 1
MAX_POINTS = 2000  # context-usage points kept; past it every other one goes and the stride doubles
MAX_OPEN_CALLS = 4096  # tool calls awaiting their result; the oldest are forgotten first
MAX_NAMES = 100  # distinct tool names or event kinds; the rest are counted as OTHER
MAX_PROBLEMS = 50
OTHER = "(other)"
NAME_CHARS = 60
# The session's settings the report shows (and its suggestions start from).
SETTING_KEYS = ("context_window", "model", "soft_at", "checkpoint_at", "emergency_at", "max_steps")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(value: Any, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) else None


@dataclass
class Tally:
    """Events and tokens of one tool or one event kind."""

    events: int = 0
    tokens: int = 0
    calls: int = 0  # tools only: calls made (their results are `events`)
    call_tokens: int = 0


@dataclass
class EpisodeFigures:
    """One episode: how it started, how full it got, what ended it."""

    episode: int
    started_at: str | None = None
    start: str = "launch"  # "launch" | "rehydrate" (in place)
    from_checkpoint: str | None = None
    prompt_tokens: int = 0
    peak_tokens: int = 0
    end_tokens: int = 0
    events: int = 0
    tool_calls: int = 0
    tokens: int = 0
    ended_by: str | None = None
    exit_code: int | None = None
    checkpoint: str | None = None
    cost_usd: float | None = None  # the agent's own figure (Claude's total_cost_usd), per process
    input_tokens: int = 0  # what the agent reported its requests cost (usage events)
    output_tokens: int = 0


@dataclass
class Series:
    """Context usage over the session, thinned to at most 2 * MAX_POINTS points."""

    points: list[dict[str, Any]] = field(default_factory=list)
    stride: int = 1
    seen: int = 0

    def add(self, point: dict[str, Any]) -> None:
        if self.seen % self.stride == 0:
            self.points.append(point)
            if len(self.points) >= 2 * MAX_POINTS:
                self.points = self.points[::2]
                self.stride *= 2
        self.seen += 1


def seconds_between(start: str | None, ts: str | None) -> float | None:
    """Seconds from `start` to `ts` (both the store's ISO stamps), or None."""
    from datetime import datetime

    if not start or not ts:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((b - a).total_seconds(), 3)


@dataclass
class Report:
    """The figures of one session (see `to_dict` for the --json shape)."""

    session_id: str
    records: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    status: str = "unknown"
    settings: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    model: str | None = None
    window: int | None = None
    episodes: dict[int, EpisodeFigures] = field(default_factory=dict)
    series: Series = field(default_factory=Series)
    markers: list[dict[str, Any]] = field(default_factory=list)
    tools: dict[str, Tally] = field(default_factory=dict)
    kinds: dict[str, Tally] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    continuity: list[dict[str, Any]] = field(default_factory=list)
    handoffs_asked: list[dict[str, Any]] = field(default_factory=list)
    budget_levels: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    recounted: int = 0  # events whose tokens were counted here (an older ledger kept no count)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    @property
    def total_tokens(self) -> int:
        return sum(t.tokens for t in self.kinds.values())


class _Reader:
    """Folds ledger records into a Report, one at a time."""

    def __init__(self, report: Report, counter: TokenCounter | None) -> None:
        self.r = report
        self.counter = counter
        self.open_calls: OrderedDict[str, str] = OrderedDict()
        self.ep: EpisodeFigures | None = None
        self.used = 0

    def episode(self, rec: dict[str, Any]) -> EpisodeFigures:
        n = _int(rec.get("episode")) or 1
        ep = self.r.episodes.get(n)
        if ep is None:
            ep = self.r.episodes[n] = EpisodeFigures(episode=n, started_at=_str(rec.get("ts")))
        self.ep = ep
        return ep

    def take(self, rec: dict[str, Any]) -> None:
        r = self.r
        r.records += 1
        ts = _str(rec.get("ts"))
        if r.started_at is None:
            r.started_at = ts
        r.ended_at = ts or r.ended_at
        kind = rec.get("kind")
        # A fixed table: a record's kind is untrusted text, never an attribute name.
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, rec)

    # ------------------------------------------------------------ the run's own records

    def _on_session(self, rec: dict[str, Any]) -> None:
        settings = rec.get("settings")
        if isinstance(settings, dict):
            self.r.settings = settings
            self.r.model = _str(settings.get("model")) or self.r.model
            self.r.window = _int(settings.get("context_window")) or self.r.window
        self.r.tokenizer = _str(rec.get("tokenizer")) or self.r.tokenizer

    def _on_launch(self, rec: dict[str, Any]) -> None:
        prompt = (_int(rec.get("prompt_tokens")) or 0) + (_int(rec.get("context_overhead")) or 0)
        self._start(rec, "launch", prompt)

    def _start(self, rec: dict[str, Any], how: str, prompt: int) -> None:
        ep = self.episode(rec)
        ep.start, ep.started_at = how, _str(rec.get("ts")) or ep.started_at
        ep.from_checkpoint = _str(rec.get("checkpoint"))
        ep.prompt_tokens = ep.peak_tokens = ep.end_tokens = self.used = prompt
        self.r.markers.append(
            {
                "kind": how,
                "seq": _int(rec.get("seq")),
                "t": self._t(rec),
                "episode": ep.episode,
                "label": f"episode {ep.episode}",
            }
        )
        self._point(rec)

    def _on_command(self, rec: dict[str, Any]) -> None:
        command = rec.get("command")
        if command == "rehydrate":
            # Older ledgers do not say the prompt's size: the count carries on from 0 then.
            self._start(rec, "rehydrate", _int(rec.get("prompt_tokens")) or 0)
        elif command == "budget" and isinstance(level := rec.get("level"), str):
            self.r.budget_levels[level[:20]] = self.r.budget_levels.get(level[:20], 0) + 1

    def _on_usage(self, rec: dict[str, Any]) -> None:
        # Codex's rollout: the agent's own figure replaces the count.
        tokens = _int(rec.get("context_tokens"))
        if tokens is not None:
            self._set_used(rec, tokens)
        window = _int(rec.get("window"))
        if window and window >= 256:
            self.r.window = self.r.window or window

    def _on_exit(self, rec: dict[str, Any]) -> None:
        ep = self.episode(rec)
        ep.exit_code = _int(rec.get("code"))

    def _on_checkpoint(self, rec: dict[str, Any]) -> None:
        ep = self.episode(rec)
        ck = {
            "id": _str(rec.get("id")),
            "episode": ep.episode,
            "trigger": _str(rec.get("trigger"), 40),
            "distiller": _str(rec.get("distiller"), 40),
            "episode_tokens": _int(rec.get("episode_tokens")),
            "checkpoint_tokens": _int(rec.get("tokens")),
            "seq": _int(rec.get("seq")),
            "t": self._t(rec),
        }
        self.r.checkpoints.append(ck)
        ep.ended_by, ep.checkpoint = _str(rec.get("trigger"), 40), _str(rec.get("id"))
        self.r.markers.append(
            {
                "kind": "checkpoint",
                "seq": ck["seq"],
                "t": ck["t"],
                "episode": ep.episode,
                "label": f"{ck['id']} ({ck['trigger']})",
            }
        )

    def _on_continuity(self, rec: dict[str, Any]) -> None:
        self.r.continuity.append(
            {
                "episode": _int(rec.get("episode")),
                "checkpoint": _str(rec.get("checkpoint")),
                "calls": _int(rec.get("calls")) or 0,
                "redone": _int(rec.get("redone")) or 0,
                "followed_next_action": rec.get("followed_next_action")
                if isinstance(rec.get("followed_next_action"), bool)
                else None,
            }
        )

    def _on_handoff(self, rec: dict[str, Any]) -> None:
        self.r.handoffs_asked.append(
            {
                "episode": _int(rec.get("episode")),
                "ok": rec.get("ok") is True,
                "seconds": _num(rec.get("seconds")),
                "tokens": _int(rec.get("tokens")),
            }
        )

    def _on_end(self, rec: dict[str, Any]) -> None:
        self.r.status = _str(rec.get("status"), 40) or self.r.status
        ep = self.episode(rec)
        if ep.ended_by is None:
            ep.ended_by = self.r.status

    # ------------------------------------------------------------ the agent's events

    def _on_event(self, rec: dict[str, Any]) -> None:
        raw = rec.get("event")
        if not isinstance(raw, dict):
            return
        ep = self.ep if self.ep is not None and rec.get("episode") == self.ep.episode else self.episode(rec)
        kind = _name(raw.get("type"), self.r.kinds)
        tokens = _int(rec.get("tokens"))
        if tokens is None:
            tokens = self._count(raw)
        tally = self.r.kinds.setdefault(kind, Tally())
        tally.events += 1
        tally.tokens += tokens
        ep.events += 1
        ep.tokens += tokens
        self._tool(raw, kind, tokens, ep)
        self._agent_figures(raw, kind, ep)
        if kind == "usage" and (ctx := _int(raw.get("context_tokens"))):
            # The model's own figure replaces the count, as in the budget.
            self._set_used(rec, ctx)
        elif tokens:
            self._set_used(rec, self.used + tokens)

    def _tool(self, raw: dict[str, Any], kind: str, tokens: int, ep: EpisodeFigures) -> None:
        call_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        if kind == "tool_call":
            name = _name(raw.get("name"), self.r.tools)
            t = self.r.tools.setdefault(name, Tally())
            t.calls += 1
            t.call_tokens += tokens
            ep.tool_calls += 1
            if call_id is not None:
                self.open_calls[call_id[:200]] = name
                if len(self.open_calls) > MAX_OPEN_CALLS:
                    self.open_calls.popitem(last=False)
        elif kind == "tool_result":
            owner = self.open_calls.pop(call_id[:200], None) if call_id is not None else None
            t = self.r.tools.setdefault(owner or "(unknown)", Tally())
            t.events += 1
            t.tokens += tokens

    def _agent_figures(self, raw: dict[str, Any], kind: str, ep: EpisodeFigures) -> None:
        """What the agent said about itself: its model, window, cost and billed tokens."""
        if kind in ("hello", "stream_started"):
            self.r.model = self.r.model or _str(raw.get("model"), 80)
            window = _int(raw.get("context_window"))
            if window and window >= 256 and not self.r.window:
                self.r.window = window
        elif kind == "outcome" and (cost := _num(raw.get("total_cost_usd"))) is not None and cost >= 0:
            # Claude's figure covers its whole process so far: the episode's is its largest.
            ep.cost_usd = max(ep.cost_usd or 0.0, cost)
        elif kind == "usage":
            ep.input_tokens += max(0, _int(raw.get("input_tokens")) or 0)
            ep.output_tokens += max(0, _int(raw.get("output_tokens")) or 0)

    def _count(self, raw: dict[str, Any]) -> int:
        """Tokens of an event an older ledger recorded without its count."""
        from aether_cli import protocol as P

        text = P.counted_text(P.decode_obj(raw, ""))
        if not text:
            return 0
        if self.counter is None:
            from aether_cli.tokens import load_counter

            self.counter = load_counter()
        self.r.recounted += 1
        return self.counter.count(text)

    # ------------------------------------------------------------ the context series

    def _t(self, rec: dict[str, Any]) -> float | None:
        return seconds_between(self.r.started_at, _str(rec.get("ts")))

    def _set_used(self, rec: dict[str, Any], used: int) -> None:
        self.used = used
        ep = self.ep if self.ep is not None else self.episode(rec)
        ep.peak_tokens = max(ep.peak_tokens, used)
        ep.end_tokens = used
        self._point(rec)

    def _point(self, rec: dict[str, Any]) -> None:
        episode = self.ep.episode if self.ep is not None else 1
        self.r.series.add(
            {"seq": _int(rec.get("seq")), "t": self._t(rec), "episode": episode, "tokens": self.used}
        )


_HANDLERS: dict[str, Any] = {
    "session": _Reader._on_session,
    "launch": _Reader._on_launch,
    "command": _Reader._on_command,
    "usage": _Reader._on_usage,
    "exit": _Reader._on_exit,
    "checkpoint": _Reader._on_checkpoint,
    "continuity": _Reader._on_continuity,
    "handoff": _Reader._on_handoff,
    "end": _Reader._on_end,
    "event": _Reader._on_event,
}


def _name(value: Any, seen: dict[str, Tally]) -> str:
    """A tool's or an event kind's name as a table key: a short string, at most MAX_NAMES of them."""
    name = value[:NAME_CHARS] if isinstance(value, str) and value.strip() else "(none)"
    if name not in seen and len(seen) >= MAX_NAMES:
        return OTHER
    return name


# ------------------------------------------------------------------ entry points


def session_ids(store: MemoryStore) -> list[str]:
    """The sessions with a ledger under runs/, oldest first (their ids sort by start time)."""
    runs = store.root / C.RUNS_DIR
    if not runs.is_dir():
        return []
    return sorted(p.stem for p in runs.glob("ses_*.jsonl") if p.is_file() and not p.is_symlink())


def pick_session(store: MemoryStore, ref: str | None) -> str:
    """The session `ref` names (an id or a unique prefix), or the latest one."""
    if not store.exists():
        raise NotFoundError(f"no .memory folder at {store.root}: run `aether run` first")
    known = session_ids(store)
    if not known:
        raise NotFoundError(f"no session ledger under {store.root / C.RUNS_DIR}: nothing to report yet")
    if ref is None:
        cont = store.read_continuity() or {}
        current = cont.get("session_id")
        return current if isinstance(current, str) and current in known else known[-1]
    if ref in known:
        return ref
    matches = [s for s in known if s.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"session {ref!r} is ambiguous: {', '.join(matches[:5])}")
    raise NotFoundError(f"no session {ref!r} under {store.root / C.RUNS_DIR} (latest: {known[-1]})")


def build(store: MemoryStore, session_id: str, counter: TokenCounter | None = None) -> Report:
    """The figures of `session_id` from its ledger (streamed) and its checkpoints."""
    report = Report(session_id=session_id)
    reader = _Reader(report, counter)
    problems: list[str] = []
    path = store.ledger_path(session_id)
    for rec in read_ledger(path, problems):
        reader.take(rec)
        if problems:
            for p in problems:
                report.problem(p)
            problems.clear()
    if report.status == "unknown" and report.records:
        report.status = "running or killed (no end record)"
    _read_checkpoints(store, report)
    return report


def _read_checkpoints(store: MemoryStore, report: Report) -> None:
    """Add each checkpoint file's sources and handoff cost to the ledger's checkpoint rows."""
    for row in report.checkpoints:
        if row["id"] is None:
            continue
        try:
            ck = store.read_checkpoint(row["id"])
        except AetherError as exc:
            row.update(sources=None, handoff_seconds=None, handoff_tokens=None, compression=None)
            report.problem(f"checkpoint {row['id']}: {exc}")
            continue
        found = ck.get("metrics")
        metrics: dict[str, Any] = found if isinstance(found, dict) else {}
        row["sources"] = sources_of(ck)
        row["handoff_seconds"] = _num(metrics.get("handoff_seconds"))
        row["handoff_tokens"] = _int(metrics.get("handoff_tokens"))
        # The file is the record that counts; the ledger's line agrees unless someone edited one.
        row["episode_tokens"] = _int(metrics.get("episode_tokens"))
        row["checkpoint_tokens"] = _int(metrics.get("checkpoint_tokens"))
    for row in report.checkpoints:
        et, ct = row.get("episode_tokens"), row.get("checkpoint_tokens")
        row.setdefault("sources", None)
        row.setdefault("handoff_seconds", None)
        row.setdefault("handoff_tokens", None)
        row["compression"] = round(et / ct, 2) if et and ct else None


# ------------------------------------------------------------------ the --json shape


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def to_dict(report: Report) -> dict[str, Any]:
    """The figures as plain data: the stable `--json` fields (docs/report.md), bar money and advice."""
    r = report
    total = r.total_tokens
    episodes = [vars(ep).copy() for ep in sorted(r.episodes.values(), key=lambda e: e.episode)]
    by_tool: list[dict[str, Any]] = sorted(
        (
            {
                "tool": name,
                "calls": t.calls,
                "results": t.events,
                "result_tokens": t.tokens,
                "call_tokens": t.call_tokens,
                "tokens": t.tokens + t.call_tokens,
                "average_result_tokens": round(t.tokens / t.events) if t.events else 0,
                "share": _share(t.tokens, total),  # of the results: what a cap would cut
            }
            for name, t in r.tools.items()
        ),
        key=lambda row: (-row["tokens"], row["tool"]),
    )
    by_kind: list[dict[str, Any]] = sorted(
        (
            {
                "kind": name,
                "events": t.events,
                "tokens": t.tokens,
                "average_tokens": round(t.tokens / t.events) if t.events else 0,
                "share": _share(t.tokens, total),
            }
            for name, t in r.kinds.items()
        ),
        key=lambda row: (-row["tokens"], row["kind"]),
    )
    ratios = [c["compression"] for c in r.checkpoints if c.get("compression")]
    calls = sum(c["calls"] for c in r.continuity)
    redone = sum(c["redone"] for c in r.continuity)
    judged = [c for c in r.continuity if c["followed_next_action"] is not None]
    sources: dict[str, int] = {}
    for c in r.checkpoints:
        for s in c.get("sources") or []:
            sources[s] = sources.get(s, 0) + 1
    h_seconds = [c["handoff_seconds"] for c in r.checkpoints if c.get("handoff_seconds") is not None]
    h_tokens = [c["handoff_tokens"] for c in r.checkpoints if c.get("handoff_tokens") is not None]
    ended: dict[str, int] = {}
    for ep in episodes:
        key = ep["ended_by"] or "unknown"
        ended[key] = ended.get(key, 0) + 1
    return {
        "schema": SCHEMA_VERSION,
        "session_id": r.session_id,
        "status": r.status,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "duration_seconds": seconds_between(r.started_at, r.ended_at),
        "records": r.records,
        "model": r.model,
        "window": r.window,
        "tokenizer": r.tokenizer,
        "settings": {k: r.settings.get(k) for k in SETTING_KEYS},
        "totals": {
            "episodes": len(episodes),
            "relaunches": sum(1 for e in episodes[1:] if e["start"] == "launch"),
            "rehydrates": sum(1 for e in episodes if e["start"] == "rehydrate"),
            "events": sum(t.events for t in r.kinds.values()),
            "tokens": total,
            "tool_calls": sum(t.calls for t in r.tools.values()),
            "checkpoints": len(r.checkpoints),
            "recounted_events": r.recounted,
        },
        "ended_by": dict(sorted(ended.items())),
        "budget_levels": dict(sorted(r.budget_levels.items())),
        "episodes": episodes,
        "context": {
            "window": r.window,
            "stride": r.series.stride,
            "points": r.series.points,
            "markers": r.markers,
        },
        "by_tool": by_tool,
        "by_kind": by_kind,
        "checkpoints": r.checkpoints,
        "compression": {
            "mean": round(sum(ratios) / len(ratios), 2) if ratios else None,
            "min": min(ratios) if ratios else None,
            "max": max(ratios) if ratios else None,
        },
        "redo": {
            "relaunches": len(r.continuity),
            "calls": calls,
            "redone": redone,
            "rate": _share(redone, calls),
            "followed_next_action": sum(1 for c in judged if c["followed_next_action"]),
            "judged": len(judged),
            "per_relaunch": r.continuity,
        },
        "handoff": {
            "sources": dict(sorted(sources.items())),
            "asked": len(r.handoffs_asked),
            "answered": sum(1 for h in r.handoffs_asked if h["ok"]),
            "seconds": round(sum(h_seconds), 3) if h_seconds else None,
            "tokens": sum(h_tokens) if h_tokens else None,
        },
        "problems": r.problems,
    }
