"""A per-process cache whose values are kept a fixed time after they were read (the clock is injectable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class MaxAgeCache(Generic[K, V]):
    """``get`` answers from the cache while the value is younger than ``max_age`` seconds and
    ``usable``; otherwise it reads, keeps and returns the new value (a read that raises keeps nothing)."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age, self._clock = max_age, clock
        self._values: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()  # the local stack runs handlers side by side

    def get(self, key: K, read: Callable[[], V], usable: Callable[[V], bool] = lambda _: True) -> V:
        now = self._clock()
        with self._lock:
            kept = self._values.get(key)
        if kept is not None and now < kept[0] and usable(kept[1]):
            return kept[1]
        value = read()  # outside the lock: a slow read must not hold up other keys
        with self._lock:
            self._values[key] = (now + self._max_age, value)
        return value

    def forget(self, key: K) -> None:
        with self._lock:
            self._values.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
