"""A client for services that talk to Wharf: publish, RPC, model events, durable sends
through the outbox and leased takes, over Wharf's HTTP API with a token, blocking
(:class:`Client`) or with asyncio (:class:`AsyncClient`); and :class:`Worker`, which runs a
service's handlers of queues and requests (leased, retried, dead-lettered, answered); and
:mod:`wharf_client.outbox`, messages written in the application's own transactions. Errors
are typed, one class per code of the API's error shape (:mod:`wharf_client.errors`)."""

from .client import AsyncClient, AsyncLeased, AsyncLeaseStream, Client, Leased, LeaseStream, Message
from .worker import Permanent, Worker
from . import outbox
from .errors import (
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    Internal,
    Invalid,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Timeout,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unreachable,
    UnsupportedMediaType,
    WharfError,
)

__all__ = [
    "AsyncClient",
    "AsyncLeased",
    "AsyncLeaseStream",
    "BadGateway",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "Internal",
    "Invalid",
    "Leased",
    "LeaseStream",
    "Message",
    "outbox",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "Permanent",
    "Timeout",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "UnsupportedMediaType",
    "WharfError",
    "Worker",
]
