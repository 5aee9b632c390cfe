/**
 * IPv4 and IPv6 address text, parsed to and formatted from the byte form
 * netlink carries (network byte order). IPv6 is formatted as RFC 5952 says
 * (lowercase, longest zero run as `::`), which is also what iproute2 prints,
 * so results compare equal to the oracle's.
 *
 * @module
 */
import { InvalidArgumentError } from "../sys/errors.ts";

/** Bytes of an IPv4 address. */
export const IPV4_LEN = 4;
/** Bytes of an IPv6 address. */
export const IPV6_LEN = 16;

const IPV6_GROUPS = 8;
const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/** An address with its family, as bytes in network order. */
export interface IpAddress {
  /** IP version. */
  family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
}

/** An address with a prefix length, e.g. `10.0.0.1/24`. */
export interface Cidr extends IpAddress {
  /** Prefix length. */
  prefix: number;
}

function invalid(op: string, text: string, reason: string): never {
  throw new InvalidArgumentError(op, text, reason);
}

/** Parses dotted-quad IPv4 (`192.0.2.1`; no leading zeros, which could mean octal). */
export function parseIPv4(text: string): Uint8Array {
  const parts = text.split(".");
  if (parts.length !== IPV4_LEN) {
    invalid("parse IPv4 address", text, "expected 4 dotted decimal parts");
  }
  const out = new Uint8Array(IPV4_LEN);
  parts.forEach((p, i) => {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) {
      invalid("parse IPv4 address", text, `bad part ${JSON.stringify(p)}`);
    }
    out[i] = Number(p);
  });
  return out;
}

/** Formats 4 bytes as dotted quad. */
export function formatIPv4(bytes: Uint8Array): string {
  if (bytes.length !== IPV4_LEN) {
    invalid("format IPv4 address", String(bytes), "expected 4 bytes");
  }
  return Array.from(bytes).join(".");
}

/**
 * Parses IPv6 text: up to 8 hex groups with at most one `::`, optionally
 * ending in a dotted quad (`::ffff:192.0.2.1`). Zone ids (`%eth0`) are
 * refused: netlink addresses carry the interface separately.
 */
export function parseIPv6(text: string): Uint8Array {
  const op = "parse IPv6 address";
  let groupsText = text;
  let tail: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(":");
  if (lastColon >= 0 && text.indexOf(".", lastColon) > lastColon) {
    tail = parseIPv4(text.slice(lastColon + 1));
    // Keep the colon(s) before the quad so `::1.2.3.4` still reads as `::`.
    groupsText = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = groupsText.split("::");
  if (halves.length > 2) invalid(op, text, "more than one '::'");
  const parseGroups = (s: string): number[] =>
    s === "" ? [] : s.split(":").map((g) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) {
        invalid(op, text, `bad group ${JSON.stringify(g)}`);
      }
      return parseInt(g, 16);
    });
  const head = parseGroups(halves[0]);
  const rest = halves.length === 2 ? parseGroups(halves[1]) : [];
  let groups: number[];
  if (halves.length === 2) {
    const missing = IPV6_GROUPS - head.length - rest.length;
    // RFC 4291 allows `::` for one group or more; it must replace something.
    if (missing < 1) invalid(op, text, "'::' with 8 groups present");
    groups = [...head, ...new Array(missing).fill(0), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== IPV6_GROUPS) {
    invalid(op, text, `expected 8 groups, got ${groups.length}`);
  }
  const out = new Uint8Array(IPV6_LEN);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  if (tail) out.set(tail, IPV6_LEN - IPV4_LEN);
  return out;
}

/**
 * Formats 16 bytes per RFC 5952: lowercase, no leading zeros, the longest
 * run of two or more zero groups (the first on a tie) as `::`, and
 * IPv4-mapped addresses (`::ffff:0:0/96`) with a dotted-quad tail.
 */
export function formatIPv6(bytes: Uint8Array): string {
  if (bytes.length !== IPV6_LEN) {
    invalid("format IPv6 address", String(bytes), "expected 16 bytes");
  }
  if (V4_MAPPED_PREFIX.every((b, i) => bytes[i] === b)) {
    return `::ffff:${formatIPv4(bytes.subarray(12))}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < IPV6_GROUPS; i++) {
    groups.push((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  }
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < IPV6_GROUPS;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < IPV6_GROUPS && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestLen < 2) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${
    hex(groups.slice(bestStart + bestLen))
  }`;
}

/** Parses either family: IPv6 when the text has a `:`. */
export function parseIP(text: string): IpAddress {
  return text.includes(":")
    ? { family: 6, bytes: parseIPv6(text) }
    : { family: 4, bytes: parseIPv4(text) };
}

/** Formats 4 or 16 bytes as IPv4 or IPv6 text. */
export function formatIP(bytes: Uint8Array): string {
  if (bytes.length === IPV4_LEN) return formatIPv4(bytes);
  if (bytes.length === IPV6_LEN) return formatIPv6(bytes);
  return invalid(
    "format IP address",
    String(bytes),
    `expected 4 or 16 bytes, got ${bytes.length}`,
  );
}

/**
 * Parses `address/prefix`. Without `/prefix` the address is a host route
 * (32 or 128), as iproute2 takes it.
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf("/");
  const addr = parseIP(slash < 0 ? text : text.slice(0, slash));
  const max = addr.family === 4 ? 32 : 128;
  if (slash < 0) return { ...addr, prefix: max };
  const p = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max) {
    invalid("parse CIDR", text, `prefix must be 0..${max}`);
  }
  return { ...addr, prefix: Number(p) };
}
