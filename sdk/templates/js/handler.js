// {{name}}: a handler. It answers each request with a greeting for the name in its payload.
import { Reject, handler } from './wharf/wharf.js';

export const { describe, handle } = handler({
  name: '{{name}}',
  version: '0.1.0',
  description: 'Replies with a greeting',
  reusable: true,
  handle(msg) {
    const name = msg.text();
    if (!name) throw new Reject('no name to greet');
    return msg.reply(`Hello, ${name}!`);
  },
});
