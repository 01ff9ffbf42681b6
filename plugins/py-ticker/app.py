"""Example daemon in Python: publishes a numbered tick every `interval_ms` (default 1000) to
the `connection:address` in config `to` (default `local:ticks`), and returns when the host
asks it to stop.
"""

import json

from wharf_plugin import Daemon, Message, config, daemon, export, host


class Ticker(Daemon):
    name = "py-ticker"
    version = "1.0.0"
    description = "Publishes a numbered tick at an interval"
    wants = ["publish:local:ticks"]

    def run(self):
        interval = int(config.get("interval_ms", "1000"))
        to = config.get("to", "local:ticks")
        tick = 0
        while True:
            tick += 1
            host.publish(to, Message(payload=json.dumps({"tick": tick}), topic="tick"))
            if not daemon.sleep(interval):
                return


WitWorld = export(Ticker)
