"""Write Wharf plugins in Python.

A plugin is a class; ``export`` turns it into the ``WitWorld`` that componentize-py builds into
a WebAssembly component::

    from wharf_plugin import Message, Transformer, export

    class Shout(Transformer):
        name = "shout"
        version = "1.0.0"
        description = "Upper-cases text"
        reusable = True

        def transform(self, msg: Message):
            return msg.with_payload(msg.text().upper())

    WitWorld = export(Shout)

built with ``componentize-py -d wit -w transformer componentize -p . -p SDK app -o shout.wasm``
(``wharf plugin build`` runs it for you). See README.md beside this package for the guide.

What a method returns or raises:

- ``Transformer.transform(msg)`` returns a ``Message``, a list of them (a split; an empty list
  filters the message out) or ``None`` (filtered out);
- ``Handler.handle(msg)`` returns the reply ``Message`` or ``None``;
- ``Daemon.run()`` returns when it is done or asked to stop;
- raise ``Retry`` for trouble that may pass (the host retries with backoff) and ``Reject`` for a
  message that will never succeed (dead-lettered at once). Any other exception is logged with
  its traceback and counts as ``Retry``.
"""

from __future__ import annotations

import json as _json
import traceback as _traceback
from dataclasses import dataclass, field
from typing import Optional, Union

from componentize_py_types import Err as _Err
try:
    # A world that imports wasi:http has two `types` interfaces; componentize-py names them
    # by their packages.
    from wit_world.imports import wharf_plugin_types as _types
except ImportError:
    from wit_world.imports import types as _types

from wit_world.imports import exception as _exception

from . import config, log

__all__ = [
    "Daemon",
    "Handler",
    "Json",
    "Message",
    "Reject",
    "Retry",
    "Transformer",
    "config",
    "export",
    "log",
]

CONTRACT = "wharf:plugin@0.1.3"


class Retry(Exception):
    """Transient trouble: the host retries the message with backoff."""


class Reject(Exception):
    """The message can never succeed: the host dead-letters it at once."""


class Json(str):
    """A header value holding a JSON document (an AMQP field table, say)."""


HeaderValue = Union[str, bytes, bool, int, float, list, Json]


@dataclass
class Message:
    """One message, as every transport maps it.

    ``headers`` keep their types: ``str``, ``bytes``, ``int``, ``float``, ``bool``, a
    ``list`` of ``str``, or ``Json``.
    """

    payload: bytes = b""
    topic: str = ""
    headers: dict = field(default_factory=dict)
    id: str = ""
    key: Optional[bytes] = None
    content_type: Optional[str] = None
    correlation_id: Optional[str] = None
    reply_to: Optional[str] = None
    priority: Optional[int] = None
    expiration_ms: Optional[int] = None
    persistent: bool = True
    timestamp_ms: int = 0

    def __post_init__(self):
        self.payload = _as_bytes(self.payload)

    def text(self) -> str:
        """The payload as UTF-8 text; ``Reject`` if it is not UTF-8."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Reject(f"the payload is not UTF-8 text: {e}") from None

    def json(self):
        """The payload parsed as JSON; ``Reject`` if it is not JSON."""
        try:
            return _json.loads(self.payload)
        except ValueError as e:
            raise Reject(f"the payload is not JSON: {e}") from None

    def header(self, name: str, default=None):
        """The header named ``name`` (ASCII case-insensitive), or ``default``."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    def with_payload(self, payload) -> "Message":
        """The same message with another payload (``bytes``, ``str``, or anything JSON)."""
        copy = Message(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        copy.headers = dict(self.headers)
        copy.payload = _as_bytes(payload)
        return copy

    def reply(self, payload) -> "Message":
        """A reply to this message: addressed to its reply-to, with its correlation id."""
        return Message(
            payload=_as_bytes(payload),
            topic=self.reply_to or "",
            correlation_id=self.correlation_id or self.id,
            content_type=self.content_type,
        )


def _as_bytes(payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return _json.dumps(payload).encode("utf-8")


def _value_from_wit(value):
    if isinstance(value, _types.Value_Json):
        return Json(value.value)
    return value.value


def _value_to_wit(value):
    if isinstance(value, Json):
        return _types.Value_Json(str(value))
    if isinstance(value, str):
        return _types.Value_Text(value)
    if isinstance(value, (bytes, bytearray)):
        return _types.Value_Bytes(bytes(value))
    if isinstance(value, bool):
        return _types.Value_Boolean(value)
    if isinstance(value, int):
        return _types.Value_Int(value)
    if isinstance(value, float):
        return _types.Value_Float(value)
    if isinstance(value, (list, tuple)):
        return _types.Value_List([str(v) for v in value])
    return _types.Value_Json(_json.dumps(value))


def _from_wit(msg) -> Message:
    return Message(
        payload=msg.payload,
        topic=msg.topic,
        headers={k: _value_from_wit(v) for k, v in msg.headers},
        id=msg.id,
        key=msg.key,
        content_type=msg.content_type,
        correlation_id=msg.correlation_id,
        reply_to=msg.reply_to,
        priority=msg.priority,
        expiration_ms=msg.expiration_ms,
        persistent=msg.persistent,
        timestamp_ms=msg.timestamp_ms,
    )


def _to_wit(msg: Message):
    if not isinstance(msg, Message):
        raise TypeError(f"expected a wharf_plugin.Message, got {type(msg).__name__}")
    return _types.Message(
        msg.id,
        msg.topic,
        msg.key,
        [(k, _value_to_wit(v)) for k, v in msg.headers.items()],
        msg.content_type,
        msg.correlation_id,
        msg.reply_to,
        msg.priority,
        msg.expiration_ms,
        msg.persistent,
        _as_bytes(msg.payload),
        msg.timestamp_ms,
    )


class Plugin:
    """What every plugin says of itself (read by the host before it is installed)."""

    #: The plugin's name, as admins see it.
    name: str = ""
    #: Its version; a new upload of the same name needs a new version.
    version: str = "0.1.0"
    #: One line for people: what it does.
    description: str = ""
    #: Safe to call again on the same instance: the host may reuse one across messages.
    reusable: bool = False
    #: Grants it asks for, such as ``publish:local:audit.*``.
    wants: list = []
    #: Exception classes that are permanent: raised, the message is dead-lettered (or its
    #: request answered) at once instead of retried, as with ``Reject``.
    permanent: tuple = ()

    _kind = None

    @classmethod
    def _info(cls):
        if not cls.name:
            raise ValueError(f"{cls.__name__} has no `name`")
        return _types.Info(
            cls.name,
            cls.version,
            cls._kind,
            cls.description,
            bool(cls.reusable),
            list(cls.wants),
        )


class Transformer(Plugin):
    """Turns one message into zero, one or several; no side effects besides logging."""

    _kind = _types.Kind.TRANSFORMER

    def transform(self, msg: Message):
        raise NotImplementedError


class Handler(Plugin):
    """Handles one message and may reply; may publish, request and keep state (``host``)."""

    _kind = _types.Kind.HANDLER

    def handle(self, msg: Message) -> Optional[Message]:
        raise NotImplementedError


class Daemon(Plugin):
    """Runs until it returns or is asked to stop (``daemon.sleep`` answers False)."""

    _kind = _types.Kind.DAEMON

    def run(self) -> None:
        raise NotImplementedError


def _failure(error: BaseException, permanent: tuple = ()):
    """The WIT failure for an exception a plugin raised.

    Its class names it in the dead letter's ``exception_name`` and ``exception_type``
    (``KeyError``, ``<class 'KeyError'>``), unless it is the SDK's own ``Retry`` or ``Reject``.
    ``Reject``, a class in the plugin's ``permanent`` and an exception whose ``permanent``
    attribute is true fail for good; anything else is retried.
    """
    if type(error) not in (Reject, Retry):
        _exception.name_failure(type(error).__name__, repr(type(error)))
    if isinstance(error, Reject):
        return _types.Failure_Reject(str(error))
    if isinstance(error, Retry):
        return _types.Failure_Retry(str(error))
    log.error("".join(_traceback.format_exception(error)))
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, tuple(permanent)) or getattr(error, "permanent", False) is True:
        return _types.Failure_Reject(text)
    return _types.Failure_Retry(text)


def _outputs(result) -> list:
    if result is None:
        return []
    if isinstance(result, Message):
        return [_to_wit(result)]
    return [_to_wit(m) for m in result]


def export(cls):
    """The ``WitWorld`` componentize-py builds for the plugin class ``cls``.

    One object of ``cls`` is made per instance the host creates, on its first call.
    """
    if not isinstance(cls, type) or not issubclass(cls, (Transformer, Handler, Daemon)):
        raise TypeError("export() takes a Transformer, Handler or Daemon subclass")
    held = []

    def plugin():
        if not held:
            held.append(cls())
        return held[0]

    if issubclass(cls, Transformer):

        class WitWorld:
            def describe(self):
                return cls._info()

            def transform(self, msg):
                try:
                    return _outputs(plugin().transform(_from_wit(msg)))
                except Exception as e:  # noqa: BLE001 - every failure becomes a WIT failure
                    raise _Err(_failure(e, cls.permanent)) from None

    elif issubclass(cls, Handler):

        class WitWorld:
            def describe(self):
                return cls._info()

            def handle(self, msg):
                try:
                    reply = plugin().handle(_from_wit(msg))
                    return None if reply is None else _to_wit(reply)
                except Exception as e:  # noqa: BLE001
                    raise _Err(_failure(e, cls.permanent)) from None

    else:

        class WitWorld:
            def describe(self):
                return cls._info()

            def run(self):
                try:
                    plugin().run()
                except Exception as e:  # noqa: BLE001
                    log.error("".join(_traceback.format_exception(e)))
                    # Its class names the failure in the daemon's status.
                    _exception.name_failure(type(e).__name__, repr(type(e)))
                    raise _Err(str(e)) from None

    WitWorld.__name__ = "WitWorld"
    return WitWorld
