import threading
import time

import pytest

from workers.pipeline import Behind, prefetch


def test_prefetch_yields_everything_in_order() -> None:
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_prefetch_raises_the_producers_error_after_its_items() -> None:
    def items():
        yield 1
        yield 2
        raise ValueError("corrupt frame")

    got = []
    with pytest.raises(ValueError, match="corrupt frame"):
        for item in prefetch(items(), depth=1):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_stops_the_producer() -> None:
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetch(endless(), depth=2)
    assert next(stream) == 0
    stream.close()  # joins the producer: returning at all shows it stopped
    assert len(produced) <= 5
    assert not any(t.name == "frameq-prefetch" for t in threading.enumerate())


def test_stopping_with_a_full_buffer_at_the_end_does_not_hang() -> None:
    """The producer has put its last item and waits to put the end mark into a full buffer."""
    done = threading.Event()

    def consume() -> None:
        with pytest.raises(RuntimeError):
            for item in prefetch(iter(range(32)), depth=16):
                if item == 8:
                    time.sleep(0.3)  # let the producer fill the buffer and block on the end mark
                    raise RuntimeError("model failed")
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert done.wait(10), "prefetch did not stop its producer"


def test_behind_consumes_in_order_and_waits_on_exit() -> None:
    seen: list[int] = []
    with Behind(lambda x: (time.sleep(0.001), seen.append(x)), depth=2) as behind:
        for i in range(50):
            behind.put(i)
    assert seen == list(range(50))


def test_behind_raises_the_consumers_error() -> None:
    def consume(x: int) -> None:
        if x == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), Behind(consume, depth=1) as behind:
        for i in range(10):
            behind.put(i)
            time.sleep(0.01)
