"""Example daemon in Python: publishes a numbered tick every `interval_ms` (default 1000) to
the `connection:address` in config `to` (default `local:ticks`), and returns when the host
asks it to stop. With `fail_at` set it raises `TickerStopped` at that tick: a daemon's failure
is named by its exception's class in the daemon's status.
"""

import json

from wharf_plugin import Daemon, Message, config, daemon, export, host


class TickerStopped(Exception):
    """The ticker stopped at the tick its config named."""


class Ticker(Daemon):
    name = "py-ticker"
    version = "1.0.0"
    description = "Publishes a numbered tick at an interval"
    wants = ["publish:local:ticks"]

    def run(self):
        interval = int(config.get("interval_ms", "1000"))
        to = config.get("to", "local:ticks")
        fail_at = int(config.get("fail_at", "0"))
        tick = 0
        while True:
            tick += 1
            if tick == fail_at:
                raise TickerStopped(f"stopped at tick {tick} as asked")
            host.publish(to, Message(payload=json.dumps({"tick": tick}), topic="tick"))
            if not daemon.sleep(interval):
                return


WitWorld = export(Ticker)
