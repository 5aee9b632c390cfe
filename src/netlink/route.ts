/**
 * rtnetlink family headers (linux/rtnetlink.h): `ifinfomsg`, `ifaddrmsg` and
 * `tcmsg`, encoded and decoded in host byte order.
 *
 * @module
 */

/** struct ifinfomsg: the header of link messages. */
export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}

/** Size of struct ifinfomsg. */
export const IFINFOMSG_LEN = 16;

/** Encodes a struct ifinfomsg. */
export function encodeIfInfoMsg(m: Partial<IfInfoMsg>): Uint8Array {
  const b = new Uint8Array(IFINFOMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, m.family ?? 0);
  v.setUint16(2, m.type ?? 0, true);
  v.setInt32(4, m.index ?? 0, true);
  v.setUint32(8, m.flags ?? 0, true);
  v.setUint32(12, m.change ?? 0, true);
  return b;
}

/** Decodes a struct ifinfomsg; `rest` is what follows it (the attributes). */
export function decodeIfInfoMsg(
  body: Uint8Array,
): { msg: IfInfoMsg; rest: Uint8Array } {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return {
    msg: {
      family: v.getUint8(0),
      type: v.getUint16(2, true),
      index: v.getInt32(4, true),
      flags: v.getUint32(8, true),
      change: v.getUint32(12, true),
    },
    rest: body.subarray(IFINFOMSG_LEN),
  };
}

/** struct ifaddrmsg: the header of address messages. */
export interface IfAddrMsg {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
}

/** Size of struct ifaddrmsg. */
export const IFADDRMSG_LEN = 8;

/** Encodes a struct ifaddrmsg. */
export function encodeIfAddrMsg(m: Partial<IfAddrMsg>): Uint8Array {
  const b = new Uint8Array(IFADDRMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, m.family ?? 0);
  v.setUint8(1, m.prefixlen ?? 0);
  v.setUint8(2, m.flags ?? 0);
  v.setUint8(3, m.scope ?? 0);
  v.setUint32(4, m.index ?? 0, true);
  return b;
}

/** Decodes a struct ifaddrmsg; `rest` is what follows it. */
export function decodeIfAddrMsg(
  body: Uint8Array,
): { msg: IfAddrMsg; rest: Uint8Array } {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return {
    msg: {
      family: v.getUint8(0),
      prefixlen: v.getUint8(1),
      flags: v.getUint8(2),
      scope: v.getUint8(3),
      index: v.getUint32(4, true),
    },
    rest: body.subarray(IFADDRMSG_LEN),
  };
}

/** struct tcmsg: the header of qdisc, class and filter messages. */
export interface TcMsg {
  family: number;
  ifindex: number;
  handle: number;
  parent: number;
  /** For filters: `prio << 16 | protocol` (protocol in network byte order). */
  info: number;
}

/** Size of struct tcmsg. */
export const TCMSG_LEN = 20;

/** Encodes a struct tcmsg. */
export function encodeTcMsg(m: Partial<TcMsg>): Uint8Array {
  const b = new Uint8Array(TCMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, m.family ?? 0);
  v.setInt32(4, m.ifindex ?? 0, true);
  v.setUint32(8, (m.handle ?? 0) >>> 0, true);
  v.setUint32(12, (m.parent ?? 0) >>> 0, true);
  v.setUint32(16, (m.info ?? 0) >>> 0, true);
  return b;
}

/** Decodes a struct tcmsg; `rest` is what follows it. */
export function decodeTcMsg(
  body: Uint8Array,
): { msg: TcMsg; rest: Uint8Array } {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return {
    msg: {
      family: v.getUint8(0),
      ifindex: v.getInt32(4, true),
      handle: v.getUint32(8, true),
      parent: v.getUint32(12, true),
      info: v.getUint32(16, true),
    },
    rest: body.subarray(TCMSG_LEN),
  };
}

/** htons: a 16-bit value in network byte order, as a host-order number. */
export function htons(v: number): number {
  return ((v & 0xff) << 8) | ((v >> 8) & 0xff);
}
