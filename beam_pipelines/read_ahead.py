"""Run a generator on a background thread, a few items ahead of its consumer.

The predict job reads and parses the next chunk of records while the teacher
labels the current one: TensorFlow releases the GIL inside the model call, so
the Python parsing on this thread overlaps with inference inside one Beam
bundle, with no second bundle in flight (docs/design.md, "Local runner").

Beam metrics are thread-local to the bundle: the producer must not touch
counters; it yields what happened and the consumer counts.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def read_ahead(make_items: Callable[[], Iterator[T]], depth: int = 2) -> Iterator[T]:
    """Yield what `make_items()` yields, produced on a daemon thread up to `depth` items ahead.

    An exception in the producer is re-raised here, in the consumer's thread. If
    the consumer stops early (closes this generator), the producer stops at its
    next item.
    """
    items: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = make_items()
        try:
            for item in source:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(_Failure(e))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a stopped consumer: let the source release its file now
        put(_DONE)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
