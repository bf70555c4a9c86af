"""The API's memory of Redis reads: bounded, least recently used dropped first, emptied by an erasure."""

from __future__ import annotations

from recomart.serving.reads import ListMemory


def test_a_kept_value_is_returned_and_a_missing_key_is_kept_as_none() -> None:
    memory = ListMemory(3)
    assert memory.get("u1", None) is False
    memory.put("u1", b"list", None)
    memory.put("u2", None, None)  # not in the generation: kept too
    assert memory.get("u1", None) == b"list"
    assert memory.get("u2", None) is None
    assert memory.get("u3", None) is False


def test_the_least_recently_used_goes_first() -> None:
    memory = ListMemory(2)
    memory.put("a", b"1", None)
    memory.put("b", b"2", None)
    assert memory.get("a", None) == b"1"  # now b is the least recently used
    memory.put("c", b"3", None)
    assert memory.get("b", None) is False
    assert memory.get("a", None) == b"1" and memory.get("c", None) == b"3"


def test_a_new_erasure_count_empties_it_and_a_stale_put_is_dropped() -> None:
    memory = ListMemory(10)
    memory.put("a", b"1", None)
    assert memory.get("a", b"1") is False  # an erasure happened: the count changed
    memory.put("b", b"2", None)  # read before the erasure was seen: not kept
    assert memory.get("b", b"1") is False
    memory.put("a", b"again", b"1")
    assert memory.get("a", b"1") == b"again"


def test_size_zero_keeps_nothing() -> None:
    memory = ListMemory(0)
    memory.put("a", b"1", None)
    assert memory.get("a", None) is False
