/**
 * IP addresses on links over rtnetlink: list, add, delete, flush, in the
 * netns of the socket the caller passes.
 *
 * @module
 */
import { Errno } from "../sys/errno.ts";
import { InvalidArgumentError, KernelError } from "../sys/errors.ts";
import { Attrs, type NetlinkMessage, nla } from "../netlink/codec.ts";
import { IfAddr, Netlink, Rtnl, Socket } from "../netlink/constants.ts";
import { decodeIfAddrMsg, encodeIfAddrMsg } from "../netlink/route.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { type Cidr, formatIP, parseCidr, parseIP } from "./ipaddr.ts";
import { requireLink } from "./link.ts";

/** An address on a link, as the kernel reports it (RTM_NEWADDR). */
export interface Address {
  /** IP version. */
  family: 4 | 6;
  /** The local address, as text (IPv6 compressed as iproute2 prints it). */
  address: string;
  /** Prefix length. */
  prefix: number;
  /** ifindex of the link. */
  index: number;
  /** RT_SCOPE_* (universe 0, link 253, host 254). */
  scope: number;
  /** IFA_F_* (IFA_FLAGS when present: it holds the bits beyond 8). */
  flags: number;
  /** IFA_LABEL (IPv4 only; the link's name or an alias like `eth0:1`). */
  label?: string;
  /** The peer of a point-to-point address (IFA_ADDRESS when it differs). */
  peer?: string;
}

const FAMILY_TO_AF = { 4: Socket.AF_INET, 6: Socket.AF_INET6 } as const;

function afToFamily(af: number): 4 | 6 | undefined {
  return af === Socket.AF_INET ? 4 : af === Socket.AF_INET6 ? 6 : undefined;
}

/** Decodes an RTM_NEWADDR message; `null` for families other than IPv4/6. */
export function decodeAddress(msg: NetlinkMessage): Address | null {
  const { msg: ifa, rest } = decodeIfAddrMsg(msg.body);
  const family = afToFamily(ifa.family);
  if (family === undefined) return null;
  const a = Attrs.parse(rest);
  // IFA_LOCAL is the local address; IFA_ADDRESS is the peer on
  // point-to-point links and equals IFA_LOCAL otherwise (IPv6 omits LOCAL).
  const remote = a.get(IfAddr.IFA_ADDRESS);
  const bytes = a.get(IfAddr.IFA_LOCAL) ?? remote;
  if (!bytes) return null;
  const addr: Address = {
    family,
    address: formatIP(bytes),
    prefix: ifa.prefixlen,
    index: ifa.index,
    scope: ifa.scope,
    flags: a.u32(IfAddr.IFA_FLAGS) ?? ifa.flags,
  };
  const label = a.str(IfAddr.IFA_LABEL);
  if (label !== undefined) addr.label = label;
  if (remote && formatIP(remote) !== addr.address) {
    addr.peer = formatIP(remote);
  }
  return addr;
}

/**
 * Addresses of the socket's netns, optionally only those of one link
 * (`index`) and/or one family.
 */
export function listAddrs(
  sock: NetlinkConn,
  filter: { index?: number; family?: 4 | 6 } = {},
): Address[] {
  const af = filter.family ? FAMILY_TO_AF[filter.family] : Socket.AF_UNSPEC;
  const msgs = sock.dump({
    type: Rtnl.RTM_GETADDR,
    flags: 0,
    header: encodeIfAddrMsg({ family: af }),
  }, {
    op: "list addresses",
    object: filter.index !== undefined ? `#${filter.index}` : "*",
  });
  const out: Address[] = [];
  for (const m of msgs) {
    if (m.type !== Rtnl.RTM_NEWADDR) continue;
    const addr = decodeAddress(m);
    // The kernel filters dumps by index only under strict checking: filter here.
    if (!addr) continue;
    if (filter.family !== undefined && addr.family !== filter.family) continue;
    if (filter.index !== undefined && addr.index !== filter.index) continue;
    out.push(addr);
  }
  return out;
}

function cidrOf(op: string, cidr: string): Cidr {
  try {
    return parseCidr(cidr);
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      throw new InvalidArgumentError(op, cidr, err.message);
    }
    throw err;
  }
}

/**
 * Adds `cidr` (e.g. `10.0.0.2/24`, `fd00::2/64`) to the link `ifName`.
 * `noDad` skips IPv6 duplicate address detection (the address is usable at
 * once and no DAD probe leaves the netns).
 *
 * @throws {KernelError} `EEXIST` when the link already has it, `ENODEV` when
 * the link is absent.
 */
export function addAddr(
  sock: NetlinkConn,
  ifName: string,
  cidr: string,
  opts: { noDad?: boolean } = {},
): void {
  const op = "add address";
  const c = cidrOf(op, cidr);
  const { index } = requireLink(sock, ifName, op);
  const flags = opts.noDad ? IfAddr.IFA_F_NODAD : 0;
  sock.request({
    type: Rtnl.RTM_NEWADDR,
    flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_EXCL,
    header: encodeIfAddrMsg({
      family: FAMILY_TO_AF[c.family],
      prefixlen: c.prefix,
      flags,
      scope: IfAddr.RT_SCOPE_UNIVERSE,
      index,
    }),
    // IPv4 takes IFA_LOCAL (IFA_ADDRESS = the same, no peer); IPv6 reads
    // IFA_ADDRESS alone as the local address.
    attrs: [
      ...(c.family === 4 ? [nla.bytes(IfAddr.IFA_LOCAL, c.bytes)] : []),
      nla.bytes(IfAddr.IFA_ADDRESS, c.bytes),
      nla.u32(IfAddr.IFA_FLAGS, flags),
    ],
  }, { op, object: `${cidr} on ${ifName}` });
}

/**
 * RTM_DELADDR for the address `c` (with its peer on point-to-point links:
 * the kernel matches IFA_ADDRESS against the peer there).
 */
function deleteAddress(
  sock: NetlinkConn,
  op: string,
  ifName: string,
  index: number,
  c: Cidr,
  peer?: Uint8Array,
): void {
  sock.request({
    type: Rtnl.RTM_DELADDR,
    flags: 0,
    header: encodeIfAddrMsg({
      family: FAMILY_TO_AF[c.family],
      prefixlen: c.prefix,
      index,
    }),
    attrs: [
      nla.bytes(IfAddr.IFA_LOCAL, c.bytes),
      nla.bytes(IfAddr.IFA_ADDRESS, peer ?? c.bytes),
    ],
  }, { op, object: `${formatIP(c.bytes)}/${c.prefix} on ${ifName}` });
}

/**
 * Deletes `cidr` (address and prefix length must match) from `ifName`.
 *
 * @returns `true` when deleted; `false` when the link has no such address and
 * `ignoreMissing`.
 * @throws {KernelError} `EADDRNOTAVAIL` when absent without `ignoreMissing`;
 * `ENODEV` when the link is absent (also with `ignoreMissing`: a wrong link
 * name is a bug, not an already-done delete).
 */
export function delAddr(
  sock: NetlinkConn,
  ifName: string,
  cidr: string,
  opts: { ignoreMissing?: boolean } = {},
): boolean {
  const op = "delete address";
  const c = cidrOf(op, cidr);
  const { index } = requireLink(sock, ifName, op);
  try {
    deleteAddress(sock, op, ifName, index, c);
    return true;
  } catch (err) {
    if (
      opts.ignoreMissing && err instanceof KernelError &&
      err.errno === Errno.EADDRNOTAVAIL
    ) {
      return false;
    }
    throw err;
  }
}

/**
 * Deletes every address of `ifName` of `family` (both when absent),
 * link-local IPv6 included.
 *
 * @returns how many addresses were deleted.
 */
export function flushAddrs(
  sock: NetlinkConn,
  ifName: string,
  family?: 4 | 6,
): number {
  const op = "flush addresses";
  const { index } = requireLink(sock, ifName, op);
  // Secondaries first: deleting an IPv4 primary drops its secondaries too
  // (unless promote_secondaries), and they would then fail as absent.
  const addrs = listAddrs(sock, { index, family }).sort((a, b) =>
    (b.flags & IfAddr.IFA_F_SECONDARY) - (a.flags & IfAddr.IFA_F_SECONDARY)
  );
  let count = 0;
  for (const a of addrs) {
    try {
      deleteAddress(
        sock,
        op,
        ifName,
        index,
        { ...parseIP(a.address), prefix: a.prefix },
        a.peer !== undefined ? parseIP(a.peer).bytes : undefined,
      );
      count++;
    } catch (err) {
      // Gone meanwhile (DAD failure, a concurrent delete): already flushed.
      if (err instanceof KernelError && err.errno === Errno.EADDRNOTAVAIL) {
        continue;
      }
      throw err;
    }
  }
  return count;
}
