"""A bounded, thread-safe memo: each key is computed once, and callers that ask meanwhile wait for it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

V = TypeVar("V")


def _always(_value: object) -> bool:
    return True


class OnceCache(Generic[V]):
    """Least-recently-used results of an expensive function, computed once per key even under concurrency.

    A key being computed is "in flight": other threads asking for it wait for that computation instead of
    starting their own (greedy and sampled candidates often coincide and are judged together). In-flight
    entries are never evicted, so at most ``maxsize`` finished results are kept. A result that ``keep``
    rejects (a sandbox crash is not a property of the program) is handed to the waiters but not cached,
    and an exception reaches every waiter and caches nothing.

    Args:
        maxsize: Finished results kept; the least recently used goes first.

    Example:
        ```python
        >>> cache = OnceCache(maxsize=2)
        >>> cache.get("a", lambda: 1)
        (1, False)
        >>> cache.get("a", lambda: 2)  # cached: the function is not called again
        (1, True)
        ```
    """

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError(f"OnceCache maxsize must be >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Future] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(
        self, key: Hashable, compute: Callable[[], V], keep: Callable[[V], bool] = _always
    ) -> tuple[V, bool]:
        """The value for ``key`` and whether it came from the cache (or from an identical call in flight).

        Args:
            key: What the value depends on.
            compute: Called, without arguments, only when no value for ``key`` is cached or in flight.
            keep: Whether a freshly computed value may be cached.
        """
        with self._lock:
            fut = self._entries.get(key)
            owner = fut is None
            if owner:
                fut = self._entries[key] = Future()
                self._evict()
            else:
                self._entries.move_to_end(key)
        if not owner:
            return fut.result(), True
        try:
            value = compute()
        except BaseException as exc:
            # The waiters must not wait forever, and a failure is not a result to reuse.
            with self._lock:
                self._entries.pop(key, None)
            fut.set_exception(exc)
            raise
        if not keep(value):
            with self._lock:
                self._entries.pop(key, None)
        fut.set_result(value)
        return value, False

    def _evict(self) -> None:
        """Drop the least recently used finished entries beyond ``maxsize`` (lock held)."""
        excess = len(self._entries) - self.maxsize
        if excess <= 0:
            return
        stale = []
        for key, fut in self._entries.items():
            if len(stale) >= excess:
                break
            if fut.done():
                stale.append(key)
        for key in stale:
            del self._entries[key]
