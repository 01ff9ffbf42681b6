// {{name}}: a daemon. It takes each message from `local:{{name}}.in`, publishes it upper-cased
// to `local:{{name}}.out`, and acks it only once that is done.
import { daemon } from './wharf/wharf.js';
import { publish } from './wharf/host.js';
import { sleep, take } from './wharf/daemon.js';

const SOURCE = 'local:{{name}}.in';
const TARGET = 'local:{{name}}.out';

export const { describe, run } = daemon({
  name: '{{name}}',
  version: '0.1.0',
  description: 'Upper-cases what arrives on its queue',
  wants: [`receive:${SOURCE}`, `publish:${TARGET}`],
  run() {
    for (;;) {
      const delivery = take(SOURCE, 1000);
      if (delivery === undefined) {
        if (!sleep(0)) return; // asked to stop
        continue;
      }
      publish(TARGET, delivery.msg.withPayload(delivery.msg.text().toUpperCase()));
      delivery.ack();
    }
  },
});
