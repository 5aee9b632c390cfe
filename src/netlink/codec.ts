/**
 * Netlink message and attribute encoding and decoding (linux/netlink.h
 * layout, host byte order), kept apart from any socket so it can be tested on
 * byte vectors.
 *
 * @module
 */
import { Netlink } from "./constants.ts";

const { NLMSG_HDRLEN, NLA_HDRLEN, NLA_F_NESTED, NLA_TYPE_MASK } = Netlink;

/** Netlink's 4-byte alignment (NLMSG_ALIGN / NLA_ALIGN). */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** Malformed bytes from the kernel (or from a test vector). */
export class NetlinkDecodeError extends Error {
  /** Offset at which decoding failed. */
  readonly offset: number;
  constructor(what: string, offset: number) {
    super(`netlink decode: ${what} at offset ${offset}`);
    this.name = "NetlinkDecodeError";
    this.offset = offset;
  }
}

/** A netlink attribute to encode: raw bytes, or nested attributes. */
export interface Attr {
  /** Attribute type (NLA_F_NESTED is added for nested values). */
  type: number;
  /** Payload bytes, or the attributes nested inside. */
  value: Uint8Array | Attr[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Attribute constructors for the payload types netlink uses. */
export const nla = {
  /** Raw bytes. */
  bytes(type: number, value: Uint8Array): Attr {
    return { type, value };
  },
  /** An 8-bit unsigned integer. */
  u8(type: number, v: number): Attr {
    return { type, value: Uint8Array.of(v & 0xff) };
  },
  /** A 16-bit unsigned integer in host byte order. */
  u16(type: number, v: number): Attr {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    return { type, value: b };
  },
  /** A 32-bit unsigned integer in host byte order. */
  u32(type: number, v: number): Attr {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    return { type, value: b };
  },
  /** A 32-bit signed integer in host byte order. */
  i32(type: number, v: number): Attr {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return { type, value: b };
  },
  /** A NUL-terminated string (NLA_NUL_STRING / NLA_STRING). */
  str(type: number, s: string): Attr {
    const enc = encoder.encode(s);
    const b = new Uint8Array(enc.length + 1);
    b.set(enc);
    return { type, value: b };
  },
  /** A flag: present with no payload. */
  flag(type: number): Attr {
    return { type, value: new Uint8Array(0) };
  },
  /** Attributes nested inside one attribute (NLA_F_NESTED set). */
  nested(type: number, attrs: Attr[]): Attr {
    return { type, value: attrs };
  },
};

function attrLength(a: Attr): number {
  return NLA_HDRLEN +
    (a.value instanceof Uint8Array ? a.value.length : attrsLength(a.value));
}

/** Encoded size of a list of attributes, padding included. */
export function attrsLength(attrs: Attr[]): number {
  let n = 0;
  for (const a of attrs) n += align4(attrLength(a));
  return n;
}

function writeAttrs(
  view: DataView,
  bytes: Uint8Array,
  off: number,
  attrs: Attr[],
): number {
  for (const a of attrs) {
    const len = attrLength(a);
    const nested = !(a.value instanceof Uint8Array);
    view.setUint16(off, len, true);
    view.setUint16(off + 2, nested ? a.type | NLA_F_NESTED : a.type, true);
    if (a.value instanceof Uint8Array) bytes.set(a.value, off + NLA_HDRLEN);
    else writeAttrs(view, bytes, off + NLA_HDRLEN, a.value);
    off += align4(len);
  }
  return off;
}

/** Encodes attributes alone (for fixed structs followed by attributes). */
export function encodeAttrs(attrs: Attr[]): Uint8Array {
  const out = new Uint8Array(attrsLength(attrs));
  writeAttrs(new DataView(out.buffer), out, 0, attrs);
  return out;
}

/** The header fields of a netlink message (struct nlmsghdr). */
export interface MessageHeader {
  type: number;
  flags: number;
  seq: number;
  pid?: number;
}

/**
 * Encodes one netlink message: nlmsghdr, the family header (`ifinfomsg`,
 * `tcmsg`, …, already encoded), then the attributes.
 */
export function encodeMessage(
  header: MessageHeader,
  familyHeader: Uint8Array,
  attrs: Attr[] = [],
): Uint8Array<ArrayBuffer> {
  const bodyStart = NLMSG_HDRLEN + align4(familyHeader.length);
  const total = bodyStart + attrsLength(attrs);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, total, true);
  view.setUint16(4, header.type, true);
  view.setUint16(6, header.flags, true);
  view.setUint32(8, header.seq >>> 0, true);
  view.setUint32(12, header.pid ?? 0, true);
  out.set(familyHeader, NLMSG_HDRLEN);
  writeAttrs(view, out, bodyStart, attrs);
  return out;
}

/** A decoded netlink message; `body` views the bytes after nlmsghdr. */
export interface NetlinkMessage {
  /** nlmsg_type (`RTM_*`, `NLMSG_*`). */
  type: number;
  /** nlmsg_flags (`NLM_F_*`). */
  flags: number;
  /** nlmsg_seq. */
  seq: number;
  /** nlmsg_pid. */
  pid: number;
  /** The bytes after the header: family header and attributes. */
  body: Uint8Array;
}

/** Splits a datagram into its netlink messages, checking every length. */
export function decodeMessages(buf: Uint8Array): NetlinkMessage[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = view.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new NetlinkDecodeError(`bad nlmsg_len ${len}`, off);
    }
    out.push({
      type: view.getUint16(off + 4, true),
      flags: view.getUint16(off + 6, true),
      seq: view.getUint32(off + 8, true),
      pid: view.getUint32(off + 12, true),
      body: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/**
 * Decoded attributes of one level, by type (NLA_F_NESTED and byte-order bits
 * masked off). Repeated types keep every occurrence in order.
 */
export class Attrs {
  readonly #byType = new Map<number, Uint8Array[]>();
  readonly #order: [number, Uint8Array][] = [];

  private constructor() {}

  /** Parses the attributes in `buf` (one nesting level). */
  static parse(buf: Uint8Array): Attrs {
    const attrs = new Attrs();
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let off = 0;
    while (off + NLA_HDRLEN <= buf.length) {
      const len = view.getUint16(off, true);
      if (len < NLA_HDRLEN || off + len > buf.length) {
        throw new NetlinkDecodeError(`bad nla_len ${len}`, off);
      }
      const type = view.getUint16(off + 2, true) & NLA_TYPE_MASK;
      const value = buf.subarray(off + NLA_HDRLEN, off + len);
      const list = attrs.#byType.get(type);
      if (list) list.push(value);
      else attrs.#byType.set(type, [value]);
      attrs.#order.push([type, value]);
      off += align4(len);
    }
    return attrs;
  }

  /** Whether an attribute of this type is present. */
  has(type: number): boolean {
    return this.#byType.has(type);
  }

  /** The first payload of this type. */
  get(type: number): Uint8Array | undefined {
    return this.#byType.get(type)?.[0];
  }

  /** Every payload of this type, in order. */
  all(type: number): Uint8Array[] {
    return this.#byType.get(type) ?? [];
  }

  /** Every attribute in wire order, as `[type, payload]`. */
  entries(): readonly [number, Uint8Array][] {
    return this.#order;
  }

  /** An 8-bit value. */
  u8(type: number): number | undefined {
    const b = this.get(type);
    return b && b.length >= 1 ? b[0] : undefined;
  }

  /** A 16-bit host-order value. */
  u16(type: number): number | undefined {
    const b = this.get(type);
    return b && b.length >= 2
      ? new DataView(b.buffer, b.byteOffset, 2).getUint16(0, true)
      : undefined;
  }

  /** A 32-bit host-order value. */
  u32(type: number): number | undefined {
    const b = this.get(type);
    return b && b.length >= 4
      ? new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true)
      : undefined;
  }

  /** A string, up to its NUL terminator. */
  str(type: number): string | undefined {
    const b = this.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return decoder.decode(nul >= 0 ? b.subarray(0, nul) : b);
  }

  /** The attributes nested inside this one. */
  nested(type: number): Attrs | undefined {
    const b = this.get(type);
    return b ? Attrs.parse(b) : undefined;
  }
}

/** Formats 6 bytes as `aa:bb:cc:dd:ee:ff`. */
export function formatMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/** Parses `aa:bb:cc:dd:ee:ff` (or `-` separated) into 6 bytes. */
export function parseMac(mac: string): Uint8Array {
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new TypeError(`invalid MAC address ${JSON.stringify(mac)}`);
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}
