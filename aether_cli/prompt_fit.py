"""Fitting a prompt to a token budget: evict optional material, then shorten the rest.

A prompt is rebuilt from pools of optional items (least valuable first) and
mandatory texts. `fit` drops items pool by pool in the order its steps give,
and if that is not enough, shortens over-long mandatory texts down a fixed
ladder of character limits; `Prompt.evicted` records every drop and cut. This
module knows nothing of templates, checkpoints or what an item means: the
caller's `build` turns the pools into text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Counter = Callable[[str], int]

ELLIPSIS = "…"
# Character limits tried, in order, on mandatory items once all optional
# material is gone; an item at or under the last one is never shortened.
TRUNCATE_LADDER = (400, 200, 100)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt, its size, its budget and what was dropped or shortened to fit."""

    text: str
    tokens: int
    budget: int
    evicted: list[str] = field(default_factory=list)


@dataclass
class Pool:
    """Optional items, least valuable first; `dropped` of them are gone, from the front."""

    items: list[str]
    labels: list[str] | None = None  # one label per item when each is reported by name
    display: list[int] | None = None  # indices in the order they are shown, if not `items` order
    dropped: int = 0

    def kept(self) -> list[str]:
        if self.display is None:
            return self.items[self.dropped :]
        return [self.items[i] for i in self.display if i >= self.dropped]


class Cutter:
    """Shortens mandatory texts to the current limit and counts how many it cut."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.cut = 0

    def __call__(self, text: str) -> str:
        if self.limit is None or len(text) <= self.limit:
            return text
        self.cut += 1
        return text[: self.limit - 1] + ELLIPSIS


Build = Callable[[Cutter], str]


@dataclass(frozen=True)
class Step:
    pool: str
    keep: int  # items of the pool this step never drops
    label: str  # what `evicted` says, with {k} the number dropped; facts are named one by one


def fit(build: Build, pools: dict[str, Pool], steps: Sequence[Step], count: Counter, budget: int) -> Prompt:
    """Drop optional material step by step, then shorten mandatory texts, until it fits."""
    evicted: list[str] = []
    text = build(Cutter(None))
    tokens = count(text)
    for step in steps:
        if tokens <= budget:
            break
        if _evict(build, pools[step.pool], step, count, budget, evicted):
            text = build(Cutter(None))
            tokens = count(text)
    if tokens > budget:
        text, tokens = _shorten(build, count, budget, evicted)
    return Prompt(text=text, tokens=tokens, budget=budget, evicted=evicted)


def _evict(
    build: Build, pool: Pool, step: Step, count: Counter, budget: int, evicted: list[str]
) -> bool:
    """Drop the fewest items of `pool` that make the prompt fit (all it may, if none do).

    Returns False when the step may drop nothing; otherwise records the drop in `evicted`.
    """
    start = pool.dropped
    available = len(pool.items) - start - step.keep
    if available <= 0:
        return False

    def fits(k: int) -> bool:
        pool.dropped = start + k
        return count(build(Cutter(None))) <= budget

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
    if pool.labels is not None:
        evicted.extend(pool.labels[start : start + k])
    else:
        evicted.append(step.label.format(k=k))
    return True


def _shorten(build: Build, count: Counter, budget: int, evicted: list[str]) -> tuple[str, int]:
    """The prompt with mandatory texts cut down the ladder until it fits (or the ladder ends)."""
    for limit in TRUNCATE_LADDER:
        cutter = Cutter(limit)
        text = build(cutter)
        tokens = count(text)
        if tokens <= budget or limit == TRUNCATE_LADDER[-1]:
            if cutter.cut:
                evicted.append(f"truncated:{cutter.cut} items to {limit} chars")
            break
    if tokens > budget:
        evicted.append(f"over budget:{tokens} > {budget} tokens with only mandatory content")
    return text, tokens
