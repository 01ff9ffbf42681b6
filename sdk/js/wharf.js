// Write Wharf plugins in JavaScript.
//
// A plugin is an object with a name, a version and one method; `transformer`, `handler` and
// `daemon` turn it into the functions the component exports:
//
//   import { transformer } from './wharf.js';
//   export const { describe, transform } = transformer({
//     name: 'shout', version: '1.0.0', reusable: true,
//     transform: (msg) => msg.withPayload(msg.text().toUpperCase()),
//   });
//
// built with `componentize-js plugin.js --wit wit --world-name transformer -o shout.wasm`
// (`wharf plugin build` runs it). `host.js` (publish, request, events, key-value) is for
// handlers and daemons; `daemon.js` (sleep, take, ack, nack) for daemons. See README.md.
import { log as hostLog } from 'wharf:plugin/log@0.1.3';
import { get as configGet, keys as configKeys } from 'wharf:plugin/config@0.1.3';
import { nameFailure } from 'wharf:plugin/exception@0.1.3';

export const CONTRACT = 'wharf:plugin@0.1.3';

/** Transient trouble: the host retries the message with backoff. */
export class Retry extends Error {
  constructor(message) {
    super(message);
    this.name = 'Retry';
    this.payload = { tag: 'retry', val: String(message) };
  }
}

/** The message can never succeed: the host dead-letters it at once. */
export class Reject extends Error {
  constructor(message) {
    super(message);
    this.name = 'Reject';
    this.payload = { tag: 'reject', val: String(message) };
  }
}

/** A header value holding a JSON document (an AMQP field table, say). */
export class Json {
  constructor(text) {
    this.text = String(text);
  }
  toString() {
    return this.text;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Bytes the host handed over (a typed array or an array of numbers) as a Uint8Array. */
function hostBytes(bytes) {
  if (bytes === undefined || bytes === null) return bytes;
  if (bytes instanceof Uint8Array) return bytes;
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Uint8Array.from(bytes);
}

/** Bytes for a payload given as bytes, text, or anything JSON. */
export function toBytes(payload) {
  if (payload instanceof Uint8Array) return payload;
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (typeof payload === 'string') return encoder.encode(payload);
  return encoder.encode(JSON.stringify(payload));
}

/** One message, as every transport maps it. `headers` maps names to typed values. */
export class Message {
  constructor(fields = {}) {
    this.id = fields.id ?? '';
    this.topic = fields.topic ?? '';
    this.key = fields.key ?? undefined;
    this.headers = { ...(fields.headers ?? {}) };
    this.contentType = fields.contentType ?? undefined;
    this.correlationId = fields.correlationId ?? undefined;
    this.replyTo = fields.replyTo ?? undefined;
    this.priority = fields.priority ?? undefined;
    this.expirationMs = fields.expirationMs ?? undefined;
    this.persistent = fields.persistent ?? true;
    this.payload = toBytes(fields.payload ?? new Uint8Array());
    this.timestampMs = fields.timestampMs ?? 0;
  }

  /** The payload as UTF-8 text; `Reject` if it is not UTF-8. */
  text() {
    try {
      return decoder.decode(this.payload);
    } catch (e) {
      throw new Reject(`the payload is not UTF-8 text: ${e.message}`);
    }
  }

  /** The payload parsed as JSON; `Reject` if it is not JSON. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      if (e instanceof Reject) throw e;
      throw new Reject(`the payload is not JSON: ${e.message}`);
    }
  }

  /** The header named `name` (ASCII case-insensitive), or undefined. */
  header(name) {
    const wanted = name.toLowerCase();
    for (const [key, value] of Object.entries(this.headers)) {
      if (key.toLowerCase() === wanted) return value;
    }
    return undefined;
  }

  /** The same message with another payload (bytes, text, or anything JSON). */
  withPayload(payload) {
    return new Message({ ...this, headers: { ...this.headers }, payload: toBytes(payload) });
  }

  /** A reply to this message: addressed to its reply-to, with its correlation id. */
  reply(payload) {
    return new Message({
      topic: this.replyTo ?? '',
      correlationId: this.correlationId ?? this.id,
      contentType: this.contentType,
      payload: toBytes(payload),
    });
  }
}

function valueFromWit(value) {
  switch (value.tag) {
    case 'json':
      return new Json(value.val);
    case 'int':
      return Number(value.val);
    case 'bytes':
      return hostBytes(value.val);
    default:
      return value.val;
  }
}

function valueToWit(value) {
  if (value instanceof Json) return { tag: 'json', val: value.text };
  if (typeof value === 'string') return { tag: 'text', val: value };
  if (value instanceof Uint8Array) return { tag: 'bytes', val: value };
  if (typeof value === 'boolean') return { tag: 'boolean', val: value };
  if (typeof value === 'bigint') return { tag: 'int', val: value };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { tag: 'int', val: BigInt(value) } : { tag: 'float', val: value };
  }
  if (Array.isArray(value)) return { tag: 'list', val: value.map(String) };
  return { tag: 'json', val: JSON.stringify(value) };
}

/** The SDK's message for the one the host passed in. */
export function fromWit(msg) {
  return new Message({
    id: msg.id,
    topic: msg.topic,
    key: hostBytes(msg.key),
    headers: Object.fromEntries(msg.headers.map(([k, v]) => [k, valueFromWit(v)])),
    contentType: msg.contentType,
    correlationId: msg.correlationId,
    replyTo: msg.replyTo,
    priority: msg.priority,
    expirationMs: msg.expirationMs === undefined ? undefined : Number(msg.expirationMs),
    persistent: msg.persistent,
    payload: hostBytes(msg.payload),
    timestampMs: Number(msg.timestampMs),
  });
}

/** The host's message for one of the SDK's. */
export function toWit(msg) {
  if (!(msg instanceof Message)) {
    throw new TypeError('expected a Message from wharf.js');
  }
  return {
    id: msg.id,
    topic: msg.topic,
    key: msg.key,
    headers: Object.entries(msg.headers).map(([k, v]) => [k, valueToWit(v)]),
    contentType: msg.contentType,
    correlationId: msg.correlationId,
    replyTo: msg.replyTo,
    priority: msg.priority,
    expirationMs: msg.expirationMs === undefined ? undefined : BigInt(msg.expirationMs),
    persistent: msg.persistent,
    payload: toBytes(msg.payload),
    timestampMs: BigInt(msg.timestampMs),
  };
}

/** Logging into the host's log, tagged with the plugin's name. */
export const log = {
  trace: (text) => hostLog('trace', String(text)),
  debug: (text) => hostLog('debug', String(text)),
  info: (text) => hostLog('info', String(text)),
  warn: (text) => hostLog('warn', String(text)),
  error: (text) => hostLog('error', String(text)),
};

/** The plugin's configuration, as the admin set it. */
export const config = {
  /** The value of `key`, or `fallback` when it is not set. */
  get: (key, fallback = undefined) => configGet(key) ?? fallback,
  /** Every key that is set, in sorted order. */
  keys: () => configKeys(),
  /** The value of `key`; `Reject` naming it when it is not set. */
  require: (key) => {
    const value = configGet(key);
    if (value === undefined) throw new Reject(`config key \`${key}\` is not set`);
    return value;
  },
};

function info(plugin, kind) {
  if (!plugin.name) throw new TypeError('a plugin needs a `name`');
  return {
    name: plugin.name,
    version: plugin.version ?? '0.1.0',
    kind,
    description: plugin.description ?? '',
    reusable: Boolean(plugin.reusable),
    wants: [...(plugin.wants ?? [])],
  };
}

/**
 * The failure the host gets for an error a plugin threw. Its own class names it in the dead
 * letter's `exception_name` (a `TypeError` says `TypeError`); any error but `Reject` counts
 * as retry unless it is permanent: `error.permanent` is true, or its class is in the
 * plugin's `permanent` list, and then it is dead-lettered (or answered) at once.
 */
function failure(error, plugin = {}) {
  const own = error?.constructor && error.constructor !== Retry && error.constructor !== Reject;
  if (own) {
    const name = String(error.name ?? error.constructor.name ?? 'Error');
    nameFailure(name, String(error.constructor.name || name));
  }
  if (error instanceof Retry || error instanceof Reject) return error;
  log.error(error?.stack ?? String(error));
  const text = `${error?.name ?? 'Error'}: ${error?.message ?? error}`;
  const permanent =
    error?.permanent === true || (plugin.permanent ?? []).some((kind) => error instanceof kind);
  return permanent ? new Reject(text) : new Retry(text);
}

function outputs(result) {
  if (result === undefined || result === null) return [];
  if (result instanceof Message) return [toWit(result)];
  return Array.from(result, toWit);
}

/** The exports of a transformer: `transform(msg)` returns a Message, an array (empty filters
 * the message out) or nothing (filtered out). */
export function transformer(plugin) {
  return {
    describe: () => info(plugin, 'transformer'),
    transform: (msg) => {
      try {
        return outputs(plugin.transform(fromWit(msg)));
      } catch (e) {
        throw failure(e, plugin);
      }
    },
  };
}

/** The exports of a handler: `handle(msg)` returns the reply Message or nothing. */
export function handler(plugin) {
  return {
    describe: () => info(plugin, 'handler'),
    // `handle` may be async (to `await fetch(...)`): the engine runs the event loop until
    // its promise settles.
    handle: (msg) => {
      const done = (reply) => (reply === undefined || reply === null ? undefined : toWit(reply));
      let reply;
      try {
        reply = plugin.handle(fromWit(msg));
      } catch (e) {
        throw failure(e, plugin);
      }
      if (reply && typeof reply.then === 'function') {
        return reply.then(done, (e) => {
          throw failure(e, plugin);
        });
      }
      return done(reply);
    },
  };
}

/** The exports of a daemon: `run()` returns when done or asked to stop. */
export function daemon(plugin) {
  return {
    describe: () => info(plugin, 'daemon'),
    run: () => {
      try {
        plugin.run();
      } catch (e) {
        log.error(e?.stack ?? String(e));
        // Its class names the failure in the daemon's status.
        const name = String(e?.name ?? 'Error');
        nameFailure(name, String(e?.constructor?.name || name));
        const text = String(e?.message ?? e);
        const error = new Error(text);
        error.payload = text;
        throw error;
      }
    },
  };
}
