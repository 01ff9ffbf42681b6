"""{{name}}: a transformer. It upper-cases text payloads and filters out empty messages."""

from wharf_plugin import Message, Transformer, export


class Plugin(Transformer):
    name = "{{name}}"
    version = "0.1.0"
    description = "Upper-cases text payloads"
    reusable = True

    def transform(self, msg: Message):
        if not msg.payload:
            return None  # filtered out
        return msg.with_payload(msg.text().upper())


WitWorld = export(Plugin)
