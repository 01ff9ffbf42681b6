"""The Python worker against a real host (run by tests/python_client.rs).

Environment: WHARF_URL and WHARF_TOKEN (the host), WHARF_QUEUE (a RabbitMQ queue on connection
`rabbit`). The first argument names the part:

- `consume`: 40 messages on the embedded broker and 40 on RabbitMQ through handlers of
  concurrency 4; one message fails twice and is handled on its third delivery, one raises
  `Permanent` from a `KeyError` and is dead-lettered at once with `exception_name` KeyError,
  one fails every time and is dead-lettered after its third delivery; each other message is
  handled once; `drain()` returns once the queues are empty.
- `respond`: requests from the client's `rpc` answered by `@respond`, a raising handler's
  answer carrying edeposit's exception headers and the request's `UUID`.
- `lease`: a handler that runs past its lease loses the message, which comes back and is
  handled by the next delivery; the worker logs that it lost it.
- `subscribe`: `@subscribe("Booking.*", service="pyworker")` makes the host's subscription (no
  plugins, no `to`: its queue is bound and left to the worker), gets every Booking event and
  no Order one; a second worker reuses it; a subscription of that name for another pattern is
  refused.
- `sigterm`: a worker process given SIGTERM while its handlers hold messages finishes them
  and exits 0; nothing is lost and nothing is handled twice.
"""

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from wharf_client import Client, Conflict, Permanent, Worker


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def consume(client: Client) -> None:
    queue = os.environ["WHARF_QUEUE"]
    addresses = ["local:work.in", f"rabbit:{queue}"]
    for address in addresses:
        for i in range(40):
            client.publish(address, {"n": i})
    seen = collections.Counter()
    attempts = collections.Counter()
    lock = threading.Lock()
    app = Worker(backoff=0.05, max_backoff=0.2, max_deliveries=3, poll=0.5)

    def handler(address):
        def handle(message):
            n = message.json()["n"]
            with lock:
                attempts[(address, n)] += 1
                tries = attempts[(address, n)]
            if n == 7 and tries < 3:
                raise ConnectionError("the database blinked")
            if n == 8:
                try:
                    {}["missing"]
                except KeyError as e:
                    raise Permanent("no such customer") from e
            if n == 9:
                raise RuntimeError("always")
            with lock:
                seen[(address, n)] += 1

        return handle

    for address in addresses:
        app.consume(address, concurrency=4)(handler(address))
    handled = app.drain(quiet=1.5)
    for address in addresses:
        for n in range(40):
            want = 0 if n in (8, 9) else 1
            check(seen[(address, n)] == want, f"{address} #{n} handled {seen[(address, n)]} times")
        check(attempts[(address, 7)] == 3, f"{address}: #7 tried {attempts[(address, 7)]} times")
        check(attempts[(address, 8)] == 1, f"{address}: a permanent error is not retried")
        check(attempts[(address, 9)] == 3, f"{address}: #9 tried {attempts[(address, 9)]} times")
    check(handled == 76, f"drain handled {handled}")
    # The embedded broker's dead letters carry the worker's exception headers.
    dead = {m.json()["n"]: m for m in client.take("local:work.in.dead", 10, timeout=2)}
    check(sorted(dead) == [8, 9], f"dead letters: {sorted(dead)}")
    check(dead[8].headers.get("exception_name") == "KeyError", f"{dead[8].headers}")
    check("missing" in dead[8].headers.get("exception", ""), f"{dead[8].headers}")
    check(dead[8].headers.get("exception_type") == "<class 'KeyError'>", f"{dead[8].headers}")
    check(dead[9].headers.get("exception_name") == "RuntimeError", f"{dead[9].headers}")
    print("consume ok")


def respond(client: Client) -> None:
    app = Worker(poll=0.5)

    @app.respond("local:lookup", concurrency=4)
    def lookup(message):
        key = message.json()["key"]
        if key == "nope":
            raise LookupError(f"no {key}")
        return {"key": key, "title": key.upper()}

    runner = threading.Thread(target=app.run, daemon=True)
    runner.start()
    try:
        for key in ("a", "b", "c"):
            answer = client.rpc("local:lookup", {"key": key}, timeout=10)
            check(answer.json() == {"key": key, "title": key.upper()}, f"{answer}")
        failed = client.rpc("local:lookup", {"key": "nope"}, timeout=10)
        check(failed.headers.get("exception_name") == "LookupError", f"{failed.headers}")
        check(failed.headers.get("exception") == "no nope", f"{failed.headers}")
        # The request's UUID (the host's RPC gives each request one) comes back with it.
        check(len(failed.headers.get("UUID", "")) >= 32, f"{failed.headers}")
    finally:
        app.stop()
        runner.join(10)
    check(not runner.is_alive(), "the worker stopped")
    print("respond ok")


def lease(client: Client) -> None:
    client.publish("local:slow.in", {"n": 1})
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger("wharf_client.worker").addHandler(Keep())
    calls = []
    app = Worker(lease=1.0, poll=0.5)

    @app.consume("local:slow.in")
    def slow(message):
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(2.5)

    handled = app.drain(quiet=3.0)
    check(len(calls) == 2, f"handled {len(calls)} times: the lost lease came back once")
    check(handled == 1, f"drain counted {handled}")
    check(any("outlived its lease" in r for r in records), f"the worker said so: {records}")
    print("lease ok")


def subscribe(client: Client) -> None:
    seen = []

    def worker() -> Worker:
        app = Worker(poll=0.5)

        @app.subscribe("Booking.*", service="pyworker", concurrency=2)
        def booking(message):
            seen.append((message.topic, message.json()["id"]))

        return app

    check(worker().drain(quiet=0.5) == 0, "nothing yet")
    view = client._call("GET", "subscriptions/pyworker.Booking.any")
    check(view["status"]["state"] == "running", f"bound: {view}")
    check(view["subscription"]["through"] == [] and view["subscription"].get("to") is None, f"{view}")
    for i in range(3):
        client.publish_event("shop.models.Booking", "created", {"id": i})
    client.publish_event("shop.models.Order", "created", {"id": 99})
    client.publish_event("shop.models.Booking", "updated", {"id": 3})
    handled = worker().drain(quiet=1.0)
    check(handled == 4, f"handled {handled}: {seen}")
    check(sorted(i for _, i in seen) == [0, 1, 2, 3], f"{seen}")
    # The client drains every route and subscription the host consumes for: the demo route,
    # not this subscription, which the host leaves to clients.
    client.publish("local:demo.in", "x")
    report = client.drain(timeout=20)
    names = [u["name"] for u in report["units"]]
    check(report["complete"] and "demo" in names, f"{report}")
    check("pyworker.Booking.any" not in names, f"{report}")
    # The name is this subscription's: another pattern under it is refused, not changed.
    other = Worker(poll=0.5)
    other.subscribe("Order.*", service="pyworker", name="pyworker.Booking.any")(lambda m: None)
    try:
        other.drain(quiet=0.5)
    except Conflict as e:
        check("another's" in str(e), f"says why: {e}")
    else:
        raise AssertionError("another pattern under a taken name was accepted")
    print("subscribe ok")


def sigterm(client: Client) -> None:
    for i in range(12):
        client.publish("local:term.in", {"n": i})
    done_file = os.path.join(os.environ["WHARF_TMP"], "done")
    child = subprocess.Popen(
        [sys.executable, __file__, "sigterm-child", done_file],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Once the child's handlers hold messages, stop it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(done_file) and open(done_file).read().count("\n") >= 2:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    check(child.returncode == 0, f"the worker exited {child.returncode}: {err}")
    handled = [int(line) for line in open(done_file).read().split()]
    check(len(handled) == len(set(handled)), f"none twice: {handled}")
    rest = client.take("local:term.in", 20, timeout=1)
    left = sorted(m.json()["n"] for m in rest)
    check(sorted(handled + left) == list(range(12)), f"handled {handled}, left {left}")
    check(len(left) > 0, "SIGTERM came before the queue was done")
    print("sigterm ok")


def sigterm_child(done_file: str) -> None:
    app = Worker(poll=0.5)

    @app.consume("local:term.in", concurrency=3)
    def work(message):
        time.sleep(0.5)
        with open(done_file, "a") as f:
            f.write(f"{message.json()['n']}\n")

    app.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    part = sys.argv[1]
    if part == "sigterm-child":
        sigterm_child(sys.argv[2])
        sys.exit(0)
    with Client() as client:
        parts = {
            "consume": consume,
            "respond": respond,
            "lease": lease,
            "subscribe": subscribe,
            "sigterm": sigterm,
        }
        parts[part](client)
    print("ok", file=sys.stderr)
