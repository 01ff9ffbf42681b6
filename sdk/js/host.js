// What the host does on a handler's or a daemon's behalf (not for transformers). Every
// destination (`connection:address`) is checked against the plugin's grants; a handler's
// publishes go out only if its call succeeds, a daemon's at once.
import * as host from 'wharf:plugin/host@0.1.3';
import { fromWit, toBytes, toWit } from './wharf.js';

/** The host refused: no grant, an unknown connection, a request that timed out. */
export class HostError extends Error {
  constructor(message) {
    super(message);
    this.name = 'HostError';
  }
}

function refused(e) {
  return new HostError(e?.payload ?? e?.message ?? String(e));
}

/** Send `msg` to `destination` (`local:audit`, `rabbit:orders.new`). */
export function publish(destination, msg) {
  try {
    host.publish(destination, toWit(msg));
  } catch (e) {
    throw refused(e);
  }
}

/** Send a request and wait up to `timeoutMs` for its reply. */
export function request(destination, msg, timeoutMs = 5000) {
  try {
    return fromWit(host.request(destination, toWit(msg), timeoutMs));
  } catch (e) {
    throw refused(e);
  }
}

/** Publish the model event `{Model}.{event}` with `data` (JSON unless bytes or text). */
export function publishEvent(model, event, data) {
  try {
    host.publishEvent(model, event, toBytes(data));
  } catch (e) {
    throw refused(e);
  }
}

/** The plugin's stored value of `key` (bytes), or undefined. */
export function kvGet(key) {
  const value = host.kvGet(key);
  return value === undefined ? undefined : toBytes(value);
}

/** Store `value` (bytes or text) under `key`; kept only if the call succeeds. */
export function kvSet(key, value) {
  try {
    host.kvSet(key, toBytes(value));
  } catch (e) {
    throw refused(e);
  }
}
