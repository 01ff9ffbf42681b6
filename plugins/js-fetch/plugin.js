// Outbound HTTP from a JavaScript handler with the standard `fetch`, as plugins/http-fetch
// does in Rust. Each request's payload is a path: the plugin fetches config `url` + that path
// and replies with the answer's body, its status in header `http_status`. With config `token`
// (seal it) the request carries `Authorization: Bearer {token}`. A payload that starts with
// `{` is sent as a JSON POST. The host sends only to origins an `http:` grant names.
import { Retry, config, handler } from '../../sdk/js/wharf.js';

export const { describe, handle } = handler({
  name: 'js-fetch',
  version: '1.0.0',
  description: "Fetches config url + the request's payload and replies with it",
  async handle(msg) {
    const base = config.require('url');
    const path = msg.text();
    const headers = {};
    const token = config.get('token');
    if (token) headers.authorization = `Bearer ${token}`;
    let answer;
    if (path.startsWith('{')) {
      headers['content-type'] = 'application/json';
      answer = await fetch(base, { method: 'POST', headers, body: path });
    } else {
      answer = await fetch(base + path, { headers, redirect: 'manual' });
    }
    if (answer.status >= 500) throw new Retry(`the service answered ${answer.status}`);
    const reply = msg.reply(new Uint8Array(await answer.arrayBuffer()));
    reply.headers.http_status = answer.status;
    return reply;
  },
});
