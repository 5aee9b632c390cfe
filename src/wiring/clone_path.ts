/**
 * The routed data path of a clone NIC (docs/datapath.md, "Clone NICs"):
 * the guest keeps its snapshot's identity (MAC, IP, gateway) while the
 * network sees the clone at its own CNI address. No TC redirect: the TAP
 * and the veth are joined by the netns's own IP stack.
 *
 * - The veth keeps its CNI address (ARP for it is answered there) and its
 *   own MAC; IPv6 address generation is off.
 * - The TAP carries no address; proxy ARP on it answers the guest for
 *   every address the netns routes elsewhere (its gateway included), and
 *   a netdev ingress rule takes frames addressed to a MAC the guest
 *   remembers from before the snapshot (its old gateway's) as the TAP's.
 * - Routes: the guest's IP through the TAP (main table); a table per NIC
 *   with the veth's routes, and a rule sending what comes in on the TAP
 *   there, so each NIC's guest traffic leaves by its own veth.
 * - nftables (table `ip vmnic_<tap>`): DNAT of the clone's CNI address to
 *   the guest's IP on the way in, SNAT back on the way out (conntrack
 *   sends the replies back), and a forward filter that lets in only what
 *   was translated or answers the guest, and lets out only the guest's
 *   own address.
 * - `net.ipv4.ip_forward` on in this netns (and off again when its last
 *   clone NIC goes).
 *
 * Synchronous: the caller runs it through `Kernel.inNetns`.
 *
 * @module
 */
import { IfLink } from "../netlink/constants.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { addAddr, delAddr, listAddrs } from "../kernel/addr.ts";
import { formatIP, parseCidr, parseIP } from "../kernel/ipaddr.ts";
import {
  deleteLink,
  getLinkByName,
  requireLink,
  setInet6AddrGenMode,
  setLinkDown,
  setLinkUp,
  setMac,
  setMtu,
} from "../kernel/link.ts";
import {
  deleteRoute,
  deleteRule,
  ensureRule,
  flushTable,
  hasRule,
  listRoutes,
  replaceRoute,
  type RouteSpec,
  type RuleSpec,
} from "../kernel/route.ts";
import { Errno } from "../sys/errno.ts";
import { InvalidArgumentError, isErrno } from "../sys/errors.ts";
import type { NetnsScope, NetnsStack } from "./kernel.ts";
import { makeTap } from "./nic.ts";

/** Routing table of clone NIC `i`: `CLONE_TABLE_BASE + i`. */
export const CLONE_TABLE_BASE = 7600;
/** Preference of the rule of clone NIC `i`: `CLONE_RULE_PRIORITY_BASE + i`. */
export const CLONE_RULE_PRIORITY_BASE = 7600;
/** nft tables of a clone NIC: `ip` and `netdev` tables of this name + TAP. */
export const CLONE_NFT_TABLE_PREFIX = "vmnic_";

/** The netns-wide forwarding switch (path under /proc/sys). */
const IP_FORWARD = ["net", "ipv4", "ip_forward"] as const;
/** IPv4 address length in bits: a host route's prefix. */
const IPV4_HOST_PREFIX = 32;

/** One IPv4 address with its prefix length. */
export interface Ipv4Prefix {
  /** The address. */
  address: string;
  /** Its prefix length. */
  prefix: number;
}

/** What the routed path of one clone NIC joins. */
export interface ClonePathSpec {
  /** The CNI veth (`eth<index>`): keeps the clone's CNI address. */
  veth: string;
  /** The TAP (`tap<index>`): the guest's side. */
  tap: string;
  /** The NIC's index: its routing table and rule. */
  index: number;
  /** TAP queue pairs. */
  queues: number;
  /** The guest's IPv4 address (its snapshot's) and prefix. */
  guest: Ipv4Prefix;
  /** The clone's CNI IPv4 address on the veth, the network's view. */
  net: Ipv4Prefix;
  /**
   * The veth's routes from the CNI result, IPv4 (`dst`, next hop): they go
   * in the NIC's table for what the guest sends.
   */
  routes: { dst: string; gw?: string }[];
  /**
   * The network-side MAC to keep on the veth (asked for, or recorded when
   * rebuilt); the veth's own otherwise.
   */
  mac?: string;
  /** Owner uid allowed to open the TAP besides root. */
  tapOwner?: number;
  /** Leave the veth down (a quiesced VM). */
  down?: boolean;
}

/** What {@linkcode inspectClonePath} finds of the translation. */
export interface TranslationState {
  /** The nft tables (NAT, forward filter, TAP ingress) are as made. */
  rules: boolean;
  /** The guest's route, the NIC's table and its rule are in place. */
  routes: boolean;
  /** `net.ipv4.ip_forward` is on in the netns. */
  forwarding: boolean;
  /** Proxy ARP is on on the TAP (without delay). */
  proxyArp: boolean;
}

/** What one clone NIC's devices and translation look like. */
export interface ClonePathState {
  /** The TAP exists. */
  tapPresent: boolean;
  /** The veth exists. */
  vethPresent: boolean;
  /** The veth's MAC. */
  vethMac?: string;
  /** The veth is administratively up. */
  vethUp: boolean;
  /** The TAP is up. */
  tapUp: boolean;
  /** Addresses on the veth besides its CNI address. */
  vethAddrs: string[];
  /** The veth has its CNI address. */
  netAddress: boolean;
  /** ifindex of the veth's peer in the host netns. */
  peerIndex?: number;
  /** The translation's parts. */
  translation: TranslationState;
  /** The whole path is in place (devices up, translation complete). */
  wired: boolean;
}

/** The routing table of clone NIC `index`. */
export function cloneTable(index: number): number {
  return CLONE_TABLE_BASE + index;
}

/** The nft table name of the clone NIC on `tap` (both families). */
export function cloneNftTable(tap: string): string {
  return `${CLONE_NFT_TABLE_PREFIX}${tap}`;
}

function stackOf(scope: NetnsScope, op: string, object: string): NetnsStack {
  if (!scope.stack) {
    throw new InvalidArgumentError(
      op,
      object,
      "this kernel has no nftables or sysctls (clone NICs need them)",
    );
  }
  return scope.stack;
}

/** `address` checked as IPv4 and printed canonically (safe in nft text). */
function ipv4(op: string, address: string): string {
  const ip = parseIP(address);
  if (ip.family !== 4) {
    throw new InvalidArgumentError(op, address, "clone NICs translate IPv4");
  }
  return formatIP(ip.bytes);
}

/** The network of `address/prefix` as CIDR text (`10.0.0.0/24`). */
export function networkOf(address: string, prefix: number): string {
  const c = parseCidr(`${address}/${prefix}`);
  const bytes = c.bytes.slice();
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    bytes[bit >> 3] &= ~(0x80 >> (bit & 7));
  }
  return `${formatIP(bytes)}/${prefix}`;
}

/** A device name as nft takes it: quoted, after the kernel's own rules. */
function dev(name: string): string {
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(name)) {
    throw new InvalidArgumentError("nft", name, "not a device name");
  }
  return `"${name}"`;
}

/**
 * The nft batch that makes (or makes anew) a clone NIC's tables, in one
 * transaction: what was there before goes in the same batch, so the
 * rules are never half there.
 */
export function cloneRuleset(spec: ClonePathSpec): string {
  const op = "clone ruleset";
  const t = cloneNftTable(spec.tap);
  const guest = ipv4(op, spec.guest.address);
  const net = ipv4(op, spec.net.address);
  const veth = dev(spec.veth);
  const tap = dev(spec.tap);
  return [
    // `add` then `delete`: a delete that never fails, then a fresh table.
    `add table ip ${t}`,
    `delete table ip ${t}`,
    `add table ip ${t}`,
    `add chain ip ${t} nat_in { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain ip ${t} nat_out { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain ip ${t} filter_fwd { type filter hook forward priority filter; policy accept; }`,
    `add rule ip ${t} nat_in iifname ${veth} ip daddr ${net} dnat to ${guest}`,
    `add rule ip ${t} nat_out oifname ${veth} ip saddr ${guest} snat to ${net}`,
    // Out: only the guest's own address is translated; anything else
    // would leave with an address the network never gave this clone.
    `add rule ip ${t} filter_fwd iifname ${tap} oifname ${veth} ip saddr != ${guest} drop`,
    // In: what was translated to the guest, or answers it; nothing else
    // (the guest's address itself belongs to its snapshot's VM).
    `add rule ip ${t} filter_fwd iifname ${veth} oifname ${tap} ct status dnat accept`,
    `add rule ip ${t} filter_fwd iifname ${veth} oifname ${tap} ct state established,related accept`,
    `add rule ip ${t} filter_fwd iifname ${veth} oifname ${tap} drop`,
    `add table netdev ${t}`,
    `delete table netdev ${t}`,
    `add table netdev ${t}`,
    `add chain netdev ${t} tap_in { type filter hook ingress device ${tap} priority filter; policy accept; }`,
    // A restored guest still sends to the MACs it knew (its old gateway's):
    // taken as the TAP's own, so the stack routes them at once.
    `add rule netdev ${t} tap_in meta pkttype other meta pkttype set host`,
    "",
  ].join("\n");
}

/** The batch that removes a clone NIC's tables (absent ones too). */
export function cloneRulesetRemoval(tap: string): string {
  const t = cloneNftTable(tap);
  return [
    `add table ip ${t}`,
    `delete table ip ${t}`,
    `add table netdev ${t}`,
    `delete table netdev ${t}`,
    "",
  ].join("\n");
}

/** The routes of the NIC's table: the veth's subnet, then the CNI routes. */
function tableRoutes(spec: ClonePathSpec): RouteSpec[] {
  const table = cloneTable(spec.index);
  const subnet = networkOf(spec.net.address, spec.net.prefix);
  const out: RouteSpec[] = [{ dst: subnet, dev: spec.veth, table }];
  for (const r of spec.routes) {
    const dst = parseCidr(r.dst);
    if (dst.family !== 4) continue;
    const cidr = networkOf(formatIP(dst.bytes), dst.prefix);
    if (cidr === subnet && !r.gw) continue;
    out.push({
      dst: cidr,
      ...(r.gw ? { gateway: r.gw } : {}),
      dev: spec.veth,
      table,
    });
  }
  return out;
}

function guestRoute(spec: ClonePathSpec): RouteSpec {
  return {
    dst: `${spec.guest.address}/${IPV4_HOST_PREFIX}`,
    dev: spec.tap,
  };
}

function ruleOf(spec: { tap: string; index: number }): RuleSpec {
  return {
    iifName: spec.tap,
    table: cloneTable(spec.index),
    priority: CLONE_RULE_PRIORITY_BASE + spec.index,
  };
}

/** Proxy ARP on the TAP, answering at once (no random delay). */
function tapSysctls(tap: string): [string[], string][] {
  return [
    [["net", "ipv4", "conf", tap, "proxy_arp"], "1"],
    [["net", "ipv4", "neigh", tap, "proxy_delay"], "0"],
  ];
}

/**
 * Makes a clone NIC's routed path around the veth CNI ADD made: a new
 * TAP, sysctls, routes, rule, nft tables. On failure, what this call made
 * is removed again before the error propagates.
 *
 * @returns the veth's MAC and MTU (the veth keeps its own MAC: the guest
 * uses its snapshot's).
 */
export function plumbClonePath(
  scope: NetnsScope,
  spec: ClonePathSpec,
): { mac: string; mtu: number } {
  const op = "plumb clone nic";
  const stack = stackOf(scope, op, spec.tap);
  // Checked before anything is made: what the rules will say.
  cloneRuleset(spec);
  const sock = scope.conn;
  let veth = requireLink(sock, spec.veth, op);
  if (spec.mac && spec.mac !== veth.mac) {
    setMac(sock, spec.veth, spec.mac);
    veth = requireLink(sock, spec.veth, op);
  }
  setInet6AddrGenMode(sock, spec.veth, IfLink.IN6_ADDR_GEN_MODE_NONE);
  let tapMade = false;
  try {
    makeTap(scope, spec.tap, spec.queues, veth.mtu, spec.tapOwner);
    tapMade = true;
    setLinkUp(sock, spec.tap);
    ensureTranslation(scope, stack, spec);
    if (spec.down) setLinkDown(sock, spec.veth);
    else if (!veth.up) {
      setLinkUp(sock, spec.veth);
      // Up again: the routes through the veth are back only now.
      ensureRoutes(sock, spec);
    }
  } catch (err) {
    try {
      unplumbClonePath(scope, spec, { keepTap: !tapMade });
    } catch { /* the original error matters more */ }
    throw err;
  }
  return { mac: veth.mac ?? "", mtu: veth.mtu };
}

/**
 * Everything but the devices, made or made again (idempotent): the veth's
 * CNI address, sysctls, routes and rule, nft tables.
 */
function ensureTranslation(
  scope: NetnsScope,
  stack: NetnsStack,
  spec: ClonePathSpec,
): void {
  const sock = scope.conn;
  ensureNetAddress(sock, spec);
  stack.writeSysctl(IP_FORWARD, "1");
  for (const [key, value] of tapSysctls(spec.tap)) {
    stack.writeSysctl(key, value);
  }
  ensureRoutes(sock, spec);
  ensureRule(sock, ruleOf(spec));
  stack.nft(cloneRuleset(spec), {
    op: "apply clone rules",
    object: `${cloneNftTable(spec.tap)} in ${spec.veth}/${spec.tap}`,
  });
}

function ensureNetAddress(sock: NetlinkConn, spec: ClonePathSpec): void {
  const { index } = requireLink(sock, spec.veth, "plumb clone nic");
  const has = listAddrs(sock, { index, family: 4 }).some((a) =>
    a.address === spec.net.address && a.prefix === spec.net.prefix
  );
  if (!has) {
    addAddr(sock, spec.veth, `${spec.net.address}/${spec.net.prefix}`);
  }
}

/**
 * The guest's route and the NIC's table. The table's routes go through
 * the veth, so they exist only while it is up (a quiesced veth drops them;
 * unquiesce calls this again).
 */
function ensureRoutes(sock: NetlinkConn, spec: ClonePathSpec): void {
  replaceRoute(sock, guestRoute(spec));
  if (!getLinkByName(sock, spec.veth)?.up) return;
  for (const r of tableRoutes(spec)) {
    try {
      replaceRoute(sock, r);
    } catch (err) {
      // A next hop the veth cannot reach (a result naming an odd gateway)
      // costs that route only, never the NIC.
      if (!isErrno(err, Errno.ENETUNREACH)) throw err;
    }
  }
}

/** Options of {@linkcode unplumbClonePath}. */
export interface UnplumbCloneOptions {
  /** Keep the TAP (a hypervisor may hold it: recover's rebuild). */
  keepTap?: boolean;
}

/**
 * Removes a clone NIC's routed path: nft tables, rule, table, guest
 * route, the TAP (unless `keepTap`); turns forwarding off again when no
 * clone NIC is left in the netns. The veth is CNI DEL's. Idempotent.
 */
export function unplumbClonePath(
  scope: NetnsScope,
  spec: { veth: string; tap: string; index: number; guest?: Ipv4Prefix },
  opts: UnplumbCloneOptions = {},
): void {
  const sock = scope.conn;
  const stack = scope.stack;
  stack?.nft(cloneRulesetRemoval(spec.tap), {
    op: "remove clone rules",
    object: cloneNftTable(spec.tap),
  });
  deleteRule(sock, ruleOf(spec));
  flushTable(sock, cloneTable(spec.index));
  if (opts.keepTap) {
    if (spec.guest) {
      deleteRoute(sock, {
        dst: `${spec.guest.address}/${IPV4_HOST_PREFIX}`,
        dev: spec.tap,
      }, { ignoreMissing: true });
    }
  } else {
    deleteLink(sock, spec.tap, { ignoreMissing: true });
  }
  if (stack && !cloneTablesLeft(stack)) {
    try {
      stack.writeSysctl(IP_FORWARD, "0");
    } catch { /* tidiness: nothing forwards without a clone NIC's rules */ }
  }
}

/** Whether any clone NIC's nft table is left in the netns. */
function cloneTablesLeft(stack: NetnsStack): boolean {
  const out = stack.nft("list tables", { op: "list tables", object: "netns" });
  return out.split("\n").some((l) =>
    new RegExp(`^table ip ${CLONE_NFT_TABLE_PREFIX}`).test(l.trim())
  );
}

/** The nft objects of the netns as libnftables-json(5) lists them. */
type NftObject = Record<string, Record<string, unknown>>;

/** The netns's whole ruleset in JSON objects (tables, chains, rules). */
function rulesetObjects(stack: NetnsStack): NftObject[] {
  const text = stack.nft("list ruleset", {
    json: true,
    op: "list ruleset",
    object: "netns",
  });
  if (!text.trim()) return [];
  const doc = JSON.parse(text) as { nftables?: NftObject[] };
  return doc.nftables ?? [];
}

/**
 * Whether the clone NIC's nft tables hold its rules: the DNAT of its CNI
 * address to the guest, the SNAT back, the forward filter, the TAP's
 * ingress chain.
 */
export function cloneRulesPresent(
  objects: NftObject[],
  spec: Pick<ClonePathSpec, "tap" | "veth" | "guest" | "net">,
): boolean {
  const t = cloneNftTable(spec.tap);
  const of = (family: string, chain: string) =>
    objects.filter((o) =>
      o.rule && o.rule.family === family && o.rule.table === t &&
      o.rule.chain === chain
    ).map((o) => JSON.stringify(o.rule.expr));
  const chain = (family: string, name: string) =>
    objects.find((o) =>
      o.chain && o.chain.family === family && o.chain.table === t &&
      o.chain.name === name
    )?.chain;
  const dnat = of("ip", "nat_in").some((e) =>
    e.includes(`"dnat":{"addr":"${spec.guest.address}"`) &&
    e.includes(`"right":"${spec.net.address}"`) &&
    e.includes(`"right":"${spec.veth}"`)
  );
  const snat = of("ip", "nat_out").some((e) =>
    e.includes(`"snat":{"addr":"${spec.net.address}"`) &&
    e.includes(`"right":"${spec.guest.address}"`) &&
    e.includes(`"right":"${spec.veth}"`)
  );
  const forward = of("ip", "filter_fwd").length >= 4;
  const ingress = chain("netdev", "tap_in");
  // libnftables 1.0.6 lists no device of a netdev chain in JSON: the
  // device is checked where it is listed.
  const ingressOk = ingress !== undefined && ingress.hook === "ingress" &&
    (ingress.dev === undefined || ingress.dev === spec.tap ||
      (Array.isArray(ingress.dev) && ingress.dev.includes(spec.tap))) &&
    of("netdev", "tap_in").length >= 1;
  return dnat && snat && forward && ingressOk;
}

/** Looks at one clone NIC: devices, addresses, translation. */
export function inspectClonePath(
  scope: NetnsScope,
  spec: ClonePathSpec,
): ClonePathState {
  const sock = scope.conn;
  const veth = getLinkByName(sock, spec.veth);
  const tap = getLinkByName(sock, spec.tap);
  const addrs = veth
    ? listAddrs(sock, { index: veth.index }).map((a) =>
      `${a.address}/${a.prefix}`
    )
    : [];
  const own = `${spec.net.address}/${spec.net.prefix}`;
  const stack = scope.stack;
  const forwarding = stack?.readSysctl(IP_FORWARD) === "1";
  const proxyArp = !!tap && !!stack &&
    tapSysctls(spec.tap).every(([k, v]) => stack.readSysctl(k) === v);
  const routes = !!tap && hasGuestRoute(sock, spec) &&
    hasRule(sock, ruleOf(spec)) &&
    (!veth?.up || hasTableRoutes(sock, spec));
  const rules = !!stack && cloneRulesPresent(rulesetObjects(stack), spec);
  const translation = { rules, routes, forwarding, proxyArp };
  const peer = veth?.linkIndex;
  return {
    tapPresent: tap !== null,
    vethPresent: veth !== null,
    ...(veth?.mac ? { vethMac: veth.mac } : {}),
    vethUp: veth?.up ?? false,
    tapUp: tap?.up ?? false,
    vethAddrs: addrs.filter((a) => a !== own && !a.includes(":")),
    netAddress: addrs.includes(own),
    ...(peer !== undefined ? { peerIndex: peer } : {}),
    translation,
    wired: !!tap && !!veth && !!tap.up && addrs.includes(own) &&
      rules && routes && forwarding && proxyArp,
  };
}

function hasGuestRoute(sock: NetlinkConn, spec: ClonePathSpec): boolean {
  const want = `${spec.guest.address}/${IPV4_HOST_PREFIX}`;
  return listRoutes(sock, { family: 4 }).some((r) =>
    r.dst === want && r.dev === spec.tap && r.gateway === undefined
  );
}

function hasTableRoutes(sock: NetlinkConn, spec: ClonePathSpec): boolean {
  const have = listRoutes(sock, { table: cloneTable(spec.index), family: 4 });
  return tableRoutes(spec).every((w) =>
    have.some((r) =>
      r.dst === w.dst && r.dev === w.dev && r.gateway === w.gateway
    )
  );
}

/**
 * Mends a clone NIC in place around a healthy veth: a missing TAP re-made
 * (one that exists is never replaced), its MTU, the CNI address back on
 * the veth, addresses that do not belong there removed, the translation
 * made again when any part of it is missing, link states as recorded.
 */
export function repairClonePath(
  scope: NetnsScope,
  spec: ClonePathSpec,
): { repaired: string[] } {
  const op = "repair clone nic";
  const stack = stackOf(scope, op, spec.tap);
  const sock = scope.conn;
  const repaired: string[] = [];
  const before = inspectClonePath(scope, spec);
  const veth = requireLink(sock, spec.veth, op);
  if (spec.mac && veth.mac !== spec.mac) {
    setMac(sock, spec.veth, spec.mac);
    repaired.push(`MAC ${spec.mac} set back on ${spec.veth}`);
  }
  if (veth.inet6AddrGenMode !== IfLink.IN6_ADDR_GEN_MODE_NONE) {
    setInet6AddrGenMode(sock, spec.veth, IfLink.IN6_ADDR_GEN_MODE_NONE);
  }
  let tap = getLinkByName(sock, spec.tap);
  if (!tap) {
    makeTap(scope, spec.tap, spec.queues, veth.mtu, spec.tapOwner);
    tap = requireLink(sock, spec.tap, op);
    repaired.push(`TAP ${spec.tap} re-made`);
  } else if (tap.mtu !== veth.mtu) {
    setMtu(sock, spec.tap, veth.mtu);
    repaired.push(`TAP ${spec.tap} MTU set to ${veth.mtu}`);
  }
  if (!tap.up) {
    setLinkUp(sock, spec.tap);
    repaired.push(`TAP ${spec.tap} up`);
  }
  if (spec.down && veth.up) {
    setLinkDown(sock, spec.veth);
    repaired.push(`${spec.veth} down (quiesced)`);
  } else if (!spec.down && !veth.up) {
    setLinkUp(sock, spec.veth);
    repaired.push(`${spec.veth} up`);
  }
  for (const stray of before.vethAddrs) {
    removeAddr(sock, spec.veth, stray);
    repaired.push(`address ${stray} removed from ${spec.veth}`);
  }
  const t = before.translation;
  const whole = before.netAddress && t.rules && t.routes && t.forwarding &&
    t.proxyArp && before.tapPresent;
  ensureTranslation(scope, stack, spec);
  if (!before.netAddress) {
    repaired.push(
      `address ${spec.net.address}/${spec.net.prefix} back on ${spec.veth}`,
    );
  }
  if (!whole || repaired.some((r) => r.includes("up"))) {
    const missing = [
      ...(t.rules ? [] : ["nft rules"]),
      ...(t.routes ? [] : ["routes"]),
      ...(t.forwarding ? [] : ["forwarding"]),
      ...(t.proxyArp ? [] : ["proxy ARP"]),
    ];
    if (missing.length) {
      repaired.push(
        `translation between ${spec.veth} and ${spec.tap} made again ` +
          `(${missing.join(", ")})`,
      );
    }
  }
  return { repaired };
}

function removeAddr(sock: NetlinkConn, ifName: string, cidr: string): void {
  try {
    delAddr(sock, ifName, cidr, { ignoreMissing: true });
  } catch (err) {
    if (!isErrno(err, Errno.EADDRNOTAVAIL)) throw err;
  }
}

/**
 * After unquiesce (the veth up again): the NIC's table routes, which the
 * veth took with it when it went down. False when the veth is gone.
 */
export function restoreCloneRoutes(
  scope: NetnsScope,
  spec: ClonePathSpec,
): boolean {
  if (!getLinkByName(scope.conn, spec.veth)) return false;
  ensureRoutes(scope.conn, spec);
  return true;
}
