"""The reader queue: bounded by bytes and by items, so neither huge nor many lines grow aether."""

from __future__ import annotations

import threading

from aether_cli.supervisor.streams import ByteBoundedQueue


def test_a_producer_waits_at_the_item_bound_and_goes_on_when_the_consumer_takes() -> None:
    q = ByteBoundedQueue(max_bytes=1 << 20, max_items=3)
    for i in range(3):
        q.put(("events", 1, i), 1)
    done = threading.Event()

    def produce() -> None:
        q.put(("events", 1, 3), 1)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    assert not done.wait(0.2), "a fourth short item must wait"
    assert q.get(1.0) == ("events", 1, 0)
    assert done.wait(5), "room again: the producer goes on"
    assert [q.get(1.0)[2] for _ in range(3)] == [1, 2, 3]


def test_one_item_over_the_byte_budget_is_still_taken_when_the_queue_is_empty() -> None:
    q = ByteBoundedQueue(max_bytes=10, max_items=3)
    q.put(("events", 1, "huge"), 1000)
    assert q.get(1.0) == ("events", 1, "huge")
