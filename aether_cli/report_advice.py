"""What a session's figures suggest, what it cost, and writing the learned settings to config.toml.

- `money`: the agent's own figure (Claude's `total_cost_usd`, summed over the
  episodes' processes) when it reported one; else the tokens it reported
  billed at the price table (`data/prices.toml`, dated, overridden by a
  `[prices]` table in config.toml); else no figure and why.
- `suggestions`: each with the numbers behind it; those that name a setting
  aether knows (`soft_at`, `checkpoint_at`, ...) can be applied.
- `apply`: update those keys in config.toml's `[run]` table (or its top level
  when it has no `[run]`, as `settings.read_config` reads it), line by line:
  every other line, comment and table is kept as it was; the result is
  checked as TOML and as settings before it replaces the file atomically.

It knows nothing of the terminal or of how the figures were gathered.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from aether_cli import constants as C
from aether_cli.errors import UsageError

# A tool whose results take this share of all tokens (over at least MIN_RESULTS results) is capped.
DOMINANT_SHARE = 0.30
MIN_RESULTS = 5
REDO_WARN = 0.10
LOW_COMPRESSION = 2.0
SOFT_FLOOR = 0.30


def _toml(text: str, source: str) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None


def load_prices(config: Path | None) -> dict[str, Any]:
    """The price table: {"date", "models": {prefix: {"input", "output"}}, "overridden": [prefixes]}."""
    shipped = _toml(resources.files("aether_cli").joinpath("data/prices.toml").read_text("utf-8"), "prices")
    models = {k: v for k, v in shipped.get("models", {}).items() if _price_ok(v)}
    overridden: list[str] = []
    if config is not None and config.is_file():
        table = _toml(config.read_text("utf-8"), str(config)).get("prices")
        if isinstance(table, dict):
            for prefix, price in table.items():
                if not _price_ok(price):
                    raise UsageError(
                        f"{config}: [prices] {prefix!r} needs input and output, dollars per "
                        "million tokens, e.g. {{ input = 3.0, output = 15.0 }}"
                    )
                models[prefix] = {"input": float(price["input"]), "output": float(price["output"])}
                overridden.append(prefix)
    return {"date": str(shipped.get("date", "")), "models": models, "overridden": overridden}


def _price_ok(price: Any) -> bool:
    return isinstance(price, dict) and all(
        isinstance(price.get(k), int | float) and not isinstance(price.get(k), bool) and price[k] >= 0
        for k in ("input", "output")
    )


def price_for(model: str | None, prices: dict[str, Any]) -> tuple[str, dict[str, float]] | None:
    """(the prefix, its price) for a model name: the longest prefix that matches."""
    if not model:
        return None
    name = model.lower()
    hits = [p for p in prices["models"] if name.startswith(p.lower())]
    if not hits:
        return None
    best = max(hits, key=len)
    return best, prices["models"][best]


def money(data: dict[str, Any], prices: dict[str, Any]) -> dict[str, Any]:
    """What the session cost, and where the figure comes from."""
    episodes = data["episodes"]
    reported = [e["cost_usd"] for e in episodes if e.get("cost_usd") is not None]
    tokens_in = sum(e.get("input_tokens", 0) for e in episodes)
    tokens_out = sum(e.get("output_tokens", 0) for e in episodes)
    out: dict[str, Any] = {
        "usd": None,
        "source": None,
        "model": data.get("model"),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "prices_date": None,
        "price": None,
        "note": "",
    }
    if reported:
        out.update(
            usd=round(sum(reported), 6),
            source="agent",
            note=f"the agent's own figure (total_cost_usd) for {len(reported)} episode(s)",
        )
        return out
    if not tokens_in and not tokens_out:
        out["note"] = "the agent reported neither a cost nor its billed tokens"
        return out
    hit = price_for(data.get("model"), prices)
    if hit is None:
        out["note"] = (
            f"no price for model {data.get('model')!r}: add it under [prices] in "
            f"{C.MEMORY_DIRNAME}/{C.CONFIG_FILE}"
        )
        return out
    prefix, price = hit
    usd = (tokens_in * price["input"] + tokens_out * price["output"]) / 1_000_000
    dated = "config.toml" if prefix in prices["overridden"] else f"the price table of {prices['date']}"
    out.update(
        usd=round(usd, 6),
        source="price_table",
        price={"model": prefix, **price},
        prices_date=None if prefix in prices["overridden"] else prices["date"],
        note=f"an estimate: the reported tokens at {dated} list prices, cache discounts not applied",
    )
    return out


# ------------------------------------------------------------------ suggestions


def _pct(x: float) -> str:
    return f"{x:.0%}"


def suggestions(data: dict[str, Any]) -> list[dict[str, Any]]:
    """What the figures suggest, each with its numbers and, if it is a setting, the value to apply."""
    settings = data.get("settings") or {}
    soft = _fraction(settings.get("soft_at"), C.DEFAULT_SOFT_AT)
    ckpt = _fraction(settings.get("checkpoint_at"), C.DEFAULT_CHECKPOINT_AT)
    emergency = _fraction(settings.get("emergency_at"), C.DEFAULT_EMERGENCY_AT)
    out: list[dict[str, Any]] = []
    total = data["totals"]["tokens"]
    for row in data["by_tool"][:1]:
        share = row["result_tokens"] / total if total else 0.0
        if share >= DOMINANT_SHARE and row["results"] >= MIN_RESULTS:
            out.append(
                _advice(
                    "cap_tool_output",
                    f"{row['tool']} results average {row['average_result_tokens']:,} tokens, "
                    f"{_pct(share)} of all: cap that tool's output (read ranges, head/tail, a "
                    f"line limit); halving it saves about {row['result_tokens'] // 2:,} tokens over "
                    f"this session{_relaunches(data, row['result_tokens'] // 2, ckpt)}",
                )
            )
    episodes = data["episodes"]
    ended = [e for e in episodes if e.get("ended_by")]
    emergencies = [e for e in ended if e["ended_by"] == "emergency"]
    if emergencies:
        new_soft = round(max(SOFT_FLOOR, min(soft - 0.10, ckpt)), 2)
        if new_soft < soft:
            out.append(
                _advice(
                    "lower_soft_at",
                    f"{len(emergencies)} of {len(ended)} episodes ended in an emergency checkpoint: lower "
                    f"the soft threshold from {_pct(soft)} to {_pct(new_soft)} so the agent is warned sooner",
                    {"soft_at": new_soft},
                )
            )
    window = data.get("window") or 0
    if window:
        limit = int(window * ckpt)
        over = max((e["peak_tokens"] - limit for e in episodes), default=0)
        if over > 0 and (limit + over) / window >= (ckpt + emergency) / 2:
            new_ckpt = round(max(soft, ckpt - over / window), 2)
            if new_ckpt < ckpt:
                out.append(
                    _advice(
                        "lower_checkpoint_at",
                        f"an episode overshot the checkpoint line by {over:,} tokens (peak "
                        f"{_pct((limit + over) / window)} of the window, emergency at {_pct(emergency)}): "
                        f"checkpoint at {_pct(new_ckpt)} instead of {_pct(ckpt)}",
                        {"checkpoint_at": new_ckpt},
                    )
                )
    redo = data["redo"]
    if redo["calls"] and redo["rate"] >= REDO_WARN:
        out.append(
            _advice(
                "handoff_loses_steps",
                f"{redo['redone']} of {redo['calls']} tool calls after a relaunch redid earlier work "
                f"({_pct(redo['rate'])}): the handoff loses steps; try --handoff agent or --distill-command",
            )
        )
    mean = data["compression"]["mean"]
    if mean is not None and mean < LOW_COMPRESSION:
        out.append(
            _advice(
                "low_compression",
                f"checkpoints compress episodes only {mean}x on average: a larger --prompt-budget "
                "buys little; see which fields grow with `aether show`",
            )
        )
    return out


def _relaunches(data: dict[str, Any], saved: int, ckpt: float) -> str:
    """ ", about N relaunches fewer" for `saved` tokens, when the window says what an episode holds."""
    window, episodes = data.get("window") or 0, data["episodes"]
    if not window or not episodes:
        return ""
    prompt = sum(e["prompt_tokens"] for e in episodes) / len(episodes)
    room = int(window * ckpt - prompt)
    fewer = saved // room if room > 0 else 0
    return f", about {fewer} relaunch{'es' if fewer != 1 else ''} fewer" if fewer else ""


def _fraction(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _advice(sid: str, text: str, setting: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": sid, "text": text, "settings": setting or {}}


# ------------------------------------------------------------------ --apply


_TABLE = re.compile(r"^\s*\[")
_RUN = re.compile(r"^\s*\[\s*run\s*\]\s*(#.*)?$")


def learned(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings the suggestions would write (later ones win)."""
    from aether_cli.settings import Settings

    known = set(Settings.__dataclass_fields__)
    merged: dict[str, Any] = {}
    for item in items:
        merged.update({k: v for k, v in item["settings"].items() if k in known})
    return merged


def apply(path: Path, changes: dict[str, Any]) -> list[str]:
    """Write `changes` into config.toml at `path`; the lines written. Other lines stay as they are."""
    from aether_cli.store.files import atomic_write

    if not changes:
        return []
    old = path.read_text("utf-8") if path.is_file() else ""
    _toml(old, str(path))
    lines = old.splitlines()
    written = [f"{key} = {_value(value)}" for key, value in changes.items()]
    run = next((i for i, line in enumerate(lines) if _RUN.match(line)), None)
    if run is None and not _has_top_keys(lines):
        # No settings yet: a [run] table of our own at the end, after anything the user wrote.
        lines = [*lines, *([""] if lines else []), "[run]", *written]
    else:
        start = 0 if run is None else run + 1
        end = next((i for i in range(start, len(lines)) if _TABLE.match(lines[i])), len(lines))
        for key, line in zip(changes, written, strict=True):
            pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
            at = next((i for i in range(start, end) if pattern.match(lines[i])), None)
            if at is not None:
                lines[at] = line
                continue
            last = max((i for i in range(start, end) if lines[i].strip()), default=start - 1)
            lines.insert(last + 1, line)
            end += 1
    text = "\n".join(lines) + "\n"
    _check_settings(text, path)
    atomic_write(path, text.encode("utf-8"))
    return written


def _check_settings(text: str, path: Path) -> None:
    """Refuse a config.toml that would not load (bad TOML, a threshold out of order)."""
    from aether_cli.settings import Settings, _coerce

    data = _toml(text, f"{path} (as it would be written)")
    table = data.get("run", data)
    known = Settings.__dataclass_fields__
    Settings(**{k: _coerce(k, v, str(path)) for k, v in table.items() if k in known}).validate()


def _has_top_keys(lines: list[str]) -> bool:
    """Whether settings sit at the top level, before any table (read_config reads them there)."""
    for line in lines:
        if _TABLE.match(line):
            return False
        if line.strip() and not line.lstrip().startswith("#"):
            return True
    return False


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _toml_str(str(value))


def _toml_str(s: str) -> str:
    """`s` as a TOML basic string (control characters escaped)."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    out = "".join(ch if ch >= " " or ch in "\\" else f"\\u{ord(ch):04x}" for ch in out)
    return f'"{out}"'
