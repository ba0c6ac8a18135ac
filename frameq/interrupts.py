"""Ctrl-C and SIGTERM for the commands that run work here (`frameq run`, `frameq batch`): the
signal becomes an Interrupted exception in the main thread, which the command catches to
cancel or keep what it must, and then exits 130.

A signal handler's exception is raised wherever the main thread is, and there it can be lost:
raised inside a finaliser or a weakref callback that the garbage collector happened to be
running (SQLAlchemy registers such callbacks), Python prints "Exception ignored" and goes on,
so the command would run to its end as though never interrupted. Such a lost Interrupted is
not printed, and until the command says it has caught one (`caught`), the interrupt is raised
again every RETRY_S.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

RETRY_S = 0.5


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM.

    Not a KeyboardInterrupt: the interpreter would then end the process by SIGINT whatever
    status the handler chose, and Click would turn it into "Aborted!".
    """


_pending = threading.Event()


def install() -> None:
    """From now on SIGINT and SIGTERM raise Interrupted in the main thread."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = _unraisable


def _unraisable(unraisable: Any) -> None:
    """An Interrupted lost in a finaliser is said again by _again; anything else as before."""
    if not isinstance(unraisable.exc_value, Interrupted):
        sys.__unraisablehook__(unraisable)


def caught() -> None:
    """The command has its Interrupted in hand: no more of them, and a second Ctrl-C must not
    cut its cleanup short."""
    _pending.clear()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    if not _pending.is_set():
        _pending.set()
        threading.Thread(target=_again, args=(signum,), name="frameq-interrupt", daemon=True).start()
    raise Interrupted(signal.Signals(signum).name)


def _again(signum: int) -> None:
    """Send the signal again while the last one has not been caught (it may have been lost)."""
    time.sleep(RETRY_S)
    while _pending.is_set():
        os.kill(os.getpid(), signum)
        time.sleep(RETRY_S)
