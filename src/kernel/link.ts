/**
 * Network links over rtnetlink: read, create (bridge, veth, dummy), change
 * and delete, in the netns of the socket the caller passes.
 *
 * Every name is validated before the kernel is asked, so a bad name changes
 * nothing; every kernel failure is a {@linkcode KernelError} naming the
 * operation and the device.
 *
 * @module
 */
import { Errno } from "../sys/errno.ts";
import { InvalidArgumentError, isErrno, KernelError } from "../sys/errors.ts";
import {
  type Attr,
  Attrs,
  encodeAttrs,
  formatMac,
  type NetlinkMessage,
  nla,
  parseMac,
} from "../netlink/codec.ts";
import {
  If,
  IfLink,
  Netlink,
  Rtnl,
  Socket,
  Veth,
} from "../netlink/constants.ts";
import { decodeIfInfoMsg, encodeIfInfoMsg } from "../netlink/route.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { validateIfName } from "./ifname.ts";

/** A link as the kernel reports it (RTM_NEWLINK). */
export interface Link {
  /** ifindex. */
  index: number;
  /** IFLA_IFNAME. */
  name: string;
  /** IFLA_INFO_KIND: `"veth"`, `"bridge"`, `"tun"`, …; absent for plain devices. */
  kind?: string;
  /** IFLA_MTU. */
  mtu: number;
  /** IFLA_ADDRESS, `aa:bb:cc:dd:ee:ff`. */
  mac?: string;
  /** ifi_flags (IFF_*). */
  flags: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Index of the master (bridge) device. */
  master?: number;
  /** IFLA_TXQLEN (`ip` shows `txqlen`). */
  txqlen?: number;
  /** IFLA_OPERSTATE (IF_OPER_*). */
  operstate?: number;
  /** IFLA_NUM_TX_QUEUES. */
  numTxQueues?: number;
  /** IFLA_NUM_RX_QUEUES. */
  numRxQueues?: number;
  /** IFLA_LINK: for a veth, the peer's index (in the peer's netns). */
  linkIndex?: number;
  /** IFLA_GSO_MAX_SIZE. */
  gsoMaxSize?: number;
  /** IFLA_GRO_MAX_SIZE (Linux >= 5.19). */
  groMaxSize?: number;
  /** IFLA_INET6_ADDR_GEN_MODE (IN6_ADDR_GEN_MODE_*); absent without IPv6. */
  inet6AddrGenMode?: number;
  /** IFLA_IFALIAS (`ip link set … alias`), when one is set. */
  alias?: string;
}

const { NLM_F_CREATE, NLM_F_EXCL } = Netlink;

/** The numeric {@linkcode Link} fields present only when the kernel sends them. */
type OptionalNumber =
  | "master"
  | "txqlen"
  | "operstate"
  | "numTxQueues"
  | "numRxQueues"
  | "linkIndex"
  | "gsoMaxSize"
  | "groMaxSize"
  | "inet6AddrGenMode";

/** Decodes an RTM_NEWLINK message into a {@linkcode Link}. */
export function decodeLink(msg: NetlinkMessage): Link {
  const { msg: ifi, rest } = decodeIfInfoMsg(msg.body);
  const a = Attrs.parse(rest);
  const link: Link = {
    index: ifi.index,
    name: a.str(IfLink.IFLA_IFNAME) ?? "",
    mtu: a.u32(IfLink.IFLA_MTU) ?? 0,
    flags: ifi.flags,
    up: (ifi.flags & If.IFF_UP) !== 0,
  };
  const kind = a.nested(IfLink.IFLA_LINKINFO)?.str(IfLink.IFLA_INFO_KIND);
  if (kind !== undefined) link.kind = kind;
  const mac = a.get(IfLink.IFLA_ADDRESS);
  if (mac) link.mac = formatMac(mac);
  const alias = a.str(IfLink.IFLA_IFALIAS);
  if (alias) link.alias = alias;
  const optional: [OptionalNumber, number | undefined][] = [
    ["master", a.u32(IfLink.IFLA_MASTER)],
    ["txqlen", a.u32(IfLink.IFLA_TXQLEN)],
    ["operstate", a.u8(IfLink.IFLA_OPERSTATE)],
    ["numTxQueues", a.u32(IfLink.IFLA_NUM_TX_QUEUES)],
    ["numRxQueues", a.u32(IfLink.IFLA_NUM_RX_QUEUES)],
    ["linkIndex", a.u32(IfLink.IFLA_LINK)],
    ["gsoMaxSize", a.u32(IfLink.IFLA_GSO_MAX_SIZE)],
    ["groMaxSize", a.u32(IfLink.IFLA_GRO_MAX_SIZE)],
    [
      "inet6AddrGenMode",
      a.nested(IfLink.IFLA_AF_SPEC)?.nested(Socket.AF_INET6)?.u8(
        IfLink.IFLA_INET6_ADDR_GEN_MODE,
      ),
    ],
  ];
  for (const [key, value] of optional) {
    if (value !== undefined) link[key] = value;
  }
  return link;
}

/** One link by name, or `null` when there is none. */
export function getLinkByName(sock: NetlinkConn, name: string): Link | null {
  validateIfName(name);
  return getLink(sock, 0, [nla.str(IfLink.IFLA_IFNAME, name)], name);
}

/** One link by index, or `null` when there is none. */
export function getLinkByIndex(
  sock: NetlinkConn,
  index: number,
): Link | null {
  return getLink(sock, index, [], `#${index}`);
}

function getLink(
  sock: NetlinkConn,
  index: number,
  attrs: Attr[],
  object: string,
): Link | null {
  try {
    const replies = sock.request({
      type: Rtnl.RTM_GETLINK,
      flags: 0,
      header: encodeIfInfoMsg({ family: Socket.AF_UNSPEC, index }),
      attrs,
    }, { op: "get link", object });
    const msg = replies.find((m) => m.type === Rtnl.RTM_NEWLINK);
    return msg ? decodeLink(msg) : null;
  } catch (err) {
    if (isErrno(err, Errno.ENODEV)) return null;
    throw err;
  }
}

/** Every link of the socket's netns. */
export function listLinks(sock: NetlinkConn): Link[] {
  return sock.dump({
    type: Rtnl.RTM_GETLINK,
    flags: 0,
    header: encodeIfInfoMsg({ family: Socket.AF_UNSPEC }),
  }, { op: "list links", object: "*" })
    .filter((m) => m.type === Rtnl.RTM_NEWLINK)
    .map(decodeLink);
}

/**
 * The link called `name`.
 *
 * @throws {KernelError} `ENODEV` naming `op` when it does not exist.
 */
export function requireLink(
  sock: NetlinkConn,
  name: string,
  op: string,
): Link {
  const link = getLinkByName(sock, name);
  if (!link) throw new KernelError(op, name, Errno.ENODEV);
  return link;
}

function macBytes(op: string, device: string, mac: string): Uint8Array {
  try {
    return parseMac(mac);
  } catch (err) {
    throw new InvalidArgumentError(op, device, (err as Error).message);
  }
}

function createLink(
  sock: NetlinkConn,
  op: string,
  name: string,
  attrs: Attr[],
): void {
  sock.request({
    type: Rtnl.RTM_NEWLINK,
    flags: NLM_F_CREATE | NLM_F_EXCL,
    header: encodeIfInfoMsg({ family: Socket.AF_UNSPEC }),
    attrs: [nla.str(IfLink.IFLA_IFNAME, name), ...attrs],
  }, { op, object: name });
}

function linkInfo(kind: string, data?: Attr[]): Attr {
  return nla.nested(IfLink.IFLA_LINKINFO, [
    nla.str(IfLink.IFLA_INFO_KIND, kind),
    ...(data ? [nla.nested(IfLink.IFLA_INFO_DATA, data)] : []),
  ]);
}

/**
 * Creates a bridge (down).
 *
 * @throws {KernelError} `EEXIST` when a link of that name exists.
 */
export function createBridge(
  sock: NetlinkConn,
  name: string,
  opts: { mtu?: number } = {},
): void {
  validateIfName(name);
  createLink(sock, "create bridge", name, [
    ...(opts.mtu !== undefined ? [nla.u32(IfLink.IFLA_MTU, opts.mtu)] : []),
    linkInfo("bridge"),
  ]);
}

/** Options of {@linkcode createVeth}. */
export interface VethOptions {
  /** MTU of both ends. */
  mtu?: number;
  /** Open fd of the netns the peer goes to (it stays here otherwise). */
  peerNetnsFd?: number;
  /** MAC of `name`. */
  mac?: string;
  /** MAC of the peer. */
  peerMac?: string;
}

/**
 * Creates a veth pair `name` <-> `peerName` (both down), the peer optionally
 * in another netns.
 *
 * @throws {KernelError} `EEXIST` when either name is taken.
 */
export function createVeth(
  sock: NetlinkConn,
  name: string,
  peerName: string,
  opts: VethOptions = {},
): void {
  const op = "create veth";
  validateIfName(name);
  validateIfName(peerName);
  const mtu = opts.mtu !== undefined
    ? [nla.u32(IfLink.IFLA_MTU, opts.mtu)]
    : [];
  const mac = opts.mac !== undefined
    ? [nla.bytes(IfLink.IFLA_ADDRESS, macBytes(op, name, opts.mac))]
    : [];
  const peerMac = opts.peerMac !== undefined
    ? [nla.bytes(IfLink.IFLA_ADDRESS, macBytes(op, peerName, opts.peerMac))]
    : [];
  const peerNs = opts.peerNetnsFd !== undefined
    ? [nla.u32(IfLink.IFLA_NET_NS_FD, opts.peerNetnsFd)]
    : [];
  // VETH_INFO_PEER carries a whole ifinfomsg followed by the peer's own
  // attributes, not plain nested attributes.
  const header = encodeIfInfoMsg({ family: Socket.AF_UNSPEC });
  const peerAttrs = encodeAttrs([
    nla.str(IfLink.IFLA_IFNAME, peerName),
    ...mtu,
    ...peerMac,
    ...peerNs,
  ]);
  const peer = new Uint8Array(header.length + peerAttrs.length);
  peer.set(header);
  peer.set(peerAttrs, header.length);
  createLink(sock, op, name, [
    ...mtu,
    ...mac,
    linkInfo("veth", [nla.bytes(Veth.VETH_INFO_PEER, peer)]),
  ]);
}

/**
 * Creates a dummy device (down). Needs CONFIG_DUMMY: `EOPNOTSUPP` where the
 * kernel lacks it.
 */
export function createDummy(sock: NetlinkConn, name: string): void {
  validateIfName(name);
  createLink(sock, "create dummy", name, [linkInfo("dummy")]);
}

/**
 * Deletes a link (a veth takes its peer with it).
 *
 * @returns `true` when deleted; `false` when absent and `ignoreMissing`.
 * @throws {KernelError} `ENODEV` when absent without `ignoreMissing`.
 */
export function deleteLink(
  sock: NetlinkConn,
  name: string,
  opts: { ignoreMissing?: boolean } = {},
): boolean {
  validateIfName(name);
  try {
    sock.request({
      type: Rtnl.RTM_DELLINK,
      flags: 0,
      header: encodeIfInfoMsg({ family: Socket.AF_UNSPEC }),
      attrs: [nla.str(IfLink.IFLA_IFNAME, name)],
    }, { op: "delete link", object: name });
    return true;
  } catch (err) {
    if (opts.ignoreMissing && isErrno(err, Errno.ENODEV)) return false;
    throw err;
  }
}

/**
 * Changes the link called `name` (RTM_SETLINK addressed by IFLA_IFNAME, which
 * the kernel resolves, so one round trip; ENODEV when absent).
 */
function setLink(
  sock: NetlinkConn,
  op: string,
  name: string,
  attrs: Attr[],
  flags: { flags?: number; change?: number } = {},
): void {
  validateIfName(name);
  sock.request({
    type: Rtnl.RTM_SETLINK,
    flags: 0,
    header: encodeIfInfoMsg({ family: Socket.AF_UNSPEC, ...flags }),
    attrs: [nla.str(IfLink.IFLA_IFNAME, name), ...attrs],
  }, { op, object: name });
}

/** Sets the link administratively up. */
export function setLinkUp(sock: NetlinkConn, name: string): void {
  setLink(sock, "set link up", name, [], {
    flags: If.IFF_UP,
    change: If.IFF_UP,
  });
}

/** Sets the link administratively down. */
export function setLinkDown(sock: NetlinkConn, name: string): void {
  setLink(sock, "set link down", name, [], { flags: 0, change: If.IFF_UP });
}

/** Sets the MTU (`EINVAL` outside the device's min/max MTU). */
export function setMtu(sock: NetlinkConn, name: string, mtu: number): void {
  setLink(sock, "set mtu", name, [nla.u32(IfLink.IFLA_MTU, mtu)]);
}

/** Sets the MAC address (`aa:bb:cc:dd:ee:ff`). */
export function setMac(sock: NetlinkConn, name: string, mac: string): void {
  const op = "set mac";
  validateIfName(name);
  setLink(sock, op, name, [
    nla.bytes(IfLink.IFLA_ADDRESS, macBytes(op, name, mac)),
  ]);
}

/** Longest alias the kernel takes: IFALIASZ (256) less the NUL we send. */
export const MAX_IFALIAS = 254;

/** Sets the link's alias (`ip link set NAME alias TEXT`); `""` clears it. */
export function setLinkAlias(
  sock: NetlinkConn,
  name: string,
  alias: string,
): void {
  const op = "set link alias";
  if (new TextEncoder().encode(alias).length > MAX_IFALIAS) {
    throw new InvalidArgumentError(
      op,
      alias,
      `longer than ${MAX_IFALIAS} bytes`,
    );
  }
  setLink(sock, op, name, [nla.str(IfLink.IFLA_IFALIAS, alias)]);
}

/** Sets the transmit queue length (`txqlen`). */
export function setTxQueueLen(
  sock: NetlinkConn,
  name: string,
  len: number,
): void {
  setLink(sock, "set txqueuelen", name, [nla.u32(IfLink.IFLA_TXQLEN, len)]);
}

/**
 * Enslaves the link to `masterName` (a bridge), or releases it when
 * `masterName` is `null`.
 *
 * @throws {KernelError} `ENODEV` naming the master when it does not exist.
 */
export function setMaster(
  sock: NetlinkConn,
  name: string,
  masterName: string | null,
): void {
  const op = masterName === null ? "set nomaster" : "set master";
  validateIfName(name);
  const masterIndex = masterName === null
    ? 0
    : requireLink(sock, masterName, op).index;
  setLink(sock, op, name, [nla.u32(IfLink.IFLA_MASTER, masterIndex)]);
}

/**
 * Sets the GRO max size, best effort.
 *
 * @returns `false` when the kernel refuses it (EINVAL, EOPNOTSUPP, ERANGE) or
 * silently ignores it (kernels before 5.19 do not know IFLA_GRO_MAX_SIZE and
 * drop unknown attributes), `true` when the link now reports `size`.
 */
export function setGroMaxSize(
  sock: NetlinkConn,
  name: string,
  size: number,
): boolean {
  try {
    setLink(sock, "set gro_max_size", name, [
      nla.u32(IfLink.IFLA_GRO_MAX_SIZE, size),
    ]);
  } catch (err) {
    if (isErrno(err, Errno.EINVAL, Errno.EOPNOTSUPP, Errno.ERANGE)) {
      return false;
    }
    throw err;
  }
  return getLinkByName(sock, name)?.groMaxSize === size;
}

/**
 * Renames a link. Kernels before 6.2 require the link down.
 *
 * @throws {KernelError} `EBUSY` when it is up on such a kernel, `EEXIST` when
 * `newName` is taken, `ENODEV` when `name` does not exist.
 */
export function renameLink(
  sock: NetlinkConn,
  name: string,
  newName: string,
): void {
  const op = "rename link";
  validateIfName(newName);
  const { index } = requireLink(sock, name, op);
  sock.request({
    type: Rtnl.RTM_SETLINK,
    flags: 0,
    header: encodeIfInfoMsg({ family: Socket.AF_UNSPEC, index }),
    attrs: [nla.str(IfLink.IFLA_IFNAME, newName)],
  }, { op, object: name });
}

/**
 * One IPv4 per-device value (`IPV4_DEVCONF_*`) of a link, as the kernel
 * reports it in the link's IFLA_AF_SPEC/AF_INET/IFLA_INET_CONF (an array
 * of every value, the first being index 1); null when the link or the
 * value is not there.
 */
export function getIpv4Devconf(
  sock: NetlinkConn,
  name: string,
  key: number,
): number | null {
  validateIfName(name);
  let replies;
  try {
    replies = sock.request({
      type: Rtnl.RTM_GETLINK,
      flags: 0,
      header: encodeIfInfoMsg({ family: Socket.AF_UNSPEC }),
      attrs: [nla.str(IfLink.IFLA_IFNAME, name)],
    }, { op: "get ipv4 devconf", object: name });
  } catch (err) {
    if (isErrno(err, Errno.ENODEV)) return null;
    throw err;
  }
  const msg = replies.find((m) => m.type === Rtnl.RTM_NEWLINK);
  if (!msg) return null;
  const { rest } = decodeIfInfoMsg(msg.body);
  const conf = Attrs.parse(rest).nested(IfLink.IFLA_AF_SPEC)
    ?.nested(Socket.AF_INET)?.get(IfLink.IFLA_INET_CONF);
  const at = (key - 1) * 4;
  if (!conf || key < 1 || at + 4 > conf.length) return null;
  return new DataView(conf.buffer, conf.byteOffset, conf.byteLength)
    .getUint32(at, true);
}

/**
 * Sets IPv4 per-device values (`IPV4_DEVCONF_*` index, value), as
 * `sysctl net.ipv4.conf.<dev>.*` would, through IFLA_AF_SPEC/AF_INET.
 */
export function setIpv4Devconf(
  sock: NetlinkConn,
  name: string,
  values: readonly (readonly [number, number])[],
): void {
  setLink(sock, "set ipv4 devconf", name, [
    nla.nested(IfLink.IFLA_AF_SPEC, [
      nla.nested(Socket.AF_INET, [
        nla.nested(
          IfLink.IFLA_INET_CONF,
          values.map(([k, v]) => nla.u32(k, v)),
        ),
      ]),
    ]),
  ]);
}

/**
 * Sets IPv6 address generation (IN6_ADDR_GEN_MODE_*); NONE keeps the link
 * silent: no link-local address, hence no DAD, RS or MLD from it.
 *
 * @returns `false` when IPv6 is unavailable on that link or netns
 * (EAFNOSUPPORT, EOPNOTSUPP), `true` when set.
 */
export function setInet6AddrGenMode(
  sock: NetlinkConn,
  name: string,
  mode: number,
): boolean {
  try {
    setLink(sock, "set inet6 addr_gen_mode", name, [
      nla.nested(IfLink.IFLA_AF_SPEC, [
        nla.nested(Socket.AF_INET6, [
          nla.u8(IfLink.IFLA_INET6_ADDR_GEN_MODE, mode),
        ]),
      ]),
    ]);
    return true;
  } catch (err) {
    if (isErrno(err, Errno.EAFNOSUPPORT, Errno.EOPNOTSUPP)) return false;
    throw err;
  }
}
