/**
 * Routes and policy rules over rtnetlink, in the netns of the socket the
 * caller passes: what a clone NIC's routed path needs (docs/datapath.md,
 * "Clone NICs"): a host route to the guest through its TAP, a routing
 * table per NIC with the NIC's own routes, and a rule sending what the
 * guest sends to that table.
 *
 * @module
 */
import { Errno } from "../sys/errno.ts";
import { InvalidArgumentError, isErrno } from "../sys/errors.ts";
import {
  type Attr,
  Attrs,
  type NetlinkMessage,
  nla,
} from "../netlink/codec.ts";
import { Netlink, Rtnl, RtRoute, Socket } from "../netlink/constants.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { type Cidr, formatIP, parseCidr, parseIP } from "./ipaddr.ts";
import { getLinkByIndex, requireLink } from "./link.ts";

/** A route as the kernel reports it (RTM_NEWROUTE). */
export interface Route {
  /** IP version. */
  family: 4 | 6;
  /** Destination CIDR (`0.0.0.0/0` for a default route). */
  dst: string;
  /** Next hop, when the route has one. */
  gateway?: string;
  /** The output device's name, when the kernel names one. */
  dev?: string;
  /** Routing table id. */
  table: number;
  /** RT_SCOPE_* (universe 0, link 253). */
  scope: number;
  /** RTN_* route type (unicast 1, local 2, …). */
  type: number;
}

/** A route to make: destination, next hop, device, table. */
export interface RouteSpec {
  /** Destination CIDR; `0.0.0.0/0` for a default route. */
  dst: string;
  /** Next hop (on-link through `dev` when absent: scope link). */
  gateway?: string;
  /** The output device. */
  dev: string;
  /** Routing table id (default main, 254). */
  table?: number;
}

/** A policy rule as the kernel reports it (RTM_NEWRULE). */
export interface Rule {
  /** IP version. */
  family: 4 | 6;
  /** Its preference (`ip rule` shows it first). */
  priority: number;
  /** The table it looks up. */
  table: number;
  /** The input device it matches, when it matches one. */
  iifName?: string;
  /** FR_ACT_* (to table 1). */
  action: number;
}

/** A rule to make: packets that came in on `iifName` look up `table`. */
export interface RuleSpec {
  /** IP version (default 4). */
  family?: 4 | 6;
  /** Input device the rule matches. */
  iifName: string;
  /** The table to look up. */
  table: number;
  /** The rule's preference. */
  priority: number;
}

const AF = { 4: Socket.AF_INET, 6: Socket.AF_INET6 } as const;

function familyOf(af: number): 4 | 6 | undefined {
  return af === Socket.AF_INET ? 4 : af === Socket.AF_INET6 ? 6 : undefined;
}

/** struct rtmsg. */
function rtmsg(m: {
  family: number;
  dstLen?: number;
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
}): Uint8Array {
  const b = new Uint8Array(RtRoute.RTMSG_LEN);
  b[0] = m.family;
  b[1] = m.dstLen ?? 0;
  b[4] = m.table ?? RtRoute.RT_TABLE_UNSPEC;
  b[5] = m.protocol ?? 0;
  b[6] = m.scope ?? RtRoute.RT_SCOPE_UNIVERSE;
  b[7] = m.type ?? 0;
  return b;
}

/** struct fib_rule_hdr. */
function fibRuleHdr(
  m: { family: number; table?: number; action?: number },
): Uint8Array {
  const b = new Uint8Array(RtRoute.FIB_RULE_HDR_LEN);
  b[0] = m.family;
  b[4] = m.table ?? RtRoute.RT_TABLE_UNSPEC;
  b[7] = m.action ?? 0;
  return b;
}

/** rtm_table for a table id: itself when it fits a byte, else COMPAT. */
function tableByte(table: number): number {
  return table <= RtRoute.RT_TABLE_MAX_U8 ? table : RtRoute.RT_TABLE_COMPAT;
}

function cidrOf(op: string, text: string): Cidr {
  try {
    return parseCidr(text);
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      throw new InvalidArgumentError(op, text, err.message);
    }
    throw err;
  }
}

/** Decodes an RTM_NEWROUTE message; null for other families. */
export function decodeRoute(
  msg: NetlinkMessage,
  names?: (index: number) => string | undefined,
): Route | null {
  const body = msg.body;
  const family = familyOf(body[0]);
  if (family === undefined) return null;
  const a = Attrs.parse(body.subarray(RtRoute.RTMSG_LEN));
  const dst = a.get(RtRoute.RTA_DST);
  const gw = a.get(RtRoute.RTA_GATEWAY);
  const oif = a.u32(RtRoute.RTA_OIF);
  const route: Route = {
    family,
    dst: `${dst ? formatIP(dst) : family === 4 ? "0.0.0.0" : "::"}/${body[1]}`,
    table: a.u32(RtRoute.RTA_TABLE) ?? body[4],
    scope: body[6],
    type: body[7],
  };
  if (gw) route.gateway = formatIP(gw);
  const dev = oif === undefined ? undefined : names?.(oif);
  if (dev !== undefined) route.dev = dev;
  return route;
}

/** Routes of the socket's netns: of one table and/or family when asked. */
export function listRoutes(
  sock: NetlinkConn,
  filter: { table?: number; family?: 4 | 6 } = {},
): Route[] {
  const af = filter.family ? AF[filter.family] : Socket.AF_UNSPEC;
  const msgs = sock.dump(
    { type: Rtnl.RTM_GETROUTE, flags: 0, header: rtmsg({ family: af }) },
    { op: "list routes", object: filter.table ? `table ${filter.table}` : "*" },
  );
  const names = new Map<number, string | undefined>();
  const nameOf = (index: number) => {
    if (!names.has(index)) names.set(index, getLinkByIndex(sock, index)?.name);
    return names.get(index);
  };
  const out: Route[] = [];
  for (const m of msgs) {
    if (m.type !== Rtnl.RTM_NEWROUTE) continue;
    const r = decodeRoute(m, nameOf);
    if (!r) continue;
    // The kernel filters dumps only under strict checking: filter here.
    if (filter.table !== undefined && r.table !== filter.table) continue;
    if (filter.family !== undefined && r.family !== filter.family) continue;
    out.push(r);
  }
  return out;
}

function routeRequest(
  sock: NetlinkConn,
  op: string,
  spec: RouteSpec,
  del = false,
): { header: Uint8Array; attrs: Attr[]; object: string } {
  const dst = cidrOf(op, spec.dst);
  const { index } = requireLink(sock, spec.dev, op);
  const table = spec.table ?? RtRoute.RT_TABLE_MAIN;
  const attrs: Attr[] = [
    nla.u32(RtRoute.RTA_TABLE, table),
    nla.u32(RtRoute.RTA_OIF, index),
  ];
  if (dst.prefix > 0) attrs.push(nla.bytes(RtRoute.RTA_DST, dst.bytes));
  if (spec.gateway !== undefined) {
    const gw = parseIP(spec.gateway);
    if (gw.family !== dst.family) {
      throw new InvalidArgumentError(
        op,
        spec.gateway,
        `gateway of another IP version than ${spec.dst}`,
      );
    }
    attrs.push(nla.bytes(RtRoute.RTA_GATEWAY, gw.bytes));
  }
  return {
    header: rtmsg({
      family: AF[dst.family],
      dstLen: dst.prefix,
      table: tableByte(table),
      protocol: del ? 0 : RtRoute.RTPROT_STATIC,
      // A delete matches any scope only when it names none (NOWHERE).
      scope: del
        ? RtRoute.RT_SCOPE_NOWHERE
        : spec.gateway === undefined
        ? RtRoute.RT_SCOPE_LINK
        : RtRoute.RT_SCOPE_UNIVERSE,
      type: del ? 0 : RtRoute.RTN_UNICAST,
    }),
    attrs,
    object:
      `${spec.dst}${
        spec.gateway ? ` via ${spec.gateway}` : ""
      } dev ${spec.dev}` +
      (spec.table !== undefined ? ` table ${spec.table}` : ""),
  };
}

/**
 * Makes the route, replacing one to the same destination in that table.
 * A route without a gateway is on-link (scope link) through `dev`.
 *
 * @throws {KernelError} `ENODEV` when the device is absent, `ENETUNREACH`
 * when the gateway is not reachable through it.
 */
export function replaceRoute(sock: NetlinkConn, spec: RouteSpec): void {
  const op = "add route";
  const { header, attrs, object } = routeRequest(sock, op, spec);
  sock.request({
    type: Rtnl.RTM_NEWROUTE,
    flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_REPLACE,
    header,
    attrs,
  }, { op, object });
}

/**
 * Deletes the route; false when there was none (`ignoreMissing`) or its
 * device is gone (the kernel removed its routes with it).
 */
export function deleteRoute(
  sock: NetlinkConn,
  spec: RouteSpec,
  opts: { ignoreMissing?: boolean } = {},
): boolean {
  const op = "delete route";
  let req;
  try {
    req = routeRequest(sock, op, spec, true);
  } catch (err) {
    if (opts.ignoreMissing && isErrno(err, Errno.ENODEV)) return false;
    throw err;
  }
  try {
    sock.request({
      type: Rtnl.RTM_DELROUTE,
      flags: 0,
      header: req.header,
      attrs: req.attrs,
    }, { op, object: req.object });
    return true;
  } catch (err) {
    if (opts.ignoreMissing && isErrno(err, Errno.ESRCH, Errno.ENOENT)) {
      return false;
    }
    throw err;
  }
}

/** Deletes every route of a table (of one family); returns how many. */
export function flushTable(
  sock: NetlinkConn,
  table: number,
  family: 4 | 6 = 4,
): number {
  const op = "flush routes";
  let n = 0;
  for (const r of listRoutes(sock, { table, family })) {
    const dst = cidrOf(op, r.dst);
    const attrs: Attr[] = [nla.u32(RtRoute.RTA_TABLE, table)];
    if (dst.prefix > 0) attrs.push(nla.bytes(RtRoute.RTA_DST, dst.bytes));
    try {
      sock.request({
        type: Rtnl.RTM_DELROUTE,
        flags: 0,
        header: rtmsg({
          family: AF[family],
          dstLen: dst.prefix,
          table: tableByte(table),
          scope: RtRoute.RT_SCOPE_NOWHERE,
        }),
        attrs,
      }, { op, object: `${r.dst} table ${table}` });
      n++;
    } catch (err) {
      if (!isErrno(err, Errno.ESRCH, Errno.ENOENT)) throw err;
    }
  }
  return n;
}

/** Decodes an RTM_NEWRULE message; null for other families. */
export function decodeRule(msg: NetlinkMessage): Rule | null {
  const body = msg.body;
  const family = familyOf(body[0]);
  if (family === undefined) return null;
  const a = Attrs.parse(body.subarray(RtRoute.FIB_RULE_HDR_LEN));
  const rule: Rule = {
    family,
    priority: a.u32(RtRoute.FRA_PRIORITY) ?? 0,
    table: a.u32(RtRoute.FRA_TABLE) ?? body[4],
    action: body[7],
  };
  const iif = a.str(RtRoute.FRA_IIFNAME);
  if (iif !== undefined) rule.iifName = iif;
  return rule;
}

/** Policy rules of the socket's netns, of one family. */
export function listRules(sock: NetlinkConn, family: 4 | 6 = 4): Rule[] {
  const msgs = sock.dump({
    type: RtRoute.RTM_GETRULE,
    flags: 0,
    header: fibRuleHdr({ family: AF[family] }),
  }, { op: "list rules", object: `IPv${family}` });
  return msgs.filter((m) => m.type === RtRoute.RTM_NEWRULE)
    .map(decodeRule)
    .filter((r): r is Rule => r !== null && r.family === family);
}

function ruleRequest(spec: RuleSpec) {
  const family = spec.family ?? 4;
  return {
    header: fibRuleHdr({
      family: AF[family],
      table: tableByte(spec.table),
      action: RtRoute.FR_ACT_TO_TBL,
    }),
    attrs: [
      nla.u32(RtRoute.FRA_PRIORITY, spec.priority),
      nla.u32(RtRoute.FRA_TABLE, spec.table),
      nla.str(RtRoute.FRA_IIFNAME, spec.iifName),
    ],
    object: `iif ${spec.iifName} lookup ${spec.table} pref ${spec.priority}`,
  };
}

/**
 * Adds the rule unless the same one exists. Returns whether it added it.
 * (A rule names its input device by name: it outlives the device, and
 * matches again a device made anew under that name.)
 */
export function ensureRule(sock: NetlinkConn, spec: RuleSpec): boolean {
  if (hasRule(sock, spec)) return false;
  const op = "add rule";
  const { header, attrs, object } = ruleRequest(spec);
  try {
    sock.request({
      type: RtRoute.RTM_NEWRULE,
      flags: Netlink.NLM_F_CREATE | Netlink.NLM_F_EXCL,
      header,
      attrs,
    }, { op, object });
  } catch (err) {
    if (isErrno(err, Errno.EEXIST)) return false;
    throw err;
  }
  return true;
}

/** Whether the netns has exactly this rule. */
export function hasRule(sock: NetlinkConn, spec: RuleSpec): boolean {
  return listRules(sock, spec.family ?? 4).some((r) =>
    r.priority === spec.priority && r.table === spec.table &&
    r.iifName === spec.iifName && r.action === RtRoute.FR_ACT_TO_TBL
  );
}

/** Deletes the rule; false when there was none. */
export function deleteRule(sock: NetlinkConn, spec: RuleSpec): boolean {
  const op = "delete rule";
  const { header, attrs, object } = ruleRequest(spec);
  try {
    sock.request({ type: RtRoute.RTM_DELRULE, flags: 0, header, attrs }, {
      op,
      object,
    });
    return true;
  } catch (err) {
    if (isErrno(err, Errno.ENOENT, Errno.ESRCH)) return false;
    throw err;
  }
}
