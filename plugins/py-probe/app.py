"""Test handler in Python: does what the payload says, so that one plugin exercises every
behaviour the host must handle.

- `retry` / `reject`: fails with that kind;
- `raise`: raises an unexpected exception (counts as retry, named `ValueError`);
- `missing`: raises `KeyError`, which this plugin marks permanent (dead-lettered at once);
- `spin`: loops forever (the CPU deadline stops it);
- `hog`: allocates until the memory limit stops it;
- `publish DEST`: publishes the message to DEST (refused without a grant: the call fails);
- `event MODEL EVENT`: publishes a model event;
- anything else: replies with the payload.
"""

from wharf_plugin import Handler, Message, Reject, Retry, export, host


class Probe(Handler):
    name = "py-probe"
    version = "1.0.0"
    description = "Does what the payload says (a test plugin)"
    permanent = (KeyError,)

    def handle(self, msg: Message):
        words = msg.text().split()
        command = words[0] if words else ""
        if command == "retry":
            raise Retry("asked to retry")
        if command == "reject":
            raise Reject("asked to reject")
        if command == "raise":
            raise ValueError("an unexpected error")
        if command == "missing":
            raise KeyError("no such entry")
        if command == "spin":
            while True:
                pass
        if command == "hog":
            held = []
            while True:
                held.append(bytearray(1 << 20))
        if command == "publish":
            try:
                host.publish(words[1], msg.with_payload(" ".join(words[2:]) or "published"))
            except host.HostError as e:
                raise Reject(f"refused: {e}") from None
            return None
        if command == "event":
            host.publish_event(words[1], words[2], {"from": "py-probe"})
            return None
        reply = msg.reply(msg.payload)
        reply.headers = dict(msg.headers)
        return reply


WitWorld = export(Probe)
