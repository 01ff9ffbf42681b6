"""What the host does on a handler's or a daemon's behalf (not for transformers).

Every destination (``connection:address``) is checked against the plugin's grants. A
handler's publishes and events go out only if its call succeeds; a daemon's at once.
"""

from __future__ import annotations

import json as _json
from typing import Optional

from componentize_py_types import Err as _Err
from wit_world.imports import host as _host

from . import Message, _as_bytes, _from_wit, _to_wit


class HostError(Exception):
    """The host refused: no grant, an unknown connection, a request that timed out."""


def publish(destination: str, msg: Message) -> None:
    """Send ``msg`` to ``destination`` (``local:audit``, ``rabbit:orders.new``)."""
    try:
        _host.publish(destination, _to_wit(msg))
    except _Err as e:
        raise HostError(e.value) from None


def request(destination: str, msg: Message, timeout_ms: int = 5000) -> Message:
    """Send a request and wait up to ``timeout_ms`` for its reply."""
    try:
        return _from_wit(_host.request(destination, _to_wit(msg), timeout_ms))
    except _Err as e:
        raise HostError(e.value) from None


def publish_event(model: str, event: str, data) -> None:
    """Publish the model event ``{Model}.{event}`` with ``data`` (JSON unless bytes or str)."""
    payload = data if isinstance(data, (bytes, str)) else _json.dumps(data)
    try:
        _host.publish_event(model, event, _as_bytes(payload))
    except _Err as e:
        raise HostError(e.value) from None


def kv_get(key: str) -> Optional[bytes]:
    """The plugin's stored value of ``key``, or None."""
    return _host.kv_get(key)


def kv_set(key: str, value) -> None:
    """Store ``value`` (bytes or str) under ``key``; kept only if the call succeeds."""
    try:
        _host.kv_set(key, _as_bytes(value))
    except _Err as e:
        raise HostError(e.value) from None
