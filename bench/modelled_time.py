"""Modelled time for running real, blocking code side by side (a discrete-event simulation on threads).

Every thread that takes part sleeps through ``sleep``; the clock moves only when all of them sleep,
straight to the earliest wake-up. So code that takes its clock and its sleep as parameters (the
backfill's steps, pacers and budgets do) runs as it would for hours of wall time in the seconds its
own CPU needs, and its order of events is what the modelled latencies make it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class ModelledTime:
    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._running = 1  # the thread that made it
        self._due: list[tuple[float, int, threading.Event]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        woken = threading.Event()
        with self._lock:
            heapq.heappush(self._due, (self._now + seconds, next(self._seq), woken))
            self._running -= 1
            self._advance()
        woken.wait()

    def _advance(self) -> None:
        """With the lock held: when no thread runs, move to the earliest wake-up and wake its threads."""
        if self._running > 0 or not self._due:
            return
        self._now = max(self._now, self._due[0][0])
        while self._due and self._due[0][0] <= self._now:
            _, _, woken = heapq.heappop(self._due)
            self._running += 1
            woken.set()

    def run_all(self, tasks: list[Callable[[], Any]]) -> list[Any]:
        """Run ``tasks`` side by side; the caller waits (taking no part) until every one has ended."""
        results: list[Any] = [None] * len(tasks)
        errors: list[BaseException] = []

        def body(index: int, task: Callable[[], Any]) -> None:
            try:
                results[index] = task()
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
            finally:
                with self._lock:
                    self._running -= 1
                    self._advance()

        with self._lock:
            self._running += len(tasks)
        threads = [threading.Thread(target=body, args=(i, task), daemon=True) for i, task in enumerate(tasks)]
        for thread in threads:
            thread.start()
        with self._lock:
            self._running -= 1
            self._advance()
        for thread in threads:
            thread.join()
        with self._lock:
            self._running += 1
        if errors:
            raise errors[0]
        return results


class _ModelledFuture(Future[Any]):
    """A result another modelled thread computes; waiting for it takes no part meanwhile."""

    def __init__(self, time: ModelledTime) -> None:
        super().__init__()
        self._time = time
        self._finished = self._waiting = False
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._value = function(*args)
        except BaseException as exc:  # raised by result()
            self._error = exc
        with self._time._lock:
            self._finished = True
            if self._waiting:
                self._time._running += 1  # the waiter takes part again
            self._done.set()
            self._time._running -= 1
            self._time._advance()

    def result(self, timeout: float | None = None) -> Any:
        with self._time._lock:
            waits = not self._finished
            if waits:
                self._waiting = True
                self._time._running -= 1
                self._time._advance()
        if waits:
            self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class ModelledExecutor(Executor):
    """A thread per submitted call, taking part in modelled time (futures must be waited for)."""

    def __init__(self, time: ModelledTime) -> None:
        self._time = time

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = _ModelledFuture(self._time)
        with self._time._lock:
            self._time._running += 1
        threading.Thread(target=future.run, args=(fn, args), daemon=True).start()
        return future
