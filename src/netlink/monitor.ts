/**
 * A NETLINK_ROUTE socket that listens: it joins rtnetlink multicast groups
 * (links, traffic control, netns ids) and hands over the kernel's
 * notifications as they queue, without ever blocking (MSG_DONTWAIT; wait
 * for its descriptor with `pollReadable`).
 *
 * With `allNsid`, one socket in vmnic's own netns also hears every netns
 * that has an id there (NETLINK_LISTEN_ALL_NSID), each notification tagged
 * with that id: no socket has to be opened inside, and so pin, a VM's
 * netns (a socket holds its netns alive, and with it the devices in it).
 *
 * @module
 */
import { check, errno, libc } from "../sys/libc.ts";
import { Errno } from "../sys/errno.ts";
import { KernelError } from "../sys/errors.ts";
import { decodeMessages, type NetlinkMessage } from "./codec.ts";
import { Netlink, Socket } from "./constants.ts";

/** sizeof(struct sockaddr_nl): family u16, pad u16, pid u32, groups u32. */
const SOCKADDR_NL_LEN = 12;
/** Offset of nl_pid in struct sockaddr_nl. */
const SOCKADDR_NL_PID = 4;
/** sizeof(struct iovec) on 64-bit: base pointer, length. */
const IOVEC_LEN = 16;
/** struct msghdr on 64-bit Linux: offsets of its fields, and its size. */
const MSGHDR = {
  name: 0,
  namelen: 8,
  iov: 16,
  iovlen: 24,
  control: 32,
  controllen: 40,
  flags: 48,
  size: 56,
} as const;
/** struct cmsghdr on 64-bit: cmsg_len (size_t), level, type; data after. */
const CMSG = { len: 0, level: 8, type: 12, data: 16 } as const;
/** CMSG_ALIGN on 64-bit. */
const CMSG_ALIGN = 8;
/** Room for a few control messages (one int each). */
const CONTROL_LEN = 128;
/** One datagram: a link notification is ~1.5 KiB; a batch of them fits. */
const RECV_BUF_LEN = 64 * 1024;
/** Default receive buffer: bursts (a bridge deleted under 1000 ports) fit. */
const DEFAULT_RCVBUF = 4 * 1024 * 1024;
/** Datagrams taken per {@linkcode NetlinkMonitor.drain} at most. */
const MAX_DATAGRAMS = 1024;

/** What {@linkcode NetlinkMonitor.open} joins and how. */
export interface MonitorOptions {
  /** `RTNLGRP_*` groups to join. */
  groups: readonly number[];
  /** Hear every netns with an id here too (NETLINK_LISTEN_ALL_NSID). */
  allNsid?: boolean;
  /** Receive buffer in bytes (forced past rmem_max when allowed). */
  receiveBuffer?: number;
}

/** One notification. */
export interface Notification {
  /**
   * The id, in the socket's netns, of the netns it happened in; null for
   * the socket's own netns.
   */
  nsid: number | null;
  /** The message. */
  message: NetlinkMessage;
}

/** What one {@linkcode NetlinkMonitor.drain} took. */
export interface Drained {
  /** The notifications, in the order the kernel sent them. */
  notifications: Notification[];
  /**
   * The kernel dropped notifications (ENOBUFS: the receive buffer was
   * full): whatever was watched must be read afresh.
   */
  overrun: boolean;
  /** More may be queued (the per-call cap was reached). */
  more: boolean;
}

/** A listening rtnetlink socket, in the netns where it was opened. */
export class NetlinkMonitor {
  readonly #fd: number;
  #closed = false;
  // Own ArrayBuffers: their addresses go into the msghdr, so they must not
  // live on the JS heap, where a collection could move them.
  readonly #buf = new Uint8Array(new ArrayBuffer(RECV_BUF_LEN));
  readonly #control = new Uint8Array(new ArrayBuffer(CONTROL_LEN));
  readonly #name = new Uint8Array(new ArrayBuffer(SOCKADDR_NL_LEN));
  readonly #iov = new Uint8Array(new ArrayBuffer(IOVEC_LEN));
  readonly #msg = new Uint8Array(new ArrayBuffer(MSGHDR.size));

  private constructor(fd: number) {
    this.#fd = fd;
    const iov = new DataView(this.#iov.buffer);
    iov.setBigUint64(0, addressOf(this.#buf), true);
    iov.setBigUint64(8, BigInt(this.#buf.length), true);
  }

  /**
   * Opens a NETLINK_ROUTE socket in the calling thread's netns and joins
   * `opts.groups`.
   *
   * @throws {KernelError} naming the step that failed.
   */
  static open(opts: MonitorOptions): NetlinkMonitor {
    const c = libc();
    const object = "NETLINK_ROUTE monitor";
    const fd = check(
      c.socket(
        Socket.AF_NETLINK,
        Socket.SOCK_RAW | Socket.SOCK_CLOEXEC,
        Netlink.NETLINK_ROUTE,
      ),
      "open netlink socket",
      object,
    );
    try {
      const addr = new Uint8Array(SOCKADDR_NL_LEN);
      new DataView(addr.buffer).setUint16(0, Socket.AF_NETLINK, true);
      check(c.bind(fd, addr, addr.length), "bind netlink socket", object);
      const size = int32(opts.receiveBuffer ?? DEFAULT_RCVBUF);
      // Past rmem_max needs CAP_NET_ADMIN; the plain option caps silently.
      if (c.setsockopt(fd, Socket.SOL_SOCKET, Socket.SO_RCVBUFFORCE, size, 4)) {
        c.setsockopt(fd, Socket.SOL_SOCKET, Socket.SO_RCVBUF, size, 4);
      }
      for (const group of opts.groups) {
        check(
          c.setsockopt(
            fd,
            Socket.SOL_NETLINK,
            Netlink.NETLINK_ADD_MEMBERSHIP,
            int32(group),
            4,
          ),
          "join netlink group",
          `RTNLGRP ${group}`,
        );
      }
      if (opts.allNsid) {
        check(
          c.setsockopt(
            fd,
            Socket.SOL_NETLINK,
            Netlink.NETLINK_LISTEN_ALL_NSID,
            int32(1),
            4,
          ),
          "listen to all netns",
          object,
        );
      }
    } catch (e) {
      c.close(fd);
      throw e;
    }
    return new NetlinkMonitor(fd);
  }

  /** The descriptor to wait on (readable when notifications are queued). */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Takes what is queued now, never waiting. Messages not sent by the
   * kernel are dropped.
   *
   * @throws {KernelError} for a receive error other than "nothing queued"
   * and "dropped" (ENOBUFS, reported as `overrun`).
   */
  drain(): Drained {
    if (this.#closed) throw new Error("netlink monitor is closed");
    const out: Drained = { notifications: [], overrun: false, more: false };
    for (let n = 0; n < MAX_DATAGRAMS; n++) {
      const got = this.#receive();
      if (got === "empty") return out;
      if (got === "overrun") {
        out.overrun = true;
        continue;
      }
      out.notifications.push(...got);
    }
    out.more = true;
    return out;
  }

  #receive(): Notification[] | "empty" | "overrun" {
    const msg = new DataView(this.#msg.buffer);
    this.#msg.fill(0);
    msg.setBigUint64(MSGHDR.name, addressOf(this.#name), true);
    msg.setUint32(MSGHDR.namelen, SOCKADDR_NL_LEN, true);
    msg.setBigUint64(MSGHDR.iov, addressOf(this.#iov), true);
    msg.setBigUint64(MSGHDR.iovlen, 1n, true);
    msg.setBigUint64(MSGHDR.control, addressOf(this.#control), true);
    msg.setBigUint64(MSGHDR.controllen, BigInt(CONTROL_LEN), true);
    const n = Number(libc().recvmsg(this.#fd, this.#msg, Socket.MSG_DONTWAIT));
    if (n < 0) {
      const e = errno();
      if (e === Errno.EAGAIN || e === Errno.EINTR) return "empty";
      if (e === Errno.ENOBUFS) return "overrun";
      throw new KernelError("receive notifications", "NETLINK_ROUTE", e);
    }
    const flags = msg.getInt32(MSGHDR.flags, true);
    const pid = new DataView(this.#name.buffer).getUint32(
      SOCKADDR_NL_PID,
      true,
    );
    // Only the kernel (port 0) speaks for the kernel; a cut datagram is
    // noise (the buffer holds far more than one notification).
    if (pid !== 0 || flags & Socket.MSG_TRUNC) return [];
    const nsid = this.#nsidOf(
      Number(msg.getBigUint64(MSGHDR.controllen, true)),
    );
    return decodeMessages(this.#buf.slice(0, n)).map((message) => ({
      nsid,
      message,
    }));
  }

  /** The NETLINK_LISTEN_ALL_NSID control message's netns id, if any. */
  #nsidOf(controlLen: number): number | null {
    const c = new DataView(this.#control.buffer);
    for (let at = 0; at + CMSG.data <= controlLen;) {
      const len = Number(c.getBigUint64(at + CMSG.len, true));
      if (len < CMSG.data) break;
      if (
        c.getInt32(at + CMSG.level, true) === Socket.SOL_NETLINK &&
        c.getInt32(at + CMSG.type, true) === Netlink.NETLINK_LISTEN_ALL_NSID &&
        len >= CMSG.data + 4
      ) {
        return c.getInt32(at + CMSG.data, true);
      }
      at += Math.ceil(len / CMSG_ALIGN) * CMSG_ALIGN;
    }
    return null;
  }

  /** Closes the socket; idempotent. Nothing may wait on it any more. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.#fd);
  }

  /** Closes the socket (`using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A 4-byte int in host byte order, for setsockopt. */
function int32(v: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}

/** The address of a buffer's first byte. */
function addressOf(b: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
}
