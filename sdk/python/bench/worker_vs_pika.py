"""A Wharf worker beside pika doing the same work, in one run (run by
`cargo bench -p wharf --bench python_worker`, which starts the host).

Environment: WHARF_URL and WHARF_TOKEN (a host with a RabbitMQ connection `rabbit`),
WHARF_QUEUE (a durable queue on it), AMQP_URL (the same RabbitMQ). Each round publishes COUNT
256-byte JSON messages with pika, then consumes them: once with pika (basic_consume, prefetch
PREFETCH, each message parsed and acked), once with a Worker on the same queue through the host
(`@consume("rabbit:QUEUE", concurrency=PREFETCH)`, each message parsed; leased through one
lease stream, settled in batches). Prints messages a second and this process's CPU per message for both,
and the worker's share of pika's rate.
"""

import json
import os
import resource
import sys
import time

import pika

from wharf_client import Worker

COUNT = int(os.environ.get("COUNT", "5000"))
PREFETCH = int(os.environ.get("PREFETCH", "64"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
QUEUE = os.environ["WHARF_QUEUE"]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def payload(i: int) -> bytes:
    doc = json.dumps({"order": f"A-{i}", "note": ""})
    return json.dumps({"order": f"A-{i}", "note": "w" * (256 - len(doc))}).encode()


def fill(channel) -> None:
    for i in range(COUNT):
        channel.basic_publish(
            "", QUEUE, payload(i), pika.BasicProperties(delivery_mode=2, content_type="application/json")
        )


def bare(channel) -> tuple:
    seen = 0

    def on_message(ch, method, properties, body):
        nonlocal seen
        json.loads(body)
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if seen == COUNT:
            ch.stop_consuming()

    channel.basic_qos(prefetch_count=PREFETCH)
    started, cpu0 = time.monotonic(), cpu()
    channel.basic_consume(QUEUE, on_message)
    channel.start_consuming()
    return seen / (time.monotonic() - started), (cpu() - cpu0) / seen * 1e6


def worker() -> tuple:
    app = Worker(poll=0.2)
    seen = 0
    last = 0.0

    @app.consume(f"rabbit:{QUEUE}", concurrency=PREFETCH)
    def handle(message):
        nonlocal seen, last
        message.json()
        seen += 1
        last = time.monotonic()

    started, cpu0 = time.monotonic(), cpu()
    handled = app.drain(quiet=0.5)
    # Timed to the last message handled, as pika's loop is (the drain's quiet wait after it
    # is not work); the CPU is all of it, the wait included.
    elapsed = last - started
    assert handled == COUNT == seen, f"handled {handled} of {COUNT}"
    return seen / elapsed, (cpu() - cpu0) / seen * 1e6


def main() -> None:
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
    channel = connection.channel()
    totals = {"pika": [0.0, 0.0], "worker": [0.0, 0.0]}
    for round in range(1, ROUNDS + 1):
        fill(channel)
        rate, cpu_us = bare(channel)
        totals["pika"][0] += rate
        totals["pika"][1] += cpu_us
        print(f"round {round}: pika basic_consume, prefetch {PREFETCH:<4} {rate:>7.0f} msg/s   {cpu_us:>7.1f} µs CPU/msg")
        fill(channel)
        rate, cpu_us = worker()
        totals["worker"][0] += rate
        totals["worker"][1] += cpu_us
        print(f"round {round}: wharf worker, concurrency {PREFETCH:<4}  {rate:>7.0f} msg/s   {cpu_us:>7.1f} µs CPU/msg")
    connection.close()
    pika_rate, worker_rate = totals["pika"][0] / ROUNDS, totals["worker"][0] / ROUNDS
    print(
        f"worker / pika over {ROUNDS} rounds of {COUNT}: {worker_rate / pika_rate:.2f} of its rate, "
        f"{totals['worker'][1] / totals['pika'][1]:.2f} of its CPU per message (the client's process)"
    )


if __name__ == "__main__":
    sys.exit(main())
