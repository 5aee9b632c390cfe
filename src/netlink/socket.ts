/**
 * A NETLINK_ROUTE socket over libc FFI: synchronous request/ACK and dump.
 *
 * The socket belongs to the netns of the thread that opened it and keeps
 * working there after the thread switches back, so callers open one per
 * namespace (inside `withNetns`) and reuse it for a whole operation.
 * Synchronous by design: a reply is immediate, and nothing may be awaited
 * while a thread is switched into another netns.
 *
 * @module
 */
import { check, libc } from "../sys/libc.ts";
import { KernelError } from "../sys/errors.ts";
import { Errno } from "../sys/errno.ts";
import { Netlink, Socket } from "./constants.ts";
import type { NetlinkConn, Request, RequestContext } from "./conn.ts";
import {
  Attrs,
  decodeMessages,
  encodeMessage,
  type NetlinkMessage,
} from "./codec.ts";

const RECV_BUF_SIZE = 64 * 1024;
const RECV_TIMEOUT_SECONDS = 10;
const NLMSGERR_LEN = 4 + Netlink.NLMSG_HDRLEN; // int error + the echoed nlmsghdr
/** sizeof(struct sockaddr_nl): family u16, pad u16, pid u32, groups u32. */
const SOCKADDR_NL_LEN = 12;
/** sizeof(struct timeval) on 64-bit Linux: tv_sec i64, tv_usec i64. */
const TIMEVAL_LEN = 16;
/** How often a dump the kernel marks interrupted (NLM_F_DUMP_INTR) is redone. */
const DUMP_ATTEMPTS = 3;

export type { NetlinkConn, Request, RequestContext } from "./conn.ts";

/** One rtnetlink socket, bound in the netns where it was opened. */
export class NetlinkSocket implements NetlinkConn {
  readonly #fd: number;
  #seq: number;
  #closed = false;
  readonly #buf = new Uint8Array(RECV_BUF_SIZE);

  private constructor(fd: number) {
    this.#fd = fd;
    this.#seq = Math.floor(Math.random() * 0x7fffffff);
  }

  /** Opens a NETLINK_ROUTE socket in the calling thread's current netns. */
  static open(): NetlinkSocket {
    const c = libc();
    const fd = check(
      c.socket(
        Socket.AF_NETLINK,
        Socket.SOCK_RAW | Socket.SOCK_CLOEXEC,
        Netlink.NETLINK_ROUTE,
      ),
      "open netlink socket",
      "NETLINK_ROUTE",
    );
    try {
      // struct sockaddr_nl: family, pad, pid 0 (kernel assigns), groups 0.
      const addr = new Uint8Array(SOCKADDR_NL_LEN);
      new DataView(addr.buffer).setUint16(0, Socket.AF_NETLINK, true);
      check(
        c.bind(fd, addr, addr.length),
        "bind netlink socket",
        "NETLINK_ROUTE",
      );
      const one = Uint8Array.of(1, 0, 0, 0);
      // Best effort: the kernel's error text makes EINVAL and friends useful.
      c.setsockopt(fd, Socket.SOL_NETLINK, Netlink.NETLINK_EXT_ACK, one, 4);
      c.setsockopt(fd, Socket.SOL_NETLINK, Netlink.NETLINK_CAP_ACK, one, 4);
      // Never block forever on a reply that does not come.
      const tv = new Uint8Array(TIMEVAL_LEN);
      new DataView(tv.buffer).setBigInt64(
        0,
        BigInt(RECV_TIMEOUT_SECONDS),
        true,
      );
      c.setsockopt(fd, Socket.SOL_SOCKET, Socket.SO_RCVTIMEO, tv, tv.length);
    } catch (e) {
      c.close(fd);
      throw e;
    }
    return new NetlinkSocket(fd);
  }

  /**
   * Sends a request with NLM_F_ACK and returns the messages that came before
   * the ACK (with NLM_F_ECHO, the created object). A kernel error becomes a
   * {@linkcode KernelError} naming `ctx.op` and `ctx.object`.
   */
  request(req: Request, ctx: RequestContext): NetlinkMessage[] {
    return this.#exchange(
      { ...req, flags: req.flags | Netlink.NLM_F_REQUEST | Netlink.NLM_F_ACK },
      ctx,
    );
  }

  /**
   * Sends a dump request (NLM_F_DUMP) and returns every message of it. A
   * dump the kernel marks inconsistent (the table changed while it was
   * being read, NLM_F_DUMP_INTR) is redone, then refused with EINTR.
   */
  dump(req: Request, ctx: RequestContext): NetlinkMessage[] {
    for (let attempt = 1;; attempt++) {
      const msgs = this.#exchange(
        {
          ...req,
          flags: req.flags | Netlink.NLM_F_REQUEST | Netlink.NLM_F_DUMP,
        },
        ctx,
      );
      if (!msgs.some((m) => m.flags & Netlink.NLM_F_DUMP_INTR)) return msgs;
      if (attempt === DUMP_ATTEMPTS) {
        throw new KernelError(
          ctx.op,
          ctx.object,
          Errno.EINTR,
          `dump interrupted ${DUMP_ATTEMPTS} times`,
        );
      }
    }
  }

  #exchange(req: Request, ctx: RequestContext): NetlinkMessage[] {
    if (this.#closed) throw new Error("netlink socket is closed");
    const seq = this.#seq = (this.#seq + 1) & 0x7fffffff;
    const msg = encodeMessage(
      { type: req.type, flags: req.flags, seq },
      req.header,
      req.attrs,
    );
    const c = libc();
    const dest = new Uint8Array(SOCKADDR_NL_LEN);
    new DataView(dest.buffer).setUint16(0, Socket.AF_NETLINK, true);
    check(
      c.sendto(this.#fd, msg, BigInt(msg.length), 0, dest, dest.length),
      ctx.op,
      ctx.object,
    );
    const out: NetlinkMessage[] = [];
    for (;;) {
      const n = Number(check(
        c.recv(this.#fd, this.#buf, BigInt(this.#buf.length), 0),
        ctx.op,
        ctx.object,
      ));
      // Copy: the receive buffer is reused by the next recv.
      for (const m of decodeMessages(this.#buf.slice(0, n))) {
        if (m.seq !== seq) continue; // a stale reply of an earlier request
        if (m.type === Netlink.NLMSG_DONE) {
          // A dump that failed part-way ends with its errno in NLMSG_DONE.
          const errno = m.body.length >= 4
            ? -new DataView(m.body.buffer, m.body.byteOffset, 4).getInt32(
              0,
              true,
            )
            : 0;
          if (errno > 0) {
            throw new KernelError(ctx.op, ctx.object, errno, extAckMessage(m));
          }
          return out;
        }
        if (m.type === Netlink.NLMSG_ERROR) {
          const errno = -new DataView(m.body.buffer, m.body.byteOffset, 4)
            .getInt32(0, true);
          if (errno === 0) return out; // the ACK
          throw new KernelError(ctx.op, ctx.object, errno, extAckMessage(m));
        }
        out.push(m);
        if (
          !(m.flags & Netlink.NLM_F_MULTI) && !(req.flags & Netlink.NLM_F_ACK)
        ) {
          return out;
        }
      }
    }
  }

  /** Closes the socket; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.#fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The kernel's extended-ACK error text (NLMSGERR_ATTR_MSG), if any. */
function extAckMessage(m: NetlinkMessage): string | undefined {
  if (!(m.flags & Netlink.NLM_F_ACK_TLVS)) return undefined;
  // With NETLINK_CAP_ACK the echoed request is only its header.
  const tlvs = (m.flags & Netlink.NLM_F_CAPPED)
    ? m.body.subarray(NLMSGERR_LEN)
    : undefined;
  if (!tlvs) return undefined;
  try {
    return Attrs.parse(tlvs).str(Netlink.NLMSGERR_ATTR_MSG);
  } catch {
    return undefined;
  }
}
