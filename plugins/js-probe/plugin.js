// Test handler in JavaScript: does what the payload says, so that one plugin exercises every
// behaviour the host must handle: `retry` / `reject` fail with that kind; `raise` throws an
// unexpected error (counts as retry, named `TypeError`); `missing` throws a RangeError, which
// this plugin marks permanent (dead-lettered at once); `spin` loops forever; `hog` allocates until the memory
// limit stops it; `publish DEST [TEXT]` publishes (refused without a grant); `event MODEL
// EVENT` publishes a model event; anything else is echoed back as the reply.
import { Reject, Retry, handler } from '../../sdk/js/wharf.js';
import { HostError, publish, publishEvent } from '../../sdk/js/host.js';

export const { describe, handle } = handler({
  name: 'js-probe',
  version: '1.0.0',
  description: 'Does what the payload says (a test plugin)',
  permanent: [RangeError],
  handle(msg) {
    const words = msg.text().split(/\s+/).filter((w) => w);
    switch (words[0]) {
      case 'retry':
        throw new Retry('asked to retry');
      case 'reject':
        throw new Reject('asked to reject');
      case 'raise':
        throw new TypeError('an unexpected error');
      case 'missing':
        throw new RangeError('no such entry');
      case 'spin':
        for (;;) {}
      case 'hog': {
        const held = [];
        for (;;) held.push(new Uint8Array(1 << 20).fill(1));
      }
      case 'publish':
        try {
          publish(words[1], msg.withPayload(words.slice(2).join(' ') || 'published'));
        } catch (e) {
          if (e instanceof HostError) throw new Reject(`refused: ${e.message}`);
          throw e;
        }
        return undefined;
      case 'event':
        publishEvent(words[1], words[2], { from: 'js-probe' });
        return undefined;
      default: {
        const reply = msg.reply(msg.payload);
        reply.headers = { ...msg.headers };
        return reply;
      }
    }
  },
});
