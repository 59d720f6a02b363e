"""Start multiprocessing's fork server and resource tracker as forks of the cluster.

Why: the stdlib starts both as fresh interpreters (``exec``), so the
workers, forked from the fork server, share nothing with the cluster: each
pays for its own copy of the engine's imports (and a Django project's), and
the two helpers cost a bare interpreter each. Forked from the cluster while
it is still single-threaded and holds no connection, they share the
cluster's pages, and so do the workers the fork server forks: the workers'
memory drops by the size of everything imported before the fork.

Everything else is the stdlib's: the same protocol, the same fork server
code (``multiprocessing.forkserver.main``), the same tracker. Only the way
they are launched differs, and only where it is safe: the calling thread is
the only one, and the interpreter is one whose launch state this module
knows (CPython 3.11 to 3.13). Otherwise nothing is done and multiprocessing
starts its own helpers on first use, as before; it also restarts them that
way if one of ours dies.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from multiprocessing import connection, forkserver, resource_tracker, util

__all__ = ["can_fork_helpers", "fork_helpers"]

log = logging.getLogger(__name__)

_SUPPORTED = (3, 11) <= sys.version_info[:2] <= (3, 13)
"""Versions whose fork server and tracker keep the launch state this module sets; 3.14's
fork server also expects an authentication key."""


def can_fork_helpers() -> bool:
    """Whether ``fork_helpers`` would fork now: a caller may then prepare (close connections)."""
    if not _SUPPORTED or not sys.platform.startswith("linux"):
        return False
    if threading.active_count() != 1 or threading.current_thread() is not threading.main_thread():
        return False  # forking with other threads alive can copy a held lock
    tracker = resource_tracker._resource_tracker  # type: ignore[attr-defined]
    server = forkserver._forkserver  # type: ignore[attr-defined]
    # Already running: workers fork from the one there is.
    return tracker._fd is None and server._forkserver_pid is None


def fork_helpers(preload: Sequence[str] = ()) -> bool:
    """Fork the resource tracker and the fork server from this process; True if done.

    Call it when this process has imported what its workers will use and
    opened no connection yet (a fork copies open sockets and database
    handles into every worker). ``preload`` is imported first.
    """
    if not can_fork_helpers():
        return False
    tracker = resource_tracker._resource_tracker  # type: ignore[attr-defined]
    server = forkserver._forkserver  # type: ignore[attr-defined]
    for name in preload:
        __import__(name)
    gc.collect()
    gc.freeze()  # what was made so far is shared: no collection in a child copies it
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # else a child would write the buffered output again

    read_end, tracker_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the tracker: reads until every holder of tracker_fd has gone
        _child(resource_tracker.main, read_end, close=(tracker_fd,))
    os.close(read_end)
    tracker._fd, tracker._pid = tracker_fd, pid

    address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):  # type: ignore[attr-defined]
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()  # the server leaves when every holder of alive_w has gone
        pid = os.fork()
        if pid == 0:
            tracker._fd = tracker._pid = None  # each worker is handed the tracker's fd
            args = (listener.fileno(), alive_r, list(preload))
            _child(forkserver.main, *args, close=(alive_w, tracker_fd))
        os.close(alive_r)
    finally:
        listener.close()
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid
    log.debug("forked the fork server (%d) and the resource tracker (%d)", pid, tracker._pid)
    return True


def _child(main: Callable[..., object], *args: object, close: Sequence[int]) -> None:
    """Run a helper's main loop in a forked child and leave without the parent's exit code.

    The parent's handlers are dropped (a worker forked from here would
    otherwise answer SIGTERM with the cluster's stop), and the exit skips
    the parent's atexit hooks and buffered output.
    """
    code = 1
    try:
        for fd in close:
            os.close(fd)
        for signum in signal.valid_signals():
            handler = signal.getsignal(signum)
            if callable(handler):
                signal.signal(signum, signal.SIG_DFL)
        main(*args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # a helper that fails leaves like the stdlib's: a trace, then out
        sys.excepthook(*sys.exc_info())
    finally:
        os._exit(code)
