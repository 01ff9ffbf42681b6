"""Sleeping and receiving: for daemons only.

``take`` holds a message until the daemon settles it with ``Delivery.ack`` or
``Delivery.nack``; what a daemon still holds when it returns, fails or is stopped goes back to
its source, so a daemon that crashes mid-work loses nothing. ``receive`` settles on receipt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from componentize_py_types import Err as _Err
from wit_world.imports import daemon_host as _daemon
from wit_world.imports import exception as _exception

from . import Message, _from_wit
from .host import HostError


def sleep(ms: int) -> bool:
    """Sleep up to ``ms``; False when the daemon is asked to stop and should return."""
    return _daemon.sleep(ms)


def receive(source: str, timeout_ms: int = 1000) -> Optional[Message]:
    """The next message of a granted ``receive:`` source, settled at once; None at the timeout."""
    try:
        msg = _daemon.receive(source, timeout_ms)
    except _Err as e:
        raise HostError(e.value) from None
    return None if msg is None else _from_wit(msg)


@dataclass
class Delivery:
    """A message taken with ``take``, held until acked or nacked."""

    tag: int
    msg: Message

    def ack(self) -> None:
        ack(self.tag)

    def nack(self, requeue: bool = True, exception: Optional[BaseException] = None) -> None:
        nack(self.tag, requeue, exception)


def take(source: str, timeout_ms: int = 1000) -> Optional[Delivery]:
    """The next message of a granted ``receive:`` source, held unsettled; None at the timeout
    and at once when the daemon is asked to stop."""
    try:
        delivery = _daemon.take(source, timeout_ms)
    except _Err as e:
        raise HostError(e.value) from None
    return None if delivery is None else Delivery(delivery.tag, _from_wit(delivery.msg))


def ack(tag: int) -> None:
    """Settle a taken message as done."""
    try:
        _daemon.ack(tag)
    except _Err as e:
        raise HostError(e.value) from None


def nack(tag: int, requeue: bool = True, exception: Optional[BaseException] = None) -> None:
    """Give a taken message back (``requeue``) or dead-letter it; a dead letter is named by
    ``exception``'s class when one is given (``exception_name`` ``KeyError``)."""
    if exception is not None and not requeue:
        _exception.name_failure(type(exception).__name__, repr(type(exception)))
    try:
        _daemon.nack(tag, requeue)
    except _Err as e:
        raise HostError(e.value) from None
