/**
 * Policy on the TAP path (docs/policy.md): the redirect filters between a
 * NIC's veth and TAP are its allow-list. Each direction's filters form a
 * program, in priority order: a rule whose u32 keys match either redirects
 * the frame on (allow) or ends classification without a redirect (deny);
 * a frame no rule redirects falls into the VM netns' own stack, which has
 * no address and routes nothing, and is dropped there. Rate limits are tbf
 * root qdiscs on the TAP (toward the guest) and on the veth (from the
 * guest), which the redirected frames leave through.
 *
 * - **Anti-spoofing**: from the guest, only frames with the NIC's MAC as
 *   source, and only IPv4, ARP and IPv6 from its addresses (IPv6: and its
 *   EUI-64 link-local; `::` for DAD and MLD); neighbor advertisements only
 *   for its own addresses and link-layer options only with its MAC; no
 *   router advertisements or redirects.
 * - **DHCP** (a network whose IPAM is CNI's `dhcp`): the lease is held by
 *   the `dhcp` daemon from the VM's netns, on the veth (docs/datapath.md,
 *   "DHCP"). DHCP replies arriving on the veth stay in the netns, where
 *   the daemon's packet socket reads them, instead of going to the guest;
 *   the guest's own DHCP client messages are not sent on. These two rules
 *   come first and do not depend on the other options.
 * - **Egress**: ordered allow/deny rules on the destination (CIDR,
 *   optionally protocol and port); first match wins; no match: allowed.
 * - **Isolate**: nothing to or from other addresses of the NIC's subnets
 *   but the gateways (nor IPv6 link-local data), both directions.
 *
 * A change is made without a gap: the new program goes in at the other bank
 * of priorities (behind the old one), then the old one is removed from its
 * last rule up, so a frame both programs allow is redirected throughout.
 *
 * Synchronous: the caller passes a netlink socket opened in the VM's netns.
 *
 * @module
 */
import { parseMac } from "../netlink/codec.ts";
import {
  IfArp,
  IfEther,
  InProto,
  Ipv4Devconf,
  Ndisc,
  PktSched,
} from "../netlink/constants.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { IPV4_LEN, parseCidr, parseIP } from "../kernel/ipaddr.ts";
import {
  getIpv4Devconf,
  getLinkByName,
  type Link,
  requireLink,
  setIpv4Devconf,
} from "../kernel/link.ts";
import {
  ArpHdr,
  EthHdr,
  Icmp6Hdr,
  IpHdr,
  Ipv6Hdr,
  L4Hdr,
} from "../kernel/packet.ts";
import {
  addIngressQdisc,
  addU32Filter,
  deleteFilters,
  deleteRootQdisc,
  type FilterInfo,
  INGRESS_PARENT,
  listFilters,
  listQdiscs,
  MATCH_ALL_KEY,
  mergeU32Keys,
  setRootTbf,
  type TbfOptions,
  type U32Key,
  u32Match,
} from "../kernel/tc.ts";
import { InvalidArgumentError } from "../sys/errors.ts";

export type { TbfOptions, U32Key } from "../kernel/tc.ts";
/** What traffic control this kernel has (for `doctor`). */
export { probeTcFeatures, type TcFeatures } from "../kernel/tc_probe.ts";
/** Address text parsing, for the provider's checks of policy input. */
export { formatIP, parseCidr, parseIP } from "../kernel/ipaddr.ts";
export {
  type EgressMatch,
  type EgressProtocol,
  egressText,
  isolationOf,
  OPEN_POLICY,
  type TapPolicy,
} from "./policy_spec.ts";
import {
  type EgressProtocol,
  egressText,
  OPEN_POLICY,
  type TapPolicy,
} from "./policy_spec.ts";

/** One filter of a program. */
export interface FilterRule {
  /** Ethernet protocol the filter sees (host order). */
  protocol: number;
  /** Its u32 keys (at least one). */
  keys: U32Key[];
  /** Redirect to the other device (allow), or not (deny). */
  redirect: boolean;
  /** What the rule is for, in words (verify names missing rules by it). */
  note: string;
}

/** The filters of both directions. */
export interface TapProgram {
  /** On the TAP's ingress: what the guest sends. */
  tap: FilterRule[];
  /** On the veth's ingress: what reaches the guest. */
  veth: FilterRule[];
}

/** The devices of one NIC's data path, by name. */
export interface PolicyPair {
  /** The CNI veth (`eth0`). */
  veth: string;
  /** The TAP (`tap0`). */
  tap: string;
}

/** The first priority of each bank: programs alternate between them. */
export const BANKS = [1, 0x8000] as const;
/** The most filters one direction's program may have. */
export const MAX_PROGRAM_RULES = 0x7fff;

/** The rule that redirects everything: the wiring without policy. */
export const REDIRECT_ALL: FilterRule = Object.freeze({
  protocol: IfEther.ETH_P_ALL,
  keys: [MATCH_ALL_KEY],
  redirect: true,
  note: "redirect every frame",
});

// --------------------------------------------------------------- compiling

const IPV4_ANY = "0.0.0.0";
const IPV6_ANY = "::";
const LINK_LOCAL_V6 = "fe80::/10";
/** UDP port of a DHCP server (RFC 2131). */
const DHCP_SERVER_PORT = 67;
/** UDP port of a DHCP client (RFC 2131): where replies go. */
const DHCP_CLIENT_PORT = 68;
/** The universal/local bit flipped in an EUI-64 interface id (RFC 4291). */
const EUI64_UL_BIT = 0x02;
/** IPv6 next headers that come before the transport header. */
const V6_EXTENSION_HEADERS = [
  InProto.IPPROTO_HOPOPTS,
  InProto.IPPROTO_ROUTING,
  InProto.IPPROTO_FRAGMENT,
  InProto.IPPROTO_DSTOPTS,
];
/** ICMPv6 payload of an NS or NA without options (type … target). */
const ND_LEN_NO_OPTIONS = Icmp6Hdr.ND_OPT_OFF;
/** ICMPv6 payload of an RS without options. */
const RS_LEN_NO_OPTIONS = Icmp6Hdr.RS_OPT_OFF;
/** The ARP header of Ethernet and IPv4: hrd, pro, hln, pln. */
const ARP_ETHER_IPV4 = Uint8Array.of(
  IfArp.ARPHRD_ETHER >> 8,
  IfArp.ARPHRD_ETHER & 0xff,
  IfEther.ETH_P_IP >> 8,
  IfEther.ETH_P_IP & 0xff,
  IfEther.ETH_ALEN,
  IPV4_LEN,
);
/** Protocol numbers of an egress rule's protocol: for IPv4, for IPv6. */
const PROTOCOL_NUMBER: Record<EgressProtocol, [number, number]> = {
  tcp: [InProto.IPPROTO_TCP, InProto.IPPROTO_TCP],
  udp: [InProto.IPPROTO_UDP, InProto.IPPROTO_UDP],
  icmp: [InProto.IPPROTO_ICMP, InProto.IPPROTO_ICMPV6],
};

/** The EUI-64 link-local address of a MAC (what Linux guests use by default). */
export function eui64LinkLocal(mac: string): string {
  const m = parseMac(mac);
  const id = [m[0] ^ EUI64_UL_BIT, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]];
  const hex = (a: number, b: number) => ((a << 8) | b).toString(16);
  return `fe80::${hex(id[0], id[1])}:${hex(id[2], id[3])}:${
    hex(id[4], id[5])
  }:${hex(id[6], id[7])}`;
}

/** Keys that match an address or prefix at `off`. */
function addrKeys(off: number, cidr: string): U32Key[] {
  const c = parseCidr(cidr);
  const mask = new Uint8Array(c.bytes.length);
  for (let i = 0; i < mask.length; i++) {
    const bits = Math.max(0, Math.min(8, c.prefix - i * 8));
    mask[i] = bits ? (0xff << (8 - bits)) & 0xff : 0;
  }
  return u32Match(off, c.bytes, mask);
}

function byteKey(off: number, value: number, mask = 0xff): U32Key[] {
  return u32Match(off, Uint8Array.of(value & mask), Uint8Array.of(mask));
}

function u16Key(off: number, value: number): U32Key[] {
  return u32Match(off, Uint8Array.of(value >> 8, value & 0xff));
}

/**
 * Keys of IPv4 UDP to `port` (a header without options: DHCP never has
 * them, and the port of one with options is past a fixed offset).
 */
function udpToPort(port: number): U32Key[][] {
  return [
    byteKey(IpHdr.PROTOCOL_OFF, InProto.IPPROTO_UDP),
    byteKey(IpHdr.VERSION_IHL_OFF, IpHdr.IHL_NO_OPTIONS, IpHdr.IHL_MASK),
    u16Key(IpHdr.LEN + L4Hdr.DEST_OFF, port),
  ];
}

function macKeys(off: number, mac: string): U32Key[] {
  return u32Match(off, parseMac(mac));
}

/** A rule from its key parts; null when they contradict (never matches). */
function rule(
  protocol: number,
  parts: U32Key[][],
  redirect: boolean,
  note: string,
): FilterRule | null {
  const keys = mergeU32Keys(parts.flat());
  if (keys === null) return null;
  return {
    protocol,
    keys: keys.length ? keys : [{ ...MATCH_ALL_KEY }],
    redirect,
    note,
  };
}

/** The family of an address or CIDR. */
function familyOf(text: string): 4 | 6 {
  return parseIP(text.split("/")[0]).family;
}

/**
 * The filters of both directions for `p` (whose `mac` must be known). A
 * policy that filters nothing compiles to {@linkcode REDIRECT_ALL} both
 * ways, the wiring of a NIC without policy.
 *
 * @throws {InvalidArgumentError} for an address, CIDR or MAC that does not
 * parse, or a program too long.
 */
export function compileTapPolicy(
  p: TapPolicy & { mac: string },
): TapProgram {
  const op = "compile policy";
  try {
    parseMac(p.mac);
  } catch (e) {
    throw new InvalidArgumentError(op, p.mac, (e as Error).message);
  }
  const prog = {
    tap: guestRules(p).filter((r): r is FilterRule => r !== null),
    veth: towardGuestRules(p).filter((r): r is FilterRule => r !== null),
  };
  for (const [dir, rules] of Object.entries(prog)) {
    if (rules.length > MAX_PROGRAM_RULES) {
      throw new InvalidArgumentError(
        op,
        dir,
        `${rules.length} filters, more than ${MAX_PROGRAM_RULES}`,
      );
    }
  }
  return prog;
}

/** What the guest sends: the TAP's ingress. */
function guestRules(p: TapPolicy & { mac: string }): (FilterRule | null)[] {
  const v4Egress = p.egress.filter((r) => familyOf(r.cidr) === 4);
  const v6Egress = p.egress.filter((r) => familyOf(r.cidr) === 6);
  const iso = p.isolate;
  const subnets4 = iso?.subnets.filter((s) => familyOf(s) === 4) ?? [];
  const subnets6 = iso?.subnets.filter((s) => familyOf(s) === 6) ?? [];
  const gws4 = iso?.gateways.filter((g) => familyOf(g) === 4) ?? [];
  const gws6 = iso?.gateways.filter((g) => familyOf(g) === 6) ?? [];
  const filters = p.antiSpoofing || p.egress.length > 0 || iso !== null;
  // The netns's dhcp daemon holds the lease: a DHCP client in the guest
  // would get no replies (they stay in the netns), and its requests or
  // releases (the NIC's MAC, another client id) could change that lease.
  const dhcp = p.dhcp
    ? [rule(
      IfEther.ETH_P_IP,
      udpToPort(DHCP_SERVER_PORT),
      false,
      "deny DHCP from the guest (the dhcp daemon in the netns holds the lease)",
    )]
    : [];
  if (!filters) return [...dhcp, REDIRECT_ALL];

  const anti = p.antiSpoofing;
  const S = anti ? macKeys(EthHdr.H_SOURCE_OFF, p.mac) : [];
  const from = anti ? ` from ${p.mac}` : "";
  const out: (FilterRule | null)[] = [...dhcp];
  const IP = IfEther.ETH_P_IP;
  const IP6 = IfEther.ETH_P_IPV6;
  const ARP = IfEther.ETH_P_ARP;

  // ---- IPv4: sources are the NIC's addresses (or any, without anti-spoofing)
  const src4 = anti
    ? p.ipv4.map((a) => ({ a, k: addrKeys(IpHdr.SADDR_OFF, a) }))
    : [{ a: "", k: [] as U32Key[] }];
  const v4 = (parts: U32Key[][], redirect: boolean, note: string) => {
    if (!redirect) return [rule(IP, parts, false, note)];
    return src4.map(({ a, k }) =>
      rule(IP, [S, k, ...parts], true, `${note}${a ? ` from ${a}` : ""}${from}`)
    );
  };
  for (const r of v4Egress) {
    const dst = addrKeys(IpHdr.DADDR_OFF, r.cidr);
    const what = egressText(r);
    const l4: U32Key[][] = [];
    if (r.protocol) {
      l4.push(byteKey(IpHdr.PROTOCOL_OFF, PROTOCOL_NUMBER[r.protocol][0]));
    }
    if (r.port !== undefined) {
      l4.push(
        byteKey(IpHdr.VERSION_IHL_OFF, IpHdr.IHL_NO_OPTIONS, IpHdr.IHL_MASK),
        u16Key(IpHdr.LEN + L4Hdr.DEST_OFF, r.port),
      );
    }
    out.push(...v4([dst, ...l4], r.action === "allow", what));
    if (r.action === "deny" && r.port !== undefined) {
      // The port of a header with options is past offset 22: such
      // packets toward a denied port's destination are denied whole.
      out.push(
        rule(
          IP,
          [dst, byteKey(IpHdr.VERSION_IHL_OFF, 0x06, 0x0e)],
          false,
          `${what}: IPv4 options`,
        ),
        rule(
          IP,
          [dst, byteKey(IpHdr.VERSION_IHL_OFF, 0x08, 0x08)],
          false,
          `${what}: IPv4 options`,
        ),
      );
    }
  }
  for (const gw of gws4) {
    out.push(
      ...v4(
        [addrKeys(IpHdr.DADDR_OFF, gw)],
        true,
        `isolate: allow to gateway ${gw}`,
      ),
    );
  }
  for (const net of subnets4) {
    out.push(
      rule(
        IP,
        [addrKeys(IpHdr.DADDR_OFF, net)],
        false,
        `isolate: deny to ${net}`,
      ),
    );
  }
  if (anti) {
    out.push(...v4([], true, "allow IPv4"));
  }

  // ---- ARP: sender MAC and address the NIC's; with isolate, asking only for the gateways
  if (anti || iso) {
    const arpHdr = u32Match(ArpHdr.AR_HRD_OFF, ARP_ETHER_IPV4);
    const senders = anti ? [...p.ipv4, IPV4_ANY] : [null];
    const targets = iso ? [...gws4, ...p.ipv4] : [null];
    const sha = anti ? macKeys(ArpHdr.AR_SHA_OFF, p.mac) : [];
    for (const spa of senders) {
      for (const tpa of targets) {
        out.push(rule(
          ARP,
          [
            S,
            arpHdr,
            sha,
            spa === null ? [] : addrKeys(ArpHdr.AR_SIP_OFF, spa),
            tpa === null ? [] : addrKeys(ArpHdr.AR_TIP_OFF, tpa),
          ],
          true,
          `allow ARP${spa ? ` from ${spa}` : ""}${
            tpa ? ` for ${tpa}` : ""
          }${from}`,
        ));
      }
    }
  }

  // ---- IPv6
  const ll = eui64LinkLocal(p.mac);
  const own6 = anti ? [...p.ipv6, ll] : [];
  const src6 = anti
    ? own6.map((a) => ({ a, k: addrKeys(Ipv6Hdr.SADDR_OFF, a) }))
    : [{ a: "", k: [] as U32Key[] }];
  const unspec = addrKeys(Ipv6Hdr.SADDR_OFF, IPV6_ANY);
  const v6Drops = v6Egress.some((r) => r.action === "deny") || iso !== null;
  const icmp6 = byteKey(Ipv6Hdr.NEXTHDR_OFF, InProto.IPPROTO_ICMPV6);
  const icmpType = (t: number) =>
    byteKey(Ipv6Hdr.LEN + Icmp6Hdr.ICMP6_TYPE_OFF, t);
  const plen = (n: number) => u16Key(Ipv6Hdr.PAYLOAD_LEN_OFF, n);
  /** A link-layer option at `optOff` (in the ICMPv6 message) carrying the NIC's MAC. */
  const llOption = (optOff: number, type: number) => [
    byteKey(Ipv6Hdr.LEN + optOff + Icmp6Hdr.ND_OPT_TYPE_OFF, type),
    byteKey(
      Ipv6Hdr.LEN + optOff + Icmp6Hdr.ND_OPT_LEN_OFF,
      Icmp6Hdr.ND_OPT_LLADDR_LEN_ETHER,
    ),
    macKeys(Ipv6Hdr.LEN + optOff + Icmp6Hdr.ND_OPT_LLADDR_OFF, p.mac),
  ];
  if (anti) {
    const srcs = (withUnspec: boolean) => [
      ...src6,
      ...(withUnspec ? [{ a: IPV6_ANY, k: unspec }] : []),
    ];
    // Neighbor advertisements: only for the NIC's own addresses, with its MAC.
    const NA = Ndisc.NDISC_NEIGHBOUR_ADVERTISEMENT;
    for (const { a, k } of srcs(false)) {
      for (const target of own6) {
        const base = [
          S,
          k,
          icmp6,
          icmpType(NA),
          addrKeys(Ipv6Hdr.LEN + Icmp6Hdr.ND_TARGET_OFF, target),
        ];
        out.push(
          rule(
            IP6,
            [...base, plen(ND_LEN_NO_OPTIONS)],
            true,
            `allow NA for ${target} from ${a}${from}`,
          ),
          rule(
            IP6,
            [
              ...base,
              ...llOption(Icmp6Hdr.ND_OPT_OFF, Ndisc.ND_OPT_TARGET_LL_ADDR),
            ],
            true,
            `allow NA for ${target} from ${a} with its MAC${from}`,
          ),
        );
      }
    }
    out.push(rule(IP6, [icmp6, icmpType(NA)], false, "deny other NAs"));
    // Solicitations: a source link-layer option must be the NIC's MAC.
    for (
      const [type, optOff, bare, name] of [
        [
          Ndisc.NDISC_NEIGHBOUR_SOLICITATION,
          Icmp6Hdr.ND_OPT_OFF,
          ND_LEN_NO_OPTIONS,
          "NS",
        ],
        [
          Ndisc.NDISC_ROUTER_SOLICITATION,
          Icmp6Hdr.RS_OPT_OFF,
          RS_LEN_NO_OPTIONS,
          "RS",
        ],
      ] as const
    ) {
      for (const { a, k } of srcs(true)) {
        out.push(
          rule(
            IP6,
            [S, k, icmp6, icmpType(type), plen(bare)],
            true,
            `allow ${name} from ${a}${from}`,
          ),
        );
        if (a !== IPV6_ANY) {
          out.push(
            rule(
              IP6,
              [
                S,
                k,
                icmp6,
                icmpType(type),
                ...llOption(optOff, Ndisc.ND_OPT_SOURCE_LL_ADDR),
              ],
              true,
              `allow ${name} from ${a} with its MAC${from}`,
            ),
          );
        }
      }
      out.push(
        rule(IP6, [icmp6, icmpType(type)], false, `deny other ${name}s`),
      );
    }
    out.push(
      rule(
        IP6,
        [icmp6, icmpType(Ndisc.NDISC_ROUTER_ADVERTISEMENT)],
        false,
        "deny router advertisements",
      ),
      rule(
        IP6,
        [icmp6, icmpType(Ndisc.NDISC_REDIRECT)],
        false,
        "deny redirects",
      ),
    );
  } else if (v6Drops) {
    // Neighbor discovery before any deny: it carries no data.
    for (
      const t of [
        Ndisc.NDISC_ROUTER_SOLICITATION,
        Ndisc.NDISC_ROUTER_ADVERTISEMENT,
        Ndisc.NDISC_NEIGHBOUR_SOLICITATION,
        Ndisc.NDISC_NEIGHBOUR_ADVERTISEMENT,
      ]
    ) out.push(rule(IP6, [icmp6, icmpType(t)], true, `allow NDP type ${t}`));
  }
  const v6 = (parts: U32Key[][], redirect: boolean, note: string) => {
    if (!redirect) return [rule(IP6, parts, false, note)];
    return src6.map(({ a, k }) =>
      rule(
        IP6,
        [S, k, ...parts],
        true,
        `${note}${a ? ` from ${a}` : ""}${from}`,
      )
    );
  };
  for (const r of v6Egress) {
    const dst = addrKeys(Ipv6Hdr.DADDR_OFF, r.cidr);
    const what = egressText(r);
    const l4: U32Key[][] = [];
    if (r.protocol) {
      l4.push(byteKey(Ipv6Hdr.NEXTHDR_OFF, PROTOCOL_NUMBER[r.protocol][1]));
    }
    if (r.port !== undefined) {
      l4.push(u16Key(Ipv6Hdr.LEN + L4Hdr.DEST_OFF, r.port));
    }
    out.push(...v6([dst, ...l4], r.action === "allow", what));
    if (r.action === "deny" && r.protocol) {
      // Behind extension headers the protocol cannot be read: denied whole.
      for (const nh of V6_EXTENSION_HEADERS) {
        out.push(
          rule(
            IP6,
            [dst, byteKey(Ipv6Hdr.NEXTHDR_OFF, nh)],
            false,
            `${what}: extension header ${nh}`,
          ),
        );
      }
    }
  }
  for (const gw of gws6) {
    out.push(
      ...v6(
        [addrKeys(Ipv6Hdr.DADDR_OFF, gw)],
        true,
        `isolate: allow to gateway ${gw}`,
      ),
    );
  }
  for (const net of iso ? [...subnets6, LINK_LOCAL_V6] : []) {
    out.push(
      rule(
        IP6,
        [addrKeys(Ipv6Hdr.DADDR_OFF, net)],
        false,
        `isolate: deny to ${net}`,
      ),
    );
  }
  if (anti) {
    out.push(...v6([], true, "allow IPv6"));
    // DAD and MLD before an address is had.
    out.push(
      rule(IP6, [S, unspec, icmp6], true, `allow ICMPv6 from ::${from}`),
      rule(
        IP6,
        [S, unspec, byteKey(Ipv6Hdr.NEXTHDR_OFF, InProto.IPPROTO_HOPOPTS)],
        true,
        `allow MLD from ::${from}`,
      ),
    );
  } else {
    out.push(REDIRECT_ALL);
  }
  return out;
}

/** What reaches the guest: the veth's ingress (isolation only). */
function towardGuestRules(p: TapPolicy): (FilterRule | null)[] {
  // The dhcp daemon reads its replies with a packet socket on the veth,
  // which sees only what no filter redirected (docs/datapath.md, "DHCP").
  const dhcp = p.dhcp
    ? [rule(
      IfEther.ETH_P_IP,
      udpToPort(DHCP_CLIENT_PORT),
      false,
      "keep DHCP replies in the netns (for the dhcp daemon holding the lease)",
    )]
    : [];
  if (p.quiesced) return dhcp;
  const iso = p.isolate;
  if (!iso) return [...dhcp, REDIRECT_ALL];
  const out: (FilterRule | null)[] = [...dhcp];
  const IP = IfEther.ETH_P_IP;
  const IP6 = IfEther.ETH_P_IPV6;
  const ARP = IfEther.ETH_P_ARP;
  const v4 = (s: string) => familyOf(s) === 4;
  const arpHdr = u32Match(ArpHdr.AR_HRD_OFF, ARP_ETHER_IPV4);
  for (const gw of iso.gateways.filter(v4)) {
    out.push(
      rule(
        IP,
        [addrKeys(IpHdr.SADDR_OFF, gw)],
        true,
        `isolate: allow from gateway ${gw}`,
      ),
    );
    out.push(
      rule(
        ARP,
        [arpHdr, addrKeys(ArpHdr.AR_SIP_OFF, gw)],
        true,
        `isolate: allow ARP from gateway ${gw}`,
      ),
    );
  }
  for (const net of iso.subnets.filter(v4)) {
    out.push(
      rule(
        IP,
        [addrKeys(IpHdr.SADDR_OFF, net)],
        false,
        `isolate: deny from ${net}`,
      ),
    );
    out.push(
      rule(
        ARP,
        [arpHdr, addrKeys(ArpHdr.AR_SIP_OFF, net)],
        false,
        `isolate: deny ARP from ${net}`,
      ),
    );
  }
  const icmp6 = byteKey(Ipv6Hdr.NEXTHDR_OFF, InProto.IPPROTO_ICMPV6);
  for (
    const t of [
      Ndisc.NDISC_ROUTER_SOLICITATION,
      Ndisc.NDISC_ROUTER_ADVERTISEMENT,
      Ndisc.NDISC_NEIGHBOUR_SOLICITATION,
      Ndisc.NDISC_NEIGHBOUR_ADVERTISEMENT,
    ]
  ) {
    out.push(
      rule(
        IP6,
        [icmp6, byteKey(Ipv6Hdr.LEN + Icmp6Hdr.ICMP6_TYPE_OFF, t)],
        true,
        `isolate: allow NDP type ${t}`,
      ),
    );
  }
  for (const gw of iso.gateways.filter((g) => !v4(g))) {
    out.push(
      rule(
        IP6,
        [addrKeys(Ipv6Hdr.SADDR_OFF, gw)],
        true,
        `isolate: allow from gateway ${gw}`,
      ),
    );
  }
  for (const net of [...iso.subnets.filter((s) => !v4(s)), LINK_LOCAL_V6]) {
    out.push(
      rule(
        IP6,
        [addrKeys(Ipv6Hdr.SADDR_OFF, net)],
        false,
        `isolate: deny from ${net}`,
      ),
    );
  }
  out.push(REDIRECT_ALL);
  return out;
}

// ---------------------------------------------------------------- applying

/** What {@linkcode applyTapPolicy} changed. */
export interface PolicyChange {
  /** Anything at all. */
  changed: boolean;
  /** One line per change, e.g. `"tap0: 24 filters replaced"`. */
  actions: string[];
}

/**
 * Makes the NIC's devices carry `program` and the policy's rates; keeps
 * what is right. A change of filters goes in without a gap (see the module
 * doc). On failure, the new filters this call added are removed again and
 * the old ones stay.
 *
 * @throws {KernelError} `ENODEV` when a device is missing, or the failing
 * step's error.
 */
export function applyTapPolicy(
  sock: NetlinkConn,
  pair: PolicyPair,
  program: TapProgram,
  rates: Pick<TapPolicy, "rateIn" | "rateOut"> = OPEN_POLICY,
): PolicyChange {
  const op = "apply policy";
  const veth = requireLink(sock, pair.veth, op);
  const tap = requireLink(sock, pair.tap, op);
  const actions: string[] = [];
  for (
    const [from, to, rules] of [
      [veth, tap, program.veth],
      [tap, veth, program.tap],
    ] as const
  ) {
    const did = ensureProgram(sock, from, to, rules);
    if (did) actions.push(`${from.name}: ${did}`);
    const rp = Ipv4Devconf.IPV4_DEVCONF_RP_FILTER;
    if (
      !isRedirectAll(rules) &&
      getIpv4Devconf(sock, from.name, rp) !== Ipv4Devconf.RP_FILTER_STRICT
    ) {
      // What the filters leave to the netns' stack must die there, even
      // where the netns forwards (a clone NIC's routes): a source that is
      // not routed back out of this device fails the reverse-path check.
      // Set only when needed: a link change is a notification watchers see.
      setIpv4Devconf(sock, from.name, [[rp, Ipv4Devconf.RP_FILTER_STRICT]]);
    }
  }
  for (
    const [dev, want, dir] of [
      [tap, rates.rateIn, "toward the guest"],
      [veth, rates.rateOut, "from the guest"],
    ] as const
  ) {
    const did = ensureRate(sock, dev, want);
    if (did) actions.push(`${dev.name}: ${did} (${dir})`);
  }
  return { changed: actions.length > 0, actions };
}

/** Removes the rate limits (the filters go with the ingress qdiscs). */
export function removeTapRates(sock: NetlinkConn, pair: PolicyPair): void {
  for (const name of [pair.tap, pair.veth]) {
    const link = getLinkByName(sock, name);
    if (!link) continue;
    const root = rootQdisc(sock, link);
    if (root?.kind === "tbf") {
      deleteRootQdisc(sock, link.index, { ignoreMissing: true, label: name });
    }
  }
}

/**
 * Makes `from`'s ingress hold exactly `rules` (redirecting to `to`).
 * Returns what it did, or null when they were in place.
 */
function ensureProgram(
  sock: NetlinkConn,
  from: Link,
  to: Link,
  rules: readonly FilterRule[],
): string | null {
  const label = from.name;
  addIngressQdisc(sock, from.index, { ignoreExisting: true, label });
  let current = ours(sock, from);
  if (sameProgram(current, rules, to.index)) return null;
  // A change cut short leaves both banks: the lower one is what holds.
  const [low, high] = [
    current.filter((f) => f.prio < BANKS[1]),
    current.filter((f) => f.prio >= BANKS[1]),
  ];
  if (low.length && high.length) {
    removeFilters(sock, from, high);
    current = low;
    if (sameProgram(current, rules, to.index)) {
      return "a change cut short undone";
    }
  }
  const base = current.length && current[0].prio < BANKS[1]
    ? BANKS[1]
    : BANKS[0];
  const added: number[] = [];
  try {
    for (const [i, r] of rules.entries()) {
      const prio = base + i;
      addU32Filter(sock, {
        ifindex: from.index,
        label,
        prio,
        protocol: r.protocol,
        keys: r.keys,
        ...(r.redirect
          ? { redirectTo: { ifindex: to.index, label: to.name } }
          : {}),
      }, "apply policy");
      added.push(prio);
    }
  } catch (err) {
    for (const prio of added.reverse()) {
      try {
        deleteFilters(sock, from.index, { prio, label });
      } catch { /* the original error matters more */ }
    }
    throw err;
  }
  // From the last old rule up: what both programs allow stays redirected.
  removeFilters(sock, from, current);
  return current.length
    ? `${current.length} filter(s) replaced by ${rules.length}`
    : `${rules.length} filter(s) added`;
}

/** The program of the plain wiring: one redirect of everything. */
function isRedirectAll(rules: readonly FilterRule[]): boolean {
  return rules.length === 1 && rules[0] === REDIRECT_ALL;
}

function removeFilters(sock: NetlinkConn, dev: Link, filters: FilterInfo[]) {
  const prios = [...new Set(filters.map((f) => f.prio))].sort((a, b) => b - a);
  for (const prio of prios) {
    deleteFilters(sock, dev.index, { prio, label: dev.name });
  }
}

/** The filters on a device's ingress, in the order they run. */
function ours(sock: NetlinkConn, dev: Link): FilterInfo[] {
  return listFilters(sock, dev.index, INGRESS_PARENT, { label: dev.name })
    .sort((a, b) => a.prio - b.prio || a.handle - b.handle);
}

/** Whether `current` is `rules`, in order, redirecting to `to`. */
function sameProgram(
  current: readonly FilterInfo[],
  rules: readonly FilterRule[],
  to: number,
): boolean {
  if (current.length !== rules.length) return false;
  if (new Set(current.map((f) => f.prio)).size !== current.length) {
    return false;
  }
  return current.every((f, i) => sameRule(f, rules[i], to));
}

function sameRule(f: FilterInfo, r: FilterRule, to: number): boolean {
  if (f.kind !== "u32" || !f.terminal || f.protocol !== r.protocol) {
    return false;
  }
  if (f.keys.length !== r.keys.length) return false;
  const keysOk = f.keys.every((k, i) =>
    k.off === r.keys[i].off && k.mask >>> 0 === r.keys[i].mask >>> 0 &&
    k.val >>> 0 === r.keys[i].val >>> 0
  );
  if (!keysOk) return false;
  if (!r.redirect) return f.actions.length === 0;
  const first = f.actions[0];
  return f.actions.length === 1 && first.kind === "mirred" &&
    "direction" in first && first.direction === "egress" &&
    first.action === "redirect" && first.ifindex === to;
}

function rootQdisc(sock: NetlinkConn, dev: Link) {
  return listQdiscs(sock, dev.index).find((q) =>
    q.parent === PktSched.TC_H_ROOT
  );
}

/** Bytes two bursts may differ by and still be the same (psched rounding). */
function burstSlack(burst: number): number {
  return Math.max(2, Math.ceil(burst / 1000));
}

/** Whether a dumped tbf is `want`. */
export function sameTbf(have: TbfOptions, want: TbfOptions): boolean {
  return have.rate === want.rate && have.limit === want.limit &&
    Math.abs(have.burst - want.burst) <= burstSlack(want.burst);
}

/** Makes the device's root a tbf of `want`, or not a tbf (null). */
function ensureRate(
  sock: NetlinkConn,
  dev: Link,
  want: TbfOptions | null,
): string | null {
  const root = rootQdisc(sock, dev);
  if (!want) {
    if (root?.kind !== "tbf") return null;
    deleteRootQdisc(sock, dev.index, { ignoreMissing: true, label: dev.name });
    return "rate limit removed";
  }
  if (root?.kind === "tbf" && root.tbf && sameTbf(root.tbf, want)) return null;
  setRootTbf(sock, dev.index, { ...want, label: dev.name });
  return `rate ${want.rate * 8} bit/s set`;
}

// ----------------------------------------------------------------- verify

/** What {@linkcode describeTapPolicy} finds against the program. */
export interface PolicyState {
  /** Both devices carry their program and their rates. */
  ok: boolean;
  /**
   * Both devices redirect at least something to each other (a direction
   * whose program redirects nothing needs no redirect).
   */
  wired: boolean;
  /** What is wrong, one line each (a rule missing, an extra one, a rate). */
  problems: string[];
}

/**
 * Compares the NIC's devices with `program` and the rates: every rule in
 * place, in order, none besides; the tbf of each direction as wanted.
 * Devices that are missing are not reported here (the caller does).
 */
export function describeTapPolicy(
  sock: NetlinkConn,
  pair: PolicyPair,
  program: TapProgram,
  rates: Pick<TapPolicy, "rateIn" | "rateOut"> = OPEN_POLICY,
): PolicyState {
  const veth = getLinkByName(sock, pair.veth);
  const tap = getLinkByName(sock, pair.tap);
  if (!veth || !tap) return { ok: false, wired: false, problems: [] };
  const problems: string[] = [];
  let wired = true;
  for (
    const [from, to, rules] of [
      [veth, tap, program.veth],
      [tap, veth, program.tap],
    ] as const
  ) {
    const current = ours(sock, from);
    // A direction whose program redirects nothing (a quiesced NIC's veth
    // on a dhcp network) is wired without a redirect.
    if (
      rules.some((r) => r.redirect) &&
      !current.some((f) => f.actions.some((a) => isRedirectTo(a, to.index)))
    ) {
      wired = false;
    }
    if (sameProgram(current, rules, to.index)) continue;
    const missing = rules.filter((r) =>
      !current.some((f) => sameRule(f, r, to.index))
    );
    const extra = current.filter((f) =>
      !rules.some((r) => sameRule(f, r, to.index))
    );
    for (const r of missing) {
      problems.push(`${from.name}: policy rule missing: ${r.note}`);
    }
    if (extra.length) {
      problems.push(
        `${from.name}: ${extra.length} filter(s) the policy does not have (prio ${
          extra.map((f) => f.prio).join(", ")
        })`,
      );
    }
    if (!missing.length && !extra.length) {
      problems.push(`${from.name}: policy rules out of order`);
    }
  }
  for (
    const [dev, want, dir] of [
      [tap, rates.rateIn, "toward the guest"],
      [veth, rates.rateOut, "from the guest"],
    ] as const
  ) {
    const root = rootQdisc(sock, dev);
    if (
      want && !(root?.kind === "tbf" && root.tbf && sameTbf(root.tbf, want))
    ) {
      problems.push(
        `${dev.name}: rate limit ${dir} missing (want ${want.rate * 8} bit/s` +
          `, burst ${want.burst} B; have ${
            root?.kind === "tbf" && root.tbf
              ? `tbf ${root.tbf.rate * 8} bit/s, burst ${root.tbf.burst} B`
              : root?.kind ?? "none"
          })`,
      );
    } else if (!want && root?.kind === "tbf") {
      problems.push(
        `${dev.name}: a rate limit ${dir} the policy does not have`,
      );
    }
  }
  return { ok: problems.length === 0, wired, problems };
}

function isRedirectTo(a: FilterInfo["actions"][number], ifindex: number) {
  return a.kind === "mirred" && "direction" in a && a.direction === "egress" &&
    a.action === "redirect" && a.ifindex === ifindex;
}

/**
 * Frames the filters on `device`'s ingress redirected so far (their mirred
 * actions' statistics): on the TAP, what the guest sent that went on; on
 * the veth, what reached the guest.
 */
export function redirectCount(sock: NetlinkConn, device: string): number {
  const dev = requireLink(sock, device, "count redirects");
  return listFilters(sock, dev.index, INGRESS_PARENT, {
    label: dev.name,
    stats: true,
  }).reduce(
    (n, f) =>
      n + f.actions.reduce(
        (m, a) => m + ("packets" in a ? a.packets ?? 0 : 0),
        0,
      ),
    0,
  );
}
