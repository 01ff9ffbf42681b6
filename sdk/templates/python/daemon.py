"""{{name}}: a daemon. It takes each message from `local:{{name}}.in`, publishes it upper-cased
to `local:{{name}}.out`, and acks it only once that is done."""

from wharf_plugin import Daemon, daemon, export, host

SOURCE = "local:{{name}}.in"
TARGET = "local:{{name}}.out"


class Plugin(Daemon):
    name = "{{name}}"
    version = "0.1.0"
    description = "Upper-cases what arrives on its queue"
    wants = [f"receive:{SOURCE}", f"publish:{TARGET}"]

    def run(self):
        while True:
            delivery = daemon.take(SOURCE, 1000)
            if delivery is None:
                if not daemon.sleep(0):
                    return  # asked to stop
                continue
            host.publish(TARGET, delivery.msg.with_payload(delivery.msg.text().upper()))
            delivery.ack()


WitWorld = export(Plugin)
