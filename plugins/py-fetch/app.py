"""Outbound HTTP from a Python handler, as plugins/http-fetch does in Rust.

Each request's payload is a path: the plugin fetches config `url` + that path and replies
with the answer's body, its status in header `http_status`. With config `token` (seal it) the
request carries `Authorization: Bearer {token}`. A payload that starts with `{` is sent as a
JSON POST. The host sends only to origins an `http:` grant names.
"""

from wharf_plugin import Handler, Message, Retry, config, export, http


class Fetch(Handler):
    name = "py-fetch"
    version = "1.0.0"
    description = "Fetches config url + the request's payload and replies with it"

    def handle(self, msg: Message):
        base = config.require("url")
        path = msg.text()
        headers = {}
        token = config.get("token")
        if token:
            headers["authorization"] = f"Bearer {token}"
        if path.startswith("{"):
            headers["content-type"] = "application/json"
            answer = http.request("POST", base, headers=headers, body=path)
        else:
            answer = http.get(base + path, headers=headers)
        if answer.status >= 500:
            raise Retry(f"the service answered {answer.status}")
        reply = msg.reply(answer.body)
        reply.headers["http_status"] = answer.status
        return reply


WitWorld = export(Fetch)
