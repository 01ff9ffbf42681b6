// Sleeping and receiving: for daemons only. `take` holds a message until the daemon acks or
// nacks it; what it still holds when it returns, fails or is stopped goes back to its source.
// `receive` settles on receipt.
import * as daemonHost from 'wharf:plugin/daemon-host@0.1.3';
import { nameFailure } from 'wharf:plugin/exception@0.1.3';
import { fromWit } from './wharf.js';
import { HostError } from './host.js';

function refused(e) {
  return new HostError(e?.payload ?? e?.message ?? String(e));
}

/** Sleep up to `ms`; false when the daemon is asked to stop and should return. */
export function sleep(ms) {
  return daemonHost.sleep(ms);
}

/** The next message of a granted `receive:` source, settled at once; undefined at the timeout. */
export function receive(source, timeoutMs = 1000) {
  let msg;
  try {
    msg = daemonHost.receive(source, timeoutMs);
  } catch (e) {
    throw refused(e);
  }
  return msg === undefined ? undefined : fromWit(msg);
}

/** The next message of a granted `receive:` source, held until `ack` or `nack`: `{ tag, msg,
 * ack(), nack(requeue) }`; undefined at the timeout and at once when asked to stop. */
export function take(source, timeoutMs = 1000) {
  let delivery;
  try {
    delivery = daemonHost.take(source, timeoutMs);
  } catch (e) {
    throw refused(e);
  }
  if (delivery === undefined) return undefined;
  const tag = delivery.tag;
  return {
    tag,
    msg: fromWit(delivery.msg),
    ack: () => ack(tag),
    nack: (requeue = true, error = undefined) => nack(tag, requeue, error),
  };
}

/** Settle a taken message as done. */
export function ack(tag) {
  try {
    daemonHost.ack(tag);
  } catch (e) {
    throw refused(e);
  }
}

/** Give a taken message back (`requeue`) or dead-letter it; a dead letter is named by
 * `error`'s class when one is given (`exception_name` `RangeError`). */
export function nack(tag, requeue = true, error = undefined) {
  if (error !== undefined && !requeue) {
    const name = String(error?.name ?? 'Error');
    nameFailure(name, String(error?.constructor?.name || name));
  }
  try {
    daemonHost.nack(tag, requeue);
  } catch (e) {
    throw refused(e);
  }
}
