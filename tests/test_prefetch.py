"""The read-ahead helper keeps order, passes errors on, and stops its thread early."""

from __future__ import annotations

import threading

import pytest

from dataselect.io.prefetch import prefetched


def test_order_and_errors() -> None:
    assert list(prefetched(range(100), depth=3)) == list(range(100))

    def broken():
        yield 1
        raise ValueError("bad shard")

    with pytest.raises(ValueError, match="bad shard"):
        list(prefetched(broken()))


def test_consumer_stopping_early_ends_the_reader() -> None:
    before = threading.active_count()
    for item in prefetched(iter(range(10_000)), depth=2):
        if item == 5:
            break
    assert threading.active_count() == before
