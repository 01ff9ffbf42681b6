"""Example handler in Python: answers each request with a greeting.

The request's payload is a name (text) or a JSON object with a `name`; the reply, sent to the
request's reply-to, is `{greeting}, {name}!` (config `greeting`, default `Hello`). With config
`audit` set to a `connection:address`, a copy of each greeting is published there (the plugin
needs a `publish:` grant for it), and the greetings counted so far are kept in its key-value
state.
"""

from wharf_plugin import Handler, Message, Reject, config, export, host, log


class Greeter(Handler):
    name = "py-greeter"
    version = "1.0.0"
    description = "Replies with a greeting for the name in the request"

    def handle(self, msg: Message):
        name = msg.json().get("name") if msg.payload.startswith(b"{") else msg.text()
        if not name:
            raise Reject("no name to greet")
        greeting = f"{config.get('greeting', 'Hello')}, {name}!"
        audit = config.get("audit")
        if audit:
            count = int(host.kv_get("greeted") or b"0") + 1
            host.kv_set("greeted", str(count))
            host.publish(audit, Message(payload=greeting, topic="greetings"))
            log.info(f"greeting number {count}")
        return msg.reply(greeting)


WitWorld = export(Greeter)
