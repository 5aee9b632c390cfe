/**
 * The netlink connection the kernel layer talks through: one request with
 * its ACK, or one dump. `NetlinkSocket` is the real one; tests of
 * the layers above may hand in an in-memory one (as mdlayher/netlink's
 * `nltest` does), so the provider's transitions run without root.
 *
 * @module
 */
import type { Attr, NetlinkMessage } from "./codec.ts";

/** What a request is, for error messages: the operation and the object. */
export interface RequestContext {
  /** The operation, e.g. `"create link"`. */
  op: string;
  /** The object, e.g. a device name. */
  object: string;
}

/** A request: message type and flags, family header, attributes. */
export interface Request {
  /** `RTM_*` message type. */
  type: number;
  /** `NLM_F_*` flags besides REQUEST/ACK/DUMP, which the connection adds. */
  flags: number;
  /** The family header (ifinfomsg, ifaddrmsg, tcmsg). */
  header: Uint8Array;
  /** Attributes after the header. */
  attrs?: Attr[];
}

/**
 * A synchronous rtnetlink connection bound to one network namespace.
 * Kernel errors are thrown as `KernelError` naming `ctx.op` and `ctx.object`.
 */
export interface NetlinkConn {
  /**
   * Sends a request with NLM_F_ACK; returns the messages that came before
   * the ACK (with NLM_F_ECHO, the created object).
   */
  request(req: Request, ctx: RequestContext): NetlinkMessage[];
  /** Sends a dump request (NLM_F_DUMP) and returns every message of it. */
  dump(req: Request, ctx: RequestContext): NetlinkMessage[];
  /** Closes the connection; idempotent. */
  close(): void;
}
