"""Example transformer in Python: upper-cases text payloads.

A message with an empty payload, or with the header `skip` set to true, is filtered out (the
transformer returns no message for it).
"""

from wharf_plugin import Message, Transformer, export


class Uppercase(Transformer):
    name = "py-uppercase"
    version = "1.0.0"
    description = "Upper-cases text payloads; drops empty ones and those marked skip"
    reusable = True

    def transform(self, msg: Message):
        if not msg.payload or msg.header("skip") in (True, "true"):
            return None
        return msg.with_payload(msg.text().upper())


WitWorld = export(Uppercase)
