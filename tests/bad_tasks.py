"""Importable tasks that return what cannot be stored or raise what cannot be shown.

Clusters resolve them by dotted path. Each must end as a stored failure whose
result says why, never as a crash, a lost task or an unreadable row.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

OPEN_SOCKETS: list[socket.socket] = []
"""Sockets handed out by ``returns_socket``; a sync-mode test closes them afterwards."""


# -- results ----------------------------------------------------------------------------


def returns_closure_over_a_lock() -> Callable[[], Any]:
    lock = threading.Lock()

    def is_busy() -> bool:
        return lock.locked()

    return is_busy  # cloudpickle would carry the lock along with the closure


def returns_generator() -> Iterator[int]:
    return (n * n for n in range(3))


def returns_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    OPEN_SOCKETS.append(sock)
    return sock


def _refuse_to_load() -> None:
    raise RuntimeError("this result cannot be loaded back")


class Unloadable:
    """Pickles without complaint; unpickling calls a function that raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


def returns_unloadable() -> Unloadable:
    return Unloadable()


class ReduceRaises:
    """Pickling raises, and so does every way of showing the error."""

    def __reduce__(self) -> tuple[Any, ...]:
        raise Unprintable("no reduce")


def returns_reduce_raising_unprintable() -> ReduceRaises:
    return ReduceRaises()


# -- exceptions -------------------------------------------------------------------------


class LockedError(Exception):
    """Holds a lock: cannot be pickled."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class ReduceFailsError(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("this exception refuses to be pickled")


class Unprintable(Exception):
    """Neither ``str`` nor ``repr`` works, nor pickling."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    def __reduce__(self) -> Any:
        raise TypeError("no pickle for you")


class TaskAbort(BaseException):
    """Not an ``Exception``: task code meant to get past ``except Exception``."""


def raises_exception_holding_a_lock() -> None:
    raise LockedError("held a lock")


def raises_exception_whose_reduce_fails() -> None:
    raise ReduceFailsError("reduce fails")


def raises_unprintable_exception() -> None:
    raise Unprintable()


def raises_base_exception() -> None:
    raise TaskAbort("aborted past except Exception")


def exits() -> None:
    sys.exit(3)


# -- ordinary -----------------------------------------------------------------------------


def square(n: int) -> int:
    return n * n


def size_of(data: bytes) -> int:
    return len(data)
