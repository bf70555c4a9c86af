"""The API process's garbage collector: its long-lived state frozen, fewer young collections.

A worker holds a large long-lived heap: the generation's catalogue and cold-start lists, the model's
neighbours, Feast's registry objects. CPython's full (generation 2) collections traverse all of it,
holding the GIL, so every request in flight waits. Measured in one API worker under wrk (a 30,000-user
× 20,000-item shop, timed by ``gc.callbacks``): a full collection took up to 256 ms, and collections of
all generations were 5.7 % of the process's time. So:

- after the live state has loaded something new, one full collection, then ``gc.freeze()``: what is
  loaded then moves to the permanent generation, which later collections skip (its acyclic objects are
  still freed by reference counting when the next generation replaces them);
- young collections every :data:`YOUNG_THRESHOLD` allocations instead of CPython's 700: a request's
  objects are mostly freed by reference counting before a collection would look at them.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """Collect generation 0 every :data:`YOUNG_THRESHOLD` allocations (the older thresholds unchanged)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


def freeze_long_lived() -> None:
    """Free what is garbage now, then move every tracked object to the permanent generation."""
    gc.collect()
    gc.freeze()
