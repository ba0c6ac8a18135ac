"""Overlap I/O with compute: decoding ahead and encoding behind run in their own threads.

PyAV releases the GIL while it decodes, converts and encodes, and torch while it computes,
so a frame stage keeps both cores busy instead of waiting on each step in turn.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()
POLL_S = 0.1


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield `items`, produced up to `depth` ahead by a background thread.

    Errors in the producer are raised here; stopping early stops the producer.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        """Put unless the consumer has stopped (then it never takes another item)."""
        while not stop.is_set():
            try:
                buffer.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as exc:
            offer(_Failed(exc))

    thread = threading.Thread(target=produce, name="frameq-prefetch", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class Behind(Generic[T]):
    """Call `consume(item)` for each `put` item in a background thread, in order.

    Leaving the `with` block waits for the thread; its first error is raised there (or at
    the next `put`).
    """

    def __init__(self, consume: Callable[[T], None], depth: int) -> None:
        self.consume = consume
        self.buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="frameq-behind", daemon=True)

    def _run(self) -> None:
        while (item := self.buffer.get()) is not _END:
            if self.error is None:
                try:
                    self.consume(item)
                except BaseException as exc:
                    self.error = exc

    def put(self, item: T) -> None:
        if self.error is not None:
            raise self.error
        self.buffer.put(item)

    def __enter__(self) -> Behind[T]:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.buffer.put(_END)
        self.thread.join()
        if exc is None and self.error is not None:
            raise self.error
