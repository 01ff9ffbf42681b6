"""The Python client against a real host (run by tests/python_client.rs).

Environment: WHARF_URL and WHARF_TOKEN (the host), WHARF_QUEUE (a RabbitMQ queue on
connection `rabbit`). The first argument names the part: `basics` (publish, RPC, an event
reaching a subscription, a leased take whose client dies, typed errors, asyncio) or `durable`
(20 messages through the outbox, printed one id a line, while RabbitMQ is stopped).
"""

import asyncio
import os
import subprocess
import sys
import time

import wharf_client
from wharf_client import AsyncClient, Client


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def hostile(client: Client) -> None:
    # An RPC address cannot climb to another endpoint.
    for address in ("local:../queues/local/x/messages", "local:a/../../users", "local:."):
        try:
            client.rpc(address, "x", timeout=1)
        except ValueError:
            pass
        else:
            raise AssertionError(f"rpc to {address} was sent")
    # Plain HTTP to another machine is refused unless asked; no token goes there unasked.
    try:
        Client("http://wharf.example:8080")
    except ValueError as e:
        check("insecure=True" in str(e), f"says how: {e}")
    else:
        raise AssertionError("plain HTTP to another machine was allowed")
    saved = os.environ.pop("WHARF_TOKEN", None)
    try:
        for remote in (Client("https://wharf.example"), Client("http://wharf.example", insecure=True)):
            check("authorization" not in remote._http.headers, "no token sent to another host")
            remote.close()
    finally:
        if saved is not None:
            os.environ["WHARF_TOKEN"] = saved


def basics(client: Client) -> None:
    hostile(client)
    # Publish, then take.
    sent = client.publish("local:py.in", {"n": 1}, headers={"origin": "python"})
    taken = client.take("local:py.in", timeout=5)
    check(len(taken) == 1 and taken[0].json() == {"n": 1}, f"publish and take: {taken}")
    check(taken[0].id == sent, f"the id the publish answered: {taken[0].id} != {sent}")
    check(taken[0].headers.get("origin") == "python", f"headers: {taken[0].headers}")

    # An RPC answered by a route whose handler replies.
    reply = client.rpc("local:echo.in", "hello", timeout=10)
    check(reply.text == "hello", f"rpc reply: {reply}")

    # A model event reaching a subscription (Booking.* to local:py.events).
    client.publish_event("shop.models.Booking", "created", {"id": 7})
    client.publish_event("shop.models.Order", "created", {"id": 8})
    events = client.take("local:py.events", timeout=10)
    check(len(events) == 1 and events[0].json() == {"id": 7}, f"the event: {events}")
    check(events[0].headers.get("x-wharf-event") == "created", f"{events[0].headers}")
    check(client.take("local:py.events", timeout=1) == [], "no Order event for Booking.*")

    # A leased take whose client dies before acking: the message comes back.
    client.publish("local:py.jobs", "job 1")
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, wharf_client\n"
            "taken = wharf_client.Client().consume('local:py.jobs', lease=1.0)\n"
            "assert taken and taken[0].message.text == 'job 1', taken\n"
            "os._exit(0)  # dies holding it\n",
        ],
        env=os.environ,
        capture_output=True,
        text=True,
    )
    check(child.returncode == 0, f"the dying client: {child.stderr}")
    started = time.monotonic()
    back = client.consume("local:py.jobs", timeout=10, lease=30)
    check(len(back) == 1 and back[0].message.text == "job 1", f"came back: {back}")
    check(time.monotonic() - started < 10, "it came back after its lease")
    back[0].extend(60)
    back[0].ack()
    check(client.consume("local:py.jobs", timeout=0.5) == [], "acked: gone")
    # The context manager acks on success and nacks on an exception.
    client.publish("local:py.jobs", "job 2")
    try:
        with client.lease("local:py.jobs") as message:
            check(message.text == "job 2", f"{message}")
            raise RuntimeError("the work failed")
    except RuntimeError:
        pass
    with client.lease("local:py.jobs") as message:
        check(message is not None and message.text == "job 2", "nacked back, taken again")
    check(client.consume("local:py.jobs", timeout=0.5) == [], "acked by the block")
    # A batch settled in one call: two acked, one back at once, one dead-lettered with its
    # error, one unknown named in the report while the rest are settled all the same.
    for i in range(4):
        client.publish("local:py.jobs", f"batch {i}")
    batch = []
    while len(batch) < 4:
        batch += client.consume("local:py.jobs", 4 - len(batch), timeout=5)
    batch.sort(key=lambda held: held.message.text)
    report = client.settle(
        ack=[batch[0], batch[1].lease],
        nack=[batch[2], (batch[3], {"requeue": False, "exception": KeyError("order 7")}), "no-such-lease"],
    )
    check(report["settled"] == 4, f"four settled: {report}")
    check(
        [(f["lease"], f["reason"]) for f in report["failed"]] == [("no-such-lease", "unknown")],
        f"the unknown one is named: {report}",
    )
    again = client.consume("local:py.jobs", 4, timeout=2)
    check([held.message.text for held in again] == ["batch 2"], f"only the nacked one came back: {again}")
    again[0].ack()
    try:
        client.settle(nack=[(batch[0], {"requeue": True, "exception": KeyError("x")})])
        raise AssertionError("a requeue with an exception was taken")
    except ValueError:
        pass
    try:
        client.settle(ack=[str(i) for i in range(1001)])
        raise AssertionError("1,001 leases were taken in one batch")
    except wharf_client.Invalid as e:
        check(e.field == "ack", f"{e.field}")

    # A lease stream: each message as it comes, at most `prefetch` unsettled; stopped, it
    # ends after what is on its way, and what it leased is still held.
    for i in range(3):
        client.publish("local:py.stream", f"s{i}")
    got = []
    with client.lease_stream("local:py.stream", prefetch=2, heartbeat=0.2) as stream:
        check(len(stream.id) == 32, f"the stream's id: {stream.id!r}")
        quiet = 0
        for held in stream:
            if held is None:
                quiet += 1
                if quiet == 3:
                    check([g.message.text for g in got] == ["s0", "s1"], f"the prefetch holds: {got}")
                    got[0].ack()
                if quiet == 8:
                    stream.stop()
                continue
            got.append(held)
    check([g.message.text for g in got] == ["s0", "s1", "s2"], f"{got}")
    report = client.settle(ack=got[1:])
    check(report["settled"] == 2, f"held after the stream ended: {report}")
    try:
        client.lease_stream("local:py.stream", prefetch=0)
        raise AssertionError("a stream of prefetch 0 was opened")
    except wharf_client.Invalid as e:
        check(e.field == "prefetch", f"{e.field}")

    # Typed errors, from the API's one error shape.
    try:
        Client(token="wharf_not_a_token").publish("local:py.in", "x")
        raise AssertionError("a bad token was taken")
    except wharf_client.Unauthorized as e:
        check(e.status == 401, f"{e.status}")
    try:
        client.publish("local:py.in", "x", headers={"bad\nname": "v"})
        raise AssertionError("a bad header name was taken")
    except wharf_client.Invalid as e:
        check(e.status == 400 and e.field, f"names the field: {e.field!r} {e}")
    try:
        client.rpc("local:nobody.answers", "ping", timeout=0.5)
        raise AssertionError("an RPC nobody answers returned")
    except wharf_client.Timeout:
        pass
    try:
        client.consume("local:py.jobs", lease=7200)
        raise AssertionError("a two-hour lease was taken")
    except wharf_client.Invalid as e:
        check(e.field == "lease_ms", f"{e.field}")
    try:
        wharf_client.Leased("no-such-lease", 0, wharf_client.Message(), client).ack()
        raise AssertionError("an unknown lease was acked")
    except wharf_client.NotFound:
        pass
    try:
        Client(url="http://127.0.0.1:9").publish("local:py.in", "x")
        raise AssertionError("a host that is not there answered")
    except wharf_client.Unreachable:
        pass
    check(issubclass(wharf_client.Invalid, wharf_client.WharfError), "one base class")

    asyncio.run(with_asyncio())


async def with_asyncio() -> None:
    async with AsyncClient() as client:
        sent = await client.publish("local:py.async", b"\xff\xfe binary")
        taken = await client.consume("local:py.async", timeout=5)
        check(taken[0].message.payload == b"\xff\xfe binary", f"{taken}")
        check(taken[0].message.id == sent, "the same id")
        await taken[0].ack()
        replies = await asyncio.gather(
            *(client.rpc("local:echo.in", f"call {i}", timeout=10) for i in range(5))
        )
        check([r.text for r in replies] == [f"call {i}" for i in range(5)], f"{replies}")
        await client.publish_event("Booking", "updated", {"id": 9}, durable=True)
        events = await client.take("local:py.events", timeout=10)
        check(events and events[0].json() == {"id": 9}, f"a durable event: {events}")
        try:
            await client.rpc("local:nobody.answers", "ping", timeout=0.5)
            raise AssertionError("an RPC nobody answers returned")
        except wharf_client.Timeout:
            pass
        await client.publish("local:py.astream", "a0")
        async with await client.lease_stream("local:py.astream", heartbeat=0.2) as stream:
            async for held in stream:
                if held is not None:
                    check(held.message.text == "a0", f"{held}")
                    await held.ack()
                    await stream.stop()


def durable(client: Client) -> None:
    queue = os.environ["WHARF_QUEUE"]
    ids = client.send_durable_batch(
        [(f"rabbit:{queue}", {"n": i}) for i in range(19)], key="order-1"
    )
    ids.append(client.send_durable(f"rabbit:{queue}", {"n": 19}, key="order-1"))
    for id in ids:
        print(id)


if __name__ == "__main__":
    with Client() as client:
        {"basics": basics, "durable": durable}[sys.argv[1]](client)
    print("ok", file=sys.stderr)
