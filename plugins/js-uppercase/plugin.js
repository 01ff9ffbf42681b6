// Example transformer in JavaScript: upper-cases text payloads. A message with an empty
// payload, or with the header `skip` set to true, is filtered out.
import { transformer } from '../../sdk/js/wharf.js';

export const { describe, transform } = transformer({
  name: 'js-uppercase',
  version: '1.0.0',
  description: 'Upper-cases text payloads; drops empty ones and those marked skip',
  reusable: true,
  transform(msg) {
    const skip = msg.header('skip');
    if (msg.payload.length === 0 || skip === true || skip === 'true') return [];
    return msg.withPayload(msg.text().toUpperCase());
  },
});
