"""A worker: a service's handlers of Wharf's queues and requests, as PyQueuer's
``consume(stop_event, callback)``, streamtools' ``@consumer`` and edeposit's request/answer
daemons gave them, over the same API as :class:`~wharf_client.Client`.

.. code-block:: python

    app = wharf_client.Worker()

    @app.consume("rabbit:orders", concurrency=4)
    def order(message):
        ...                      # returns: acked; raises: retried later, then dead-lettered

    @app.respond("local:lookup")
    def lookup(message):
        return {"title": "..."}  # the answer, at the request's reply-to

    app.run()                    # until SIGTERM or SIGINT

Each handler reads one standing lease stream of its queue: the host leases each message as the
broker delivers it (as many unsettled as the handler's concurrency) and the worker hands it
to the handler as a slot comes free. Each is settled by what its handler did, in batches (one
call settles every message whose handler finished while the previous call was on its way):
acked when it returns; given back after a delay (doubling
from ``backoff`` up to ``max_backoff``) when it raises, until its ``max_deliveries``-th
delivery, then dead-lettered; dead-lettered at once when it raises :class:`Permanent` (or an
error of a class named in ``permanent``). A dead letter carries the error's text, its class's
name and its type in its ``exception``, ``exception_name`` and ``exception_type`` headers. A
handler that runs past its lease loses the message (the host gives it back to its queue for
another delivery) and the worker logs that it did. On SIGTERM the worker takes nothing more,
lets the handlers finish what they hold and settles it, and gives back what it had taken and
not started.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Type
from urllib.parse import quote

from . import errors
from .client import Client, Leased, LeaseStream, Message

log = logging.getLogger("wharf_client.worker")

Handler = Callable[[Message], Any]


class Permanent(Exception):
    """Raised by a handler when retrying cannot help: the message goes to its dead letters at
    once. Raise it ``from`` the error at fault to have the dead letter named by that error's
    class."""


@dataclass
class _Unit:
    """One handler: what it reads, how, and with how much room."""

    kind: str  # "consume" or "respond"
    address: str
    handler: Handler
    concurrency: int
    lease: float
    reply_to: Optional[str] = None
    subscription: Optional["_Subscription"] = None
    handled: int = 0
    lost: int = 0
    slots: threading.Semaphore = field(init=False)
    # The lease stream the taker reads now, and whether it was asked to stop.
    stream: Optional[LeaseStream] = None
    stopping: bool = False

    def __post_init__(self) -> None:
        self.slots = threading.Semaphore(self.concurrency)

    @property
    def connection(self) -> str:
        return self.address.split(":", 1)[0]


@dataclass
class _Subscription:
    """A subscription a handler reads: its name on the host, pattern and service."""

    name: str
    pattern: str
    service: str

    def address(self, client: Client, wait: float = 30.0) -> str:
        """The queue of the host's subscription ``name`` (made if there is none), once the host
        has bound it."""
        path = f"subscriptions/{quote(self.name, safe='')}"
        try:
            view = client._call("GET", path)
        except errors.NotFound:
            try:
                view = client._call(
                    "POST",
                    "subscriptions",
                    json={"name": self.name, "pattern": self.pattern, "service": self.service},
                )
            except errors.Conflict:
                view = client._call("GET", path)  # another worker made it meanwhile
        spec = view["subscription"]
        if (spec["pattern"], spec["service"]) != (self.pattern, self.service) or spec.get("through") or spec.get("to"):
            raise errors.Conflict(
                f"subscription `{self.name}` is another's: pattern {spec['pattern']!r} for "
                f"service {spec['service']!r}, through {spec.get('through')}, to {spec.get('to')}; "
                "name this one otherwise",
                status=409,
            )
        deadline = time.monotonic() + wait
        while (view.get("status") or {}).get("state") != "running":
            if time.monotonic() > deadline:
                status = view.get("status") or {}
                raise errors.Unavailable(
                    f"subscription `{self.name}` is {status.get('state', 'not applied')} "
                    f"({status.get('error') or view.get('refused') or 'no error given'})",
                    status=503,
                )
            time.sleep(0.1)
            view = client._call("GET", path)
        return view["address"]


@dataclass
class _Settling:
    """A lease to settle: acked (``nack`` None) or given back so; the handler's slot it held
    (``slot``: not one given back unstarted) comes free once it is settled."""

    unit: _Unit
    held: Leased
    nack: Optional[Dict[str, Any]]
    handled: bool
    slot: bool = True


class _Settler:
    """Settles the handlers' leases in batches, one call each: while one batch is on its way,
    the next gathers. Frees a handler's slot once its lease is settled."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queue: "queue.SimpleQueue[Optional[_Settling]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="wharf-settle", daemon=True)
        self._thread.start()

    def put(self, settling: _Settling) -> None:
        self._queue.put(settling)

    def close(self) -> None:
        """Settles what is queued, then stops."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MOST_SETTLED:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._flush(batch)

    def _flush(self, batch: List[_Settling]) -> None:
        failed: Dict[str, Tuple[str, str]] = {}
        try:
            report = self._client.settle(
                ack=[s.held for s in batch if s.nack is None],
                nack=[(s.held, s.nack) for s in batch if s.nack is not None],
            )
            failed = {f["lease"]: (f["reason"], f["error"]) for f in report.get("failed", [])}
        except Exception as error:  # noqa: BLE001 - the slots are freed whatever went wrong
            failed = {s.held.lease: ("call", str(error)) for s in batch}
        for settling in batch:
            unit, held = settling.unit, settling.held
            reason, error = failed.get(held.lease, (None, ""))
            if reason is None:
                if settling.handled:
                    unit.handled += 1
            elif reason == "unknown":
                unit.lost += 1
                log.warning(
                    "%s: message %s outlived its lease of %.0f s; the host gave it back to its queue",
                    unit.address, held.message.id, unit.lease,
                )
            else:
                log.warning(
                    "%s: settling message %s failed (%s); the host gives it back at its deadline",
                    unit.address, held.message.id, error,
                )
            if settling.slot:
                unit.slots.release()


_MOST_SETTLED = 1000


class Worker:
    """Runs handlers of queues and requests until it is stopped. ``url``, ``token`` and
    ``client_options`` (``verify``, ``insecure``, ``timeout``) are :class:`Client`'s: by default
    ``WHARF_URL`` and the token the host keeps on its own machine."""

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        lease: float = 30.0,
        poll: float = 5.0,
        max_deliveries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        permanent: Tuple[Type[BaseException], ...] = (),
        **client_options: Any,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if lease <= 0 or poll < 0 or backoff < 0 or max_backoff < backoff:
            raise ValueError("lease must be positive, poll and backoff 0 or more, max_backoff at least backoff")
        self._client_args: Dict[str, Any] = {"token": token, **client_options}
        self._url = url
        self._lease = lease
        self._poll = poll
        self._max_deliveries = max_deliveries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._permanent = (Permanent,) + tuple(permanent)
        self._units: List[_Unit] = []
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None

    # -- declaring handlers -------------------------------------------------------------

    def consume(
        self, address: str, *, concurrency: int = 1, lease: Optional[float] = None
    ) -> Callable[[Handler], Handler]:
        """Runs the decorated function on each message of ``address`` (``connection:queue``),
        up to ``concurrency`` at once."""
        return self._declare("consume", address, concurrency, lease, None)

    def subscribe(
        self,
        pattern: str,
        *,
        service: str,
        name: Optional[str] = None,
        concurrency: int = 1,
        lease: Optional[float] = None,
    ) -> Callable[[Handler], Handler]:
        """Runs the decorated function on each model event whose routing key matches
        ``pattern`` (``Booking.*``), as pubsubpy's ``@subscribe`` did: the worker uses the
        host's subscription ``name`` (by default ``{service}.{pattern}``, ``*`` as ``any`` and
        ``#`` as ``all``), making it when there is none (which takes an admin's token), with no
        plugins and no ``to``, so the host binds its queue and leaves it for the worker to
        read."""
        if not service:
            raise ValueError("a subscription needs the subscribing service's name")
        words = pattern.replace("*", "any").replace("#", "all")
        unit = _Subscription(name or f"{service}.{words}", pattern, service)
        return self._declare("consume", f"subscription:{unit.name}", concurrency, lease, None, unit)

    def respond(
        self,
        address: str,
        *,
        concurrency: int = 1,
        lease: Optional[float] = None,
        reply_to: Optional[str] = None,
    ) -> Callable[[Handler], Handler]:
        """Answers each request of ``address``: what the decorated function returns goes to
        the request's reply-to (or ``reply_to``, ``connection:queue``, for clients that name
        none) with its correlation id and its ``UUID`` header; when the function raises, the
        answer carries edeposit's ``exception`` headers instead. The request is acked once
        its answer is sent."""
        return self._declare("respond", address, concurrency, lease, reply_to)

    def _declare(
        self,
        kind: str,
        address: str,
        concurrency: int,
        lease: Optional[float],
        reply_to: Optional[str],
        subscription: Optional["_Subscription"] = None,
    ) -> Callable[[Handler], Handler]:
        if ":" not in address:
            raise ValueError(f"{address!r} is not an address: write connection:queue")
        if concurrency < 1 or concurrency > 1000:
            raise ValueError("concurrency must be 1 to 1000")

        def register(handler: Handler) -> Handler:
            self._units.append(
                _Unit(
                    kind, address, handler, concurrency, lease or self._lease, reply_to, subscription
                )
            )
            return handler

        return register

    # -- running --------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks a running worker to take nothing more and return once what it holds is
        settled."""
        self._stop.set()

    def run(self) -> None:
        """Runs every handler until :meth:`stop`, SIGTERM or SIGINT (from the main thread)."""
        self._stop.clear()
        restore = self._trap_signals()
        try:
            self._run(until_empty=False)
        finally:
            restore()

    async def run_async(self) -> None:
        """:meth:`run`, from asyncio: the handlers run on the worker's threads; cancelling the
        task (or :meth:`stop`) stops it as SIGTERM does."""
        import asyncio

        self._stop.clear()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._run, False)
        except asyncio.CancelledError:
            self._stop.set()
            raise

    def drain(self, *, quiet: float = 1.0) -> int:
        """Handles what the queues hold now and returns once each has stayed empty for
        ``quiet`` seconds (pubsubpy's ``drain()``); answers how many messages were handled."""
        self._stop.clear()
        before = sum(u.handled for u in self._units)
        self._run(until_empty=True, quiet=quiet)
        return sum(u.handled for u in self._units) - before

    def _trap_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}
        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.signal(number, lambda *_: self._stop.set())

        def restore() -> None:
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore

    def _run(self, until_empty: bool, quiet: float = 1.0) -> None:
        if not self._units:
            raise ValueError("no handlers: declare one with @worker.consume or @worker.respond")
        client = Client(self._url, **self._client_args)
        try:
            for unit in self._units:
                if unit.subscription is not None:
                    unit.address = unit.subscription.address(client)
        except BaseException:
            client.close()
            raise
        size = sum(u.concurrency for u in self._units)
        self._settler = _Settler(client)
        try:
            with ThreadPoolExecutor(max_workers=size, thread_name_prefix="wharf-handler") as pool:
                takers = [
                    threading.Thread(
                        target=self._take,
                        args=(client, unit, pool, until_empty, quiet),
                        name=f"wharf-take-{unit.address}",
                        daemon=True,
                    )
                    for unit in self._units
                ]
                for taker in takers:
                    taker.start()
                for taker in takers:
                    while taker.is_alive():
                        taker.join(0.2)
                        if self._stop.is_set():
                            self._stop_streams()
        finally:
            self._settler.close()
            client.close()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _stop_streams(self) -> None:
        """Asks the host to end each handler's lease stream: its taker then reads what is on
        its way (and gives it back) to the stream's end, rather than hanging up on it."""
        for unit in self._units:
            stream = unit.stream
            if stream is not None and not unit.stopping:
                unit.stopping = True
                try:
                    stream.stop()
                except errors.WharfError as error:
                    log.warning("stopping the lease stream of %s failed: %s", unit.address, error)
                    stream.close()

    def _take(
        self,
        client: Client,
        unit: _Unit,
        pool: ThreadPoolExecutor,
        until_empty: bool,
        quiet: float,
    ) -> None:
        """One handler's taker: reads a lease stream of its address (the host leases each
        message as the broker delivers it, as many unsettled as the handler's concurrency) and
        hands each to the pool as a slot comes free; opens another if the stream breaks off.
        A message whose lease ran out while it waited for a slot is not started: the host has
        given it back to its queue."""
        heartbeat = max(0.1, min(self._poll, quiet) if until_empty else self._poll)
        prefetch = unit.concurrency
        idle_since = time.monotonic()
        drained = False
        while not self._stop.is_set() and not drained:
            try:
                stream = client.lease_stream(
                    unit.address, prefetch=prefetch, lease=unit.lease, heartbeat=heartbeat
                )
            except errors.WharfError as error:
                if isinstance(
                    error, (errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.Invalid)
                ):
                    log.error("taking from %s failed for good: %s", unit.address, error)
                    self._error = error
                    self._stop.set()
                    break
                log.warning("taking from %s failed, trying again: %s", unit.address, error)
                self._stop.wait(1.0)
                continue
            unit.stream, unit.stopping = stream, False
            try:
                with stream:
                    for held in stream:
                        if held is None:
                            if (
                                until_empty
                                and not unit.stopping
                                and time.monotonic() - idle_since >= quiet
                                and self._idle(unit)
                            ):
                                drained = unit.stopping = True
                                stream.stop()
                            continue
                        idle_since = received = time.monotonic()
                        if self._stop.is_set() or not self._slot(unit):
                            # Taken but not started: back to the queue at once.
                            self._settler.put(_Settling(unit, held, {}, False, slot=False))
                            continue
                        if time.monotonic() - received >= unit.lease:
                            unit.slots.release()
                            unit.lost += 1
                            log.warning(
                                "%s: message %s waited out its lease of %.0f s for a free handler; the host gave it back to its queue",
                                unit.address, held.message.id, unit.lease,
                            )
                            continue
                        pool.submit(self._handle, client, unit, held)
            except errors.WharfError as error:
                if not self._stop.is_set():
                    log.warning("the lease stream of %s broke off, opening another: %s", unit.address, error)
                    self._stop.wait(1.0)
            finally:
                unit.stream = None
        self._wait_idle(unit)

    def _slot(self, unit: _Unit) -> bool:
        """Waits for a free slot of the handler; False if the worker is stopped meanwhile."""
        while not unit.slots.acquire(timeout=0.2):
            if self._stop.is_set():
                return False
        return True

    @staticmethod
    def _give_room(unit: _Unit, count: int) -> None:
        for _ in range(count):
            unit.slots.release()

    def _idle(self, unit: _Unit) -> bool:
        """Whether no message of the handler is in hand."""
        taken = 0
        while unit.slots.acquire(blocking=False):
            taken += 1
        self._give_room(unit, taken)
        return taken == unit.concurrency

    def _wait_idle(self, unit: _Unit) -> None:
        for _ in range(unit.concurrency):
            unit.slots.acquire()
        self._give_room(unit, unit.concurrency)

    def _handle(self, client: Client, unit: _Unit, held: Leased) -> None:
        """Runs the handler on one message and hands its lease to the settler, which frees the
        handler's slot once it is settled."""
        settling = _Settling(unit, held, None, True)
        try:
            try:
                result = unit.handler(held.message)
            except BaseException as error:  # noqa: BLE001 - every failure is settled
                settling.handled = False
                if unit.kind == "respond":
                    self._answer(client, unit, held, None, error)
                else:
                    settling.nack = self._failed(unit, held, error)
                if not isinstance(error, Exception):
                    raise
                return
            if unit.kind == "respond":
                self._answer(client, unit, held, result, None)
        except errors.WharfError as error:
            # The answer could not be sent: the request goes back for another try.
            log.warning("%s: answering %s failed (%s); it comes back", unit.address, held.message.id, error)
            settling.handled, settling.nack = False, {}
        finally:
            self._settler.put(settling)

    def _failed(self, unit: _Unit, held: Leased, error: BaseException) -> Dict[str, Any]:
        """A handler raised: how its message goes back. To its dead letters at once if the
        error is permanent or the message has had its deliveries, else to its queue after the
        backoff."""
        cause = error.__cause__ if isinstance(error, Permanent) and error.__cause__ else error
        if isinstance(error, self._permanent) or held.deliveries >= self._max_deliveries:
            log.warning(
                "%s: message %s dead-lettered after %d deliveries: %s: %s",
                unit.address, held.message.id, held.deliveries, type(cause).__name__, cause,
            )
            return {"requeue": False, "exception": cause}
        delay = min(self._backoff * 2 ** (held.deliveries - 1), self._max_backoff)
        log.info(
            "%s: message %s failed (%s: %s), again in %.1f s",
            unit.address, held.message.id, type(error).__name__, error, delay,
        )
        return {"delay": delay}

    def _answer(
        self,
        client: Client,
        unit: _Unit,
        held: Leased,
        result: Any,
        error: Optional[BaseException],
    ) -> None:
        """Sends a request's answer to its reply-to, paired as edeposit's daemons paired it."""
        request = held.message
        to = unit.reply_to or (
            f"{unit.connection}:{request.reply_to}" if request.reply_to else None
        )
        if to is None:
            log.warning("%s: request %s names no reply-to; not answered", unit.address, request.id)
            return
        headers: Dict[str, Any] = {}
        if "UUID" in request.headers:
            headers["UUID"] = request.headers["UUID"]
        payload: Any = b"" if result is None else result
        if error is not None:
            headers["exception"] = str(error)
            headers["exception_name"] = type(error).__name__
            headers["exception_type"] = str(type(error))
            payload = b""
        client.publish(
            to,
            payload,
            headers=headers,
            correlation_id=request.correlation_id or request.id,
        )
