"""The clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio), one method each
for what a service asks of Wharf. Both speak Wharf's HTTP API with an API token."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote

import httpx

from . import errors

Payload = Union[str, bytes, dict, list, int, float, bool, None]


@dataclass
class Message:
    """A message as Wharf's API carries it (the JSON form of its `Message`)."""

    payload: bytes = b""
    topic: str = ""
    id: str = ""
    key: Optional[bytes] = None
    headers: Dict[str, Any] = field(default_factory=dict)
    content_type: Optional[str] = None
    correlation_id: Optional[str] = None
    reply_to: Optional[str] = None
    priority: Optional[int] = None
    expiration_ms: Optional[int] = None
    persistent: bool = True
    timestamp_ms: int = 0

    @property
    def text(self) -> str:
        """The payload as UTF-8 text."""
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)

    @classmethod
    def from_json(cls, doc: Dict[str, Any]) -> "Message":
        if "payload_base64" in doc:
            payload = base64.b64decode(doc["payload_base64"])
        else:
            payload = str(doc.get("payload") or "").encode("utf-8")
        key = None
        if doc.get("key_base64") is not None:
            key = base64.b64decode(doc["key_base64"])
        elif doc.get("key") is not None:
            key = str(doc["key"]).encode("utf-8")
        return cls(
            payload=payload,
            topic=doc.get("topic") or "",
            id=doc.get("id") or "",
            key=key,
            headers=dict(doc.get("headers") or {}),
            content_type=doc.get("content_type"),
            correlation_id=doc.get("correlation_id"),
            reply_to=doc.get("reply_to"),
            priority=doc.get("priority"),
            expiration_ms=doc.get("expiration_ms"),
            persistent=doc.get("persistent", True),
            timestamp_ms=doc.get("timestamp_ms") or 0,
        )


def _message_json(
    payload: Union[Payload, Message],
    *,
    headers: Optional[Dict[str, Any]] = None,
    key: Optional[Union[str, bytes]] = None,
    content_type: Optional[str] = None,
    correlation_id: Optional[str] = None,
    reply_to: Optional[str] = None,
    id: Optional[str] = None,
) -> Dict[str, Any]:
    """The JSON form of a message: a :class:`Message`, or a payload with the fields given."""
    if isinstance(payload, Message):
        message = payload
        doc: Dict[str, Any] = {
            "topic": message.topic,
            "headers": message.headers,
            "persistent": message.persistent,
        }
        for name in ("id", "content_type", "correlation_id", "reply_to", "priority", "expiration_ms"):
            value = getattr(message, name)
            if value:
                doc[name] = value
        body: Payload = message.payload
        key = message.key if key is None else key
    else:
        doc = {}
        body = payload
    if isinstance(body, bytes):
        try:
            doc["payload"] = body.decode("utf-8")
        except UnicodeDecodeError:
            doc["payload_base64"] = base64.b64encode(body).decode("ascii")
    elif isinstance(body, str):
        doc["payload"] = body
    else:
        # Anything else is sent as a JSON document.
        doc["payload"] = json.dumps(body, separators=(",", ":"))
        doc.setdefault("content_type", "application/json")
    if isinstance(key, bytes):
        doc["key_base64"] = base64.b64encode(key).decode("ascii")
    elif key is not None:
        doc["key"] = key
    for name, value in (
        ("headers", headers),
        ("content_type", content_type),
        ("correlation_id", correlation_id),
        ("reply_to", reply_to),
        ("id", id),
    ):
        if value is not None:
            doc[name] = value
    return doc


def _queue_path(address: str) -> str:
    connection, sep, queue = address.partition(":")
    if not sep or not connection or not queue:
        raise errors.Invalid(
            f"`{address}` is not an address: write it as connection:queue", field="address"
        )
    return f"queues/{quote(connection, safe='')}/{quote(queue, safe='')}"


def _ms(seconds: float, name: str) -> int:
    if seconds < 0:
        raise errors.Invalid(f"{name} must be 0 or more seconds", field=name)
    return int(round(seconds * 1000))


def _stream_request(
    http: Union[httpx.Client, httpx.AsyncClient], address: str, prefetch: int, lease: float, heartbeat: float
) -> httpx.Request:
    """The request that opens a lease stream. A read that waits well past the heartbeat
    means the host is gone."""
    params = {
        "prefetch": prefetch,
        "lease_ms": _ms(lease, "lease"),
        "heartbeat_ms": _ms(heartbeat, "heartbeat"),
    }
    timeout = httpx.Timeout(http.timeout.connect or 10.0, read=heartbeat + 30.0)
    return http.build_request("POST", f"{_queue_path(address)}/lease/stream", params=params, timeout=timeout)


def _streamed(line: str, leased: Any, client: Any) -> Any:
    """One line of a lease stream as ``leased`` (:class:`Leased` or :class:`AsyncLeased`),
    or the error it reports raised."""
    doc = json.loads(line)
    if "error" in doc:
        raise errors.from_answer(200, doc)
    return leased(
        doc["lease"], doc["deadline_ms"], Message.from_json(doc["message"]), client, doc.get("deliveries", 1)
    )


class LeaseStream:
    """A standing leased take (:meth:`Client.lease_stream`): the host leases each message as
    the broker delivers it and sends it down one long answer. Iterating yields each
    :class:`Leased`, or ``None`` when a heartbeat passed without one; it ends when the stream
    is stopped (:meth:`stop`, or an admin) or the host stops, and raises
    :class:`~wharf_client.WharfError` if the stream fails. Leases still held when it ends stay
    held until settled or due."""

    def __init__(self, client: "Client", address: str, prefetch: int, lease: float, heartbeat: float):
        self._client = client
        request = _stream_request(client._http, address, prefetch, lease, heartbeat)
        try:
            self._response = client._http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise errors.Unreachable(f"cannot reach the host: {e}") from e
        if not self._response.is_success:
            self._response.read()
            self._response.close()
            _answer(self._response)
        self.id: str = self._response.headers.get("wharf-lease-stream", "")

    def __iter__(self) -> Iterator[Optional[Leased]]:
        try:
            for line in self._response.iter_lines():
                if not line:
                    yield None
                    continue
                yield _streamed(line, Leased, self._client)
        except httpx.HTTPError as e:
            raise errors.Unreachable(f"the host's lease stream broke off: {e}") from e

    def stop(self) -> None:
        """Asks the host to end the stream after what is on its way (iterating then finishes
        with those). Stopping one already over does nothing."""
        try:
            self._client._call("DELETE", f"leases/streams/{quote(self.id, safe='')}")
        except errors.NotFound:
            pass

    def close(self) -> None:
        """Hangs up at once: messages the host sent and this did not read stay leased until
        their deadlines (:meth:`stop`, then iterating to the end, hands them over instead)."""
        self._response.close()

    def __enter__(self) -> "LeaseStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLeaseStream:
    """:class:`LeaseStream`, for :class:`AsyncClient`."""

    def __init__(self, client: "AsyncClient"):
        self._client = client
        self._response: Optional[httpx.Response] = None
        self.id = ""

    async def _open(self, address: str, prefetch: int, lease: float, heartbeat: float) -> None:
        request = _stream_request(self._client._http, address, prefetch, lease, heartbeat)
        try:
            response = await self._client._http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise errors.Unreachable(f"cannot reach the host: {e}") from e
        if not response.is_success:
            await response.aread()
            await response.aclose()
            _answer(response)
        self._response = response
        self.id = response.headers.get("wharf-lease-stream", "")

    async def __aiter__(self) -> AsyncIterator[Optional[AsyncLeased]]:
        assert self._response is not None
        try:
            async for line in self._response.aiter_lines():
                if not line:
                    yield None
                    continue
                yield _streamed(line, AsyncLeased, self._client)
        except httpx.HTTPError as e:
            raise errors.Unreachable(f"the host's lease stream broke off: {e}") from e

    async def stop(self) -> None:
        """:meth:`LeaseStream.stop`."""
        try:
            await self._client._call("DELETE", f"leases/streams/{quote(self.id, safe='')}")
        except errors.NotFound:
            pass

    async def close(self) -> None:
        """:meth:`LeaseStream.close`."""
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> "AsyncLeaseStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _answer(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        body: Any = None
    else:
        try:
            body = response.json()
        except ValueError:
            body = response.text
    if response.is_success:
        return body
    raise errors.from_answer(response.status_code, body)


def _state_dir() -> str:
    if os.environ.get("WHARF_STATE_DIR"):
        return os.environ["WHARF_STATE_DIR"]
    if os.environ.get("XDG_STATE_HOME"):
        return os.path.join(os.environ["XDG_STATE_HOME"], "wharf")
    return os.path.join(os.path.expanduser("~"), ".local", "state", "wharf")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _private(path: str) -> bool:
    """Whether ``path`` is this user's and no one else can write it (as the host checks)."""
    info = os.stat(path)
    return info.st_uid in (os.geteuid(), 0) and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _token(token: Optional[str], base: str) -> Optional[str]:
    """``token``, else ``WHARF_TOKEN``, else, only for a host on this machine (a loopback
    address), the token the host keeps for its CLI, as `wharf` itself finds it: an admin's
    token is never sent to another host unasked."""
    if token is not None:
        return token
    if os.environ.get("WHARF_TOKEN"):
        return os.environ["WHARF_TOKEN"]
    url = httpx.URL(base)
    if not _is_loopback(url.host or ""):
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    host = (url.host or "").replace(":", "_")
    if host == "localhost":
        host = "127.0.0.1"
    path = os.path.join(_state_dir(), f"token-{host}-{port}")
    try:
        if not _private(path):
            raise errors.Unauthorized(
                f"the CLI's token at {path} could have been written by another user; it is not used"
            )
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _base(url: Optional[str], insecure: bool) -> str:
    """The host's address; plain ``http://`` only to this machine unless ``insecure``: a
    token sent over it to another host can be read on the way."""
    base = (url or os.environ.get("WHARF_URL") or "http://127.0.0.1:8080").rstrip("/")
    parsed = httpx.URL(base)
    if parsed.scheme == "http" and not _is_loopback(parsed.host or "") and not insecure:
        raise ValueError(
            f"{base} is plain HTTP to another machine: the token would cross the network in "
            "clear. Use https://, or pass insecure=True if the network is yours"
        )
    return base


def _rpc_path(address: str) -> str:
    """``rpc/{connection}/{address}``, each segment encoded; a ``.`` or ``..`` segment, which
    would climb to another endpoint, is refused."""
    connection, _, rest = address.partition(":")
    segments = [connection, *rest.split("/")]
    if not connection or not rest or any(s in (".", "..") for s in segments):
        raise ValueError(f"`{address}` is not connection:address (no `.` or `..` segment)")
    return "rpc/" + "/".join(quote(s, safe="") for s in segments)


def _nack_json(
    requeue: bool, delay: Optional[float], exception: Optional[BaseException]
) -> Dict[str, Any]:
    """The body of a nack: back to the queue (after ``delay`` seconds), or to the dead letters
    with ``exception`` as edeposit's daemons reported one (its text, its class's name, its
    type), cut to the lengths the host takes."""
    if delay is not None and not requeue:
        raise ValueError("a delay goes with requeue=True")
    if exception is not None and requeue:
        raise ValueError("an exception goes with requeue=False")
    doc: Dict[str, Any] = {"requeue": requeue}
    if delay is not None and _ms(delay, "delay") > 0:
        doc["delay_ms"] = _ms(delay, "delay")
    if exception is not None:
        doc["exception"] = _exception_json(exception)
    return doc


def _cut(text: str, most: int) -> str:
    """``text`` in at most ``most`` UTF-8 bytes, cut at a character."""
    return text.encode("utf-8")[:most].decode("utf-8", "ignore")


def _exception_json(exception: BaseException) -> Dict[str, str]:
    def printable(text: str) -> str:
        return "".join(c if c.isprintable() else " " for c in text)

    return {
        "message": _cut(str(exception), 4096),
        "name": _cut(printable(type(exception).__name__), 255) or "Exception",
        "type": _cut(printable(str(type(exception))), 255),
    }


NackItem = Union["Leased", "AsyncLeased", str, Tuple[Union["Leased", "AsyncLeased", str], Dict[str, Any]]]


def _lease_name(held: Union["Leased", "AsyncLeased", str]) -> str:
    return held if isinstance(held, str) else held.lease


def _settle_json(ack: Iterable[Any], nack: Iterable[NackItem]) -> Dict[str, Any]:
    """The body of a batch settle: ``ack`` leases (or their names), and ``nack`` leases, each
    alone (back at once) or paired with :meth:`Leased.nack`'s keywords (``requeue``,
    ``delay``, ``exception``)."""
    nacks = []
    for item in nack:
        held, options = item if isinstance(item, tuple) else (item, {})
        unknown = set(options) - {"requeue", "delay", "exception"}
        if unknown:
            raise ValueError(f"a nack takes requeue, delay and exception, not {sorted(unknown)}")
        one = _nack_json(options.get("requeue", True), options.get("delay"), options.get("exception"))
        one["lease"] = _lease_name(held)
        nacks.append(one)
    return {"ack": [_lease_name(held) for held in ack], "nack": nacks}


@dataclass
class Leased:
    """A message taken with a lease: held unsettled until :meth:`ack`, :meth:`nack` or its
    deadline (then it goes back to its queue). ``deliveries`` counts its deliveries, this one
    included."""

    lease: str
    deadline_ms: int
    message: Message
    _client: "Client" = field(repr=False, default=None)  # type: ignore[assignment]
    deliveries: int = 1

    def ack(self) -> None:
        """Done with: removed from its queue."""
        self._client._call("POST", f"leases/{quote(self.lease, safe='')}/ack")

    def nack(
        self,
        requeue: bool = True,
        *,
        delay: Optional[float] = None,
        exception: Optional[BaseException] = None,
    ) -> None:
        """Back to its queue (after ``delay`` seconds: a retry), or (``requeue=False``) to its
        dead letters, with ``exception`` in their ``exception`` headers."""
        self._client._call(
            "POST",
            f"leases/{quote(self.lease, safe='')}/nack",
            json=_nack_json(requeue, delay, exception),
        )

    def extend(self, seconds: float) -> int:
        """Held for ``seconds`` more from now; returns the new deadline (ms since the epoch)."""
        answer = self._client._call(
            "POST",
            f"leases/{quote(self.lease, safe='')}/extend",
            json={"lease_ms": _ms(seconds, "seconds")},
        )
        self.deadline_ms = answer["deadline_ms"]
        return self.deadline_ms


@dataclass
class AsyncLeased:
    """:class:`Leased`, for :class:`AsyncClient`."""

    lease: str
    deadline_ms: int
    message: Message
    _client: "AsyncClient" = field(repr=False, default=None)  # type: ignore[assignment]
    deliveries: int = 1

    async def ack(self) -> None:
        await self._client._call("POST", f"leases/{quote(self.lease, safe='')}/ack")

    async def nack(
        self,
        requeue: bool = True,
        *,
        delay: Optional[float] = None,
        exception: Optional[BaseException] = None,
    ) -> None:
        await self._client._call(
            "POST",
            f"leases/{quote(self.lease, safe='')}/nack",
            json=_nack_json(requeue, delay, exception),
        )

    async def extend(self, seconds: float) -> int:
        answer = await self._client._call(
            "POST",
            f"leases/{quote(self.lease, safe='')}/extend",
            json={"lease_ms": _ms(seconds, "seconds")},
        )
        self.deadline_ms = answer["deadline_ms"]
        return self.deadline_ms


class Client:
    """A blocking client of one Wharf host.

    ``url`` is the host (``http://127.0.0.1:8080`` by default, or ``WHARF_URL``); plain
    ``http://`` to another machine is refused unless ``insecure`` (the token would cross the
    network in clear). ``token`` an API token (``WHARF_TOKEN`` by default, else, only for a
    host on this machine, the token it keeps for its CLI). Use it as a context manager, or
    call :meth:`close`.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        verify: Union[bool, str] = True,
        insecure: bool = False,
    ):
        base = _base(url, insecure)
        headers = {"User-Agent": "wharf-client-python/0.1"}
        token = _token(token, base)
        if token:
            headers["Authorization"] = f"Bearer {token.strip()}"
        self._http = httpx.Client(
            base_url=f"{base}/api/v1/", headers=headers, timeout=timeout, verify=verify
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise errors.Timeout(f"no answer from the host in time: {e}") from e
        except httpx.HTTPError as e:
            raise errors.Unreachable(f"cannot reach the host: {e}") from e
        return _answer(response)

    def publish(self, address: str, payload: Union[Payload, Message] = b"", **fields: Any) -> str:
        """Publishes to ``connection:queue``; returns the message's id once the broker has it.
        ``fields``: ``headers``, ``key``, ``content_type``, ``correlation_id``, ``reply_to``, ``id``."""
        answer = self._call(
            "POST", f"{_queue_path(address)}/messages", json=_message_json(payload, **fields)
        )
        return answer["id"]

    def rpc(
        self, address: str, payload: Union[Payload, Message] = b"", *, timeout: float = 5.0, **fields: Any
    ) -> Message:
        """Sends a request to ``connection:address`` and waits up to ``timeout`` seconds for
        its reply (:class:`wharf_client.Timeout` if none comes)."""
        answer = self._call(
            "POST",
            _rpc_path(address),
            params={"timeout_ms": _ms(timeout, "timeout")},
            json=_message_json(payload, **fields),
            timeout=timeout + 10,
        )
        return Message.from_json(answer)

    def publish_event(self, model: str, event: str, data: Any = None, *, durable: bool = False) -> str:
        """Publishes a model event (routing key ``{Model}.{event}``, the model's last dotted
        part) with ``data`` as its JSON; ``durable`` sends it through the outbox. Returns its id."""
        answer = self._call(
            "POST",
            f"events/{quote(model, safe='')}/{quote(event, safe='')}",
            params={"durable": "true"} if durable else None,
            json={} if data is None else data,
        )
        return answer["id"]

    def send_durable(self, to: str, payload: Union[Payload, Message] = b"", **fields: Any) -> str:
        """Hands a message for ``to`` (``connection:address``) to the outbox: once this returns
        it is committed, and the host sends it when the broker takes it. Returns its id."""
        return self.send_durable_batch([(to, payload)], **fields)[0]

    def send_durable_batch(
        self, messages: Sequence[Tuple[str, Union[Payload, Message]]], **fields: Any
    ) -> List[str]:
        """Hands several messages to the outbox, all or none: ``[(to, payload), …]``."""
        body = {
            "messages": [
                {"to": to, "message": _message_json(payload, **fields)} for to, payload in messages
            ]
        }
        return list(self._call("POST", "outbox", json=body)["ids"])

    def drain(self, *units: str, timeout: float = 60.0) -> Dict[str, Any]:
        """Processes every message outstanding on the routes and subscriptions named (none:
        every one of the host), as pubsubpy's ``drain()`` did; returns the host's report
        (``processed``, ``complete`` and each unit's count). A unit held stopped runs for the
        drain and is held stopped again after it."""
        return self._call(
            "POST",
            "drain",
            json={"units": list(units), "timeout_secs": max(1, int(round(timeout)))},
            timeout=timeout + 10,
        )

    def take(self, address: str, count: int = 1, *, timeout: float = 5.0) -> List[Message]:
        """Takes up to ``count`` messages, waiting up to ``timeout`` seconds, each acked as it
        is handed over (use :meth:`consume` for at-least-once)."""
        answer = self._call(
            "POST",
            f"{_queue_path(address)}/take",
            params={"count": count, "timeout_ms": _ms(timeout, "timeout")},
            timeout=timeout + 10,
        )
        return [Message.from_json(doc) for doc in answer]

    def consume(
        self, address: str, count: int = 1, *, timeout: float = 5.0, lease: float = 30.0
    ) -> List[Leased]:
        """Takes up to ``count`` messages, each held unsettled for ``lease`` seconds: settle
        each with ``.ack()``, ``.nack()`` or ``.extend()``. One not settled in time goes back
        to its queue, so a service that dies while working on it loses nothing."""
        answer = self._call(
            "POST",
            f"{_queue_path(address)}/lease",
            params={
                "count": count,
                "timeout_ms": _ms(timeout, "timeout"),
                "lease_ms": _ms(lease, "lease"),
            },
            timeout=timeout + 10,
        )
        return [
            Leased(
                doc["lease"],
                doc["deadline_ms"],
                Message.from_json(doc["message"]),
                self,
                doc.get("deliveries", 1),
            )
            for doc in answer
        ]

    def lease_stream(
        self,
        address: str,
        *,
        prefetch: int = 64,
        lease: float = 30.0,
        heartbeat: float = 10.0,
    ) -> "LeaseStream":
        """Opens a standing leased take of ``address``: each message leased for ``lease``
        seconds as the broker delivers it, at most ``prefetch`` unsettled at once (the next
        comes as one is settled). Iterate it for the messages (``None`` after ``heartbeat``
        seconds without one); :meth:`LeaseStream.stop` ends it after what is on its way."""
        return LeaseStream(self, address, prefetch, lease, heartbeat)

    def settle(self, ack: Iterable[Any] = (), nack: Iterable[NackItem] = ()) -> Dict[str, Any]:
        """Settles many leases in one call (up to 1,000): each of ``ack`` acked, each of
        ``nack`` given back, alone (to its queue at once) or as ``(leased, {"delay": 5})`` or
        ``(leased, {"requeue": False, "exception": error})``. Returns the host's report:
        ``settled`` and ``failed`` (each ``lease``, ``reason`` and ``error``; ``reason``
        ``unknown`` means it ran out and is back in its queue); the rest are settled all the
        same."""
        return self._call("POST", "leases/settle", json=_settle_json(ack, nack))

    @contextlib.contextmanager
    def lease(self, address: str, *, timeout: float = 5.0, lease: float = 30.0) -> Iterator[Optional[Message]]:
        """One message under a lease: acked when the block ends, nacked (back to its queue) if
        it raises. Yields ``None`` when nothing came within ``timeout``."""
        taken = self.consume(address, 1, timeout=timeout, lease=lease)
        if not taken:
            yield None
            return
        held = taken[0]
        try:
            yield held.message
        except BaseException:
            held.nack()
            raise
        held.ack()


class AsyncClient:
    """:class:`Client` for asyncio: the same methods, awaited."""

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        verify: Union[bool, str] = True,
        insecure: bool = False,
    ):
        base = _base(url, insecure)
        headers = {"User-Agent": "wharf-client-python/0.1"}
        token = _token(token, base)
        if token:
            headers["Authorization"] = f"Bearer {token.strip()}"
        self._http = httpx.AsyncClient(
            base_url=f"{base}/api/v1/", headers=headers, timeout=timeout, verify=verify
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise errors.Timeout(f"no answer from the host in time: {e}") from e
        except httpx.HTTPError as e:
            raise errors.Unreachable(f"cannot reach the host: {e}") from e
        return _answer(response)

    async def publish(self, address: str, payload: Union[Payload, Message] = b"", **fields: Any) -> str:
        answer = await self._call(
            "POST", f"{_queue_path(address)}/messages", json=_message_json(payload, **fields)
        )
        return answer["id"]

    async def rpc(
        self, address: str, payload: Union[Payload, Message] = b"", *, timeout: float = 5.0, **fields: Any
    ) -> Message:
        answer = await self._call(
            "POST",
            _rpc_path(address),
            params={"timeout_ms": _ms(timeout, "timeout")},
            json=_message_json(payload, **fields),
            timeout=timeout + 10,
        )
        return Message.from_json(answer)

    async def publish_event(self, model: str, event: str, data: Any = None, *, durable: bool = False) -> str:
        answer = await self._call(
            "POST",
            f"events/{quote(model, safe='')}/{quote(event, safe='')}",
            params={"durable": "true"} if durable else None,
            json={} if data is None else data,
        )
        return answer["id"]

    async def send_durable(self, to: str, payload: Union[Payload, Message] = b"", **fields: Any) -> str:
        return (await self.send_durable_batch([(to, payload)], **fields))[0]

    async def send_durable_batch(
        self, messages: Sequence[Tuple[str, Union[Payload, Message]]], **fields: Any
    ) -> List[str]:
        body = {
            "messages": [
                {"to": to, "message": _message_json(payload, **fields)} for to, payload in messages
            ]
        }
        return list((await self._call("POST", "outbox", json=body))["ids"])

    async def drain(self, *units: str, timeout: float = 60.0) -> Dict[str, Any]:
        """:meth:`Client.drain`."""
        return await self._call(
            "POST",
            "drain",
            json={"units": list(units), "timeout_secs": max(1, int(round(timeout)))},
            timeout=timeout + 10,
        )

    async def take(self, address: str, count: int = 1, *, timeout: float = 5.0) -> List[Message]:
        answer = await self._call(
            "POST",
            f"{_queue_path(address)}/take",
            params={"count": count, "timeout_ms": _ms(timeout, "timeout")},
            timeout=timeout + 10,
        )
        return [Message.from_json(doc) for doc in answer]

    async def consume(
        self, address: str, count: int = 1, *, timeout: float = 5.0, lease: float = 30.0
    ) -> List[AsyncLeased]:
        answer = await self._call(
            "POST",
            f"{_queue_path(address)}/lease",
            params={
                "count": count,
                "timeout_ms": _ms(timeout, "timeout"),
                "lease_ms": _ms(lease, "lease"),
            },
            timeout=timeout + 10,
        )
        return [
            AsyncLeased(
                doc["lease"],
                doc["deadline_ms"],
                Message.from_json(doc["message"]),
                self,
                doc.get("deliveries", 1),
            )
            for doc in answer
        ]

    async def lease_stream(
        self,
        address: str,
        *,
        prefetch: int = 64,
        lease: float = 30.0,
        heartbeat: float = 10.0,
    ) -> "AsyncLeaseStream":
        """:meth:`Client.lease_stream`: ``async for`` over it."""
        stream = AsyncLeaseStream(self)
        await stream._open(address, prefetch, lease, heartbeat)
        return stream

    async def settle(self, ack: Iterable[Any] = (), nack: Iterable[NackItem] = ()) -> Dict[str, Any]:
        """:meth:`Client.settle`."""
        return await self._call("POST", "leases/settle", json=_settle_json(ack, nack))

    @contextlib.asynccontextmanager
    async def lease(self, address: str, *, timeout: float = 5.0, lease: float = 30.0) -> AsyncIterator[Optional[Message]]:
        taken = await self.consume(address, 1, timeout=timeout, lease=lease)
        if not taken:
            yield None
            return
        held = taken[0]
        try:
            yield held.message
        except BaseException:
            await held.nack()
            raise
        await held.ack()
