"""Outbound HTTP for handlers and daemons, over the standard ``wasi:http/outgoing-handler``.

The host sends a request only to an origin the plugin's ``http:`` grants name
(``http:https://api.example.com``); any other raises :class:`HttpError` saying it was denied.
Redirects are not followed: a 3xx comes back as it is. Secrets (an API key) belong in the
plugin's config, which the admin can seal, never in the plugin's code::

    from wharf_plugin import config, http

    answer = http.get("https://api.example.com/rates")
    sent = http.request("POST", "https://api.example.com/orders", body=b"{}",
                        headers={"authorization": f"Bearer {config.require('api_key')}"})

An :class:`HttpError` raised from a handler is retried (it is a :class:`~wharf_plugin.Retry`):
the service may come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from componentize_py_types import Err as _Err
from wit_world.imports import outgoing_handler as _handler
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_http_types as _t

from . import Retry

_METHODS = {
    "GET": _t.Method_Get,
    "HEAD": _t.Method_Head,
    "POST": _t.Method_Post,
    "PUT": _t.Method_Put,
    "DELETE": _t.Method_Delete,
    "PATCH": _t.Method_Patch,
    "OPTIONS": _t.Method_Options,
}


class HttpError(Retry):
    """The request was refused by the host (no grant, a limit) or failed on the network."""


@dataclass
class Response:
    status: int
    headers: list = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str, default=None):
        """The first value of header ``name`` (case-insensitive), as text."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value.decode("utf-8", "replace")
        return default

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        import json

        return json.loads(self.body)


def _code(error) -> HttpError:
    if isinstance(error, _t.ErrorCode_HttpRequestDenied):
        return HttpError("denied: no http: grant names this origin")
    if isinstance(error, _t.ErrorCode_ConnectionLimitReached):
        return HttpError("refused: too many requests for this call")
    return HttpError(type(error).__name__.removeprefix("ErrorCode_"))


def request(
    method: str,
    url: str,
    headers: Optional[dict] = None,
    body: Union[bytes, str, None] = None,
    timeout_ms: Optional[int] = None,
) -> Response:
    """Sends ``method url`` with ``headers`` and ``body`` and reads the whole answer."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise HttpError(f"`{url}` is not an http:// or https:// URL")
    cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority, path = rest[:cut], rest[cut:] or "/"
    if path.startswith("?"):
        path = "/" + path
    fields = _t.Fields()
    for name, value in (headers or {}).items():
        try:
            fields.append(name, value.encode() if isinstance(value, str) else bytes(value))
        except _Err as e:
            raise HttpError(f"header `{name}`: {type(e.value).__name__}") from None
    outgoing = _t.OutgoingRequest(fields)
    method = method.upper()
    outgoing.set_method(_METHODS[method]() if method in _METHODS else _t.Method_Other(method))
    outgoing.set_scheme(_t.Scheme_Https() if scheme.lower() == "https" else _t.Scheme_Http())
    outgoing.set_authority(authority)
    outgoing.set_path_with_query(path)
    options = _t.RequestOptions()
    if timeout_ms is not None:
        options.set_first_byte_timeout(timeout_ms * 1_000_000)
        options.set_between_bytes_timeout(timeout_ms * 1_000_000)
    sink = outgoing.body()
    try:
        pending = _handler.handle(outgoing, options)
    except _Err as e:
        raise _code(e.value) from None
    data = body.encode() if isinstance(body, str) else (body or b"")
    with sink.write() as stream:
        for at in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[at : at + 4096])
    try:
        _t.OutgoingBody.finish(sink, None)
    except _Err as e:
        raise _code(e.value) from None
    with pending.subscribe() as ready:
        ready.block()
    # option<result<result<incoming-response, error-code>>>: ready, taken once, and then
    # the response or why there is none.
    answer = pending.get()
    if answer is None or isinstance(answer, _Err):
        raise HttpError("the response was lost")
    if isinstance(answer.value, _Err):
        raise _code(answer.value.value)
    response = answer.value.value
    status = response.status()
    got_headers = response.headers().entries()
    incoming = response.consume()
    chunks = []
    with incoming.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(64 * 1024))
            except _Err as e:
                if isinstance(e.value, _streams.StreamError_Closed):
                    break
                raise HttpError("reading the response failed") from None
    _t.IncomingBody.finish(incoming)
    return Response(status=status, headers=got_headers, body=b"".join(chunks))


def get(url: str, headers: Optional[dict] = None, timeout_ms: Optional[int] = None) -> Response:
    """``GET url``."""
    return request("GET", url, headers=headers, timeout_ms=timeout_ms)
