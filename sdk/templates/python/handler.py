"""{{name}}: a handler. It answers each request with a greeting for the name in its payload."""

from wharf_plugin import Handler, Message, Reject, export


class Plugin(Handler):
    name = "{{name}}"
    version = "0.1.0"
    description = "Replies with a greeting"
    reusable = True

    def handle(self, msg: Message):
        name = msg.text()
        if not name:
            raise Reject("no name to greet")
        return msg.reply(f"Hello, {name}!")


WitWorld = export(Plugin)
