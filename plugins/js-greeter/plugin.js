// Example handler in JavaScript: answers each request with a greeting. The payload is a name
// (text) or a JSON object with a `name`; the reply is `{greeting}, {name}!` (config
// `greeting`, default `Hello`). With config `audit` set to a `connection:address`, a copy of
// each greeting is published there (under a `publish:` grant) and the count is kept in the
// plugin's key-value state.
import { Message, Reject, config, handler, log } from '../../sdk/js/wharf.js';
import { kvGet, kvSet, publish } from '../../sdk/js/host.js';

export const { describe, handle } = handler({
  name: 'js-greeter',
  version: '1.0.0',
  description: 'Replies with a greeting for the name in the request',
  handle(msg) {
    const text = msg.text();
    const name = text.startsWith('{') ? msg.json().name : text;
    if (!name) throw new Reject('no name to greet');
    const greeting = `${config.get('greeting', 'Hello')}, ${name}!`;
    const audit = config.get('audit');
    if (audit) {
      const stored = kvGet('greeted');
      const count = Number(stored ? new TextDecoder().decode(stored) : '0') + 1;
      kvSet('greeted', String(count));
      publish(audit, new Message({ topic: 'greetings', payload: greeting }));
      log.info(`greeting number ${count}`);
    }
    return msg.reply(greeting);
  },
});
