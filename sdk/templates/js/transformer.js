// {{name}}: a transformer. It upper-cases text payloads and filters out empty messages.
import { transformer } from './wharf/wharf.js';

export const { describe, transform } = transformer({
  name: '{{name}}',
  version: '0.1.0',
  description: 'Upper-cases text payloads',
  reusable: true,
  transform(msg) {
    if (msg.payload.length === 0) return []; // filtered out
    return msg.withPayload(msg.text().toUpperCase());
  },
});
