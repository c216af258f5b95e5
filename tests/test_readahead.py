"""ordered_map: shards read side by side in threads, consumed in order, a bounded few ahead."""

from __future__ import annotations

import threading
import time

import pytest

from dataselect.io.readahead import ordered_map


def test_results_come_in_item_order_whatever_finishes_first() -> None:
    def read(item: int) -> int:
        time.sleep(0.001 * (item % 3))  # later items often finish first
        return item * item

    assert list(ordered_map(read, range(40), threads=4)) == [i * i for i in range(40)]


def test_at_most_ahead_results_wait_unconsumed() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def read(item: int) -> int:
        with lock:
            started.append(item)
        return item

    results = ordered_map(read, range(100), threads=2, ahead=3)
    for consumed, item in enumerate(results):
        assert item == consumed
        time.sleep(0.002)  # a slow consumer: readers must wait for it
        with lock:
            assert len(started) <= consumed + 1 + 3, (consumed, len(started))


def test_an_error_is_raised_in_order_and_later_items_are_dropped() -> None:
    seen: list[int] = []

    def read(item: int) -> int:
        if item == 5:
            raise ValueError("bad shard 5")
        seen.append(item)
        return item

    got = []
    with pytest.raises(ValueError, match="bad shard 5"):
        for item in ordered_map(read, range(1000), threads=2, ahead=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    assert max(seen) < 5 + 2 + 2 + 1  # nothing far past the failure was read


def test_stopping_early_cancels_what_was_not_started() -> None:
    seen: list[int] = []
    results = ordered_map(lambda i: seen.append(i) or i, range(1000), threads=2, ahead=2)
    assert next(results) == 0
    results.close()
    assert len(seen) < 10
