"""SIGINT and SIGTERM that stop a sweep, even when the signal lands where Python swallows
exceptions.

Python runs a signal handler between bytecodes of the main thread; an exception it raises
inside a callback that Python calls on its own (a garbage-collection callback of JAX's, a
``__del__``) is printed as "Exception ignored" and lost. The handler therefore records the
signal before raising, and :func:`check`, called where the sweep's work passes through Python
(after every training chunk, before and after every program), raises again from there. Inside
:func:`deferred` blocks (checkpoint saves) the handler only records it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

# 128 + the signal number, as shells report a process the signal ended.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}

_received: list[int] = []
_deferring = 0


class Interrupted(Exception):
    """The sweep was stopped by ``signum`` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.signum]


def _handler(signum, frame):
    _received.append(signum)
    if not _deferring:
        raise Interrupted(signum)


def check() -> None:
    """Raises :class:`Interrupted` if a signal arrived inside :func:`handled`."""
    if _received:
        raise Interrupted(_received[0])


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block a signal is only recorded, and raised when the block has finished: for
    work that must not stop halfway (a checkpoint save, whose helper threads would otherwise
    outlive it and report errors of their own)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring:
        check()


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (and :func:`check`
    raises it again wherever the first was swallowed); the old handlers come back after."""
    old = {s: signal.signal(s, _handler) for s in EXIT_STATUS}
    _received.clear()
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _received.clear()
