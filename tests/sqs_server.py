"""Runs moto's SQS server (``moto_server``'s arguments) with its receive race fixed.

moto scans a queue for visible messages without a lock, so two ReceiveMessage
calls at the same moment can both take one message. SQS itself does not do that
(beyond the rare duplicate of its at-least-once delivery), and the broker
contract checks that concurrent consumers get each package once. Here scans
take turns; waiting in a long poll does not hold the turn, so producers and
other consumers go on meanwhile. Started by ``tests/servers.py``.
"""

from __future__ import annotations

import threading
from typing import Any

from moto import server
from moto.sqs.models import Queue, SQSBackend

_turn = threading.RLock()
_receive_message = SQSBackend.receive_message
_wait_for_messages = Queue.wait_for_messages


def _receive_in_turn(self: SQSBackend, *args: Any, **kwargs: Any) -> Any:
    with _turn:
        return _receive_message(self, *args, **kwargs)


def _wait_out_of_turn(self: Queue, timeout: int) -> None:
    # Only receive_message calls this, holding the turn once.
    _turn.release()
    try:
        _wait_for_messages(self, timeout)
    finally:
        _turn.acquire()


SQSBackend.receive_message = _receive_in_turn  # type: ignore[method-assign]
Queue.wait_for_messages = _wait_out_of_turn  # type: ignore[method-assign]

if __name__ == "__main__":
    server.main()
