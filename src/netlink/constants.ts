/**
 * Netlink and rtnetlink constants, grouped per kernel UAPI header and named
 * as the kernel names them, so encoder code reads like the kernel's own.
 *
 * @module
 */

/** linux/socket.h, sys/socket.h: address families and socket options. */
export const Socket = {
  AF_UNSPEC: 0,
  AF_INET: 2,
  AF_BRIDGE: 7,
  AF_INET6: 10,
  AF_NETLINK: 16,
  AF_PACKET: 17,
  SOCK_RAW: 3,
  SOCK_CLOEXEC: 0x80000,
  SOL_SOCKET: 1,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_RCVTIMEO: 20,
  SOL_NETLINK: 270,
  /** Socket option: a receive buffer past `rmem_max` (CAP_NET_ADMIN). */
  SO_RCVBUFFORCE: 33,
  /** recv flags: return EAGAIN rather than wait. */
  MSG_DONTWAIT: 0x40,
  /** msg_flags: the datagram was longer than the buffer. */
  MSG_TRUNC: 0x20,
  /** msg_flags: the ancillary data was longer than its buffer. */
  MSG_CTRUNC: 0x08,
} as const;

/** linux/netlink.h */
export const Netlink = {
  NETLINK_ROUTE: 0,
  /** Socket option: join a multicast group (its number, any size). */
  NETLINK_ADD_MEMBERSHIP: 1,
  /** Socket option: leave a multicast group. */
  NETLINK_DROP_MEMBERSHIP: 2,
  /**
   * Socket option: also receive the notifications of every netns that has
   * an id in this socket's netns, each tagged with that id (a control
   * message of this type).
   */
  NETLINK_LISTEN_ALL_NSID: 8,
  /** Socket option: reply to every request with an ACK carrying no payload copy. */
  NETLINK_CAP_ACK: 10,
  /** Socket option: extended ACK, carries the kernel's error message text. */
  NETLINK_EXT_ACK: 11,
  NLM_F_REQUEST: 0x01,
  NLM_F_MULTI: 0x02,
  NLM_F_ACK: 0x04,
  NLM_F_ECHO: 0x08,
  NLM_F_DUMP_INTR: 0x10,
  // GET requests
  NLM_F_ROOT: 0x100,
  NLM_F_MATCH: 0x200,
  NLM_F_DUMP: 0x300,
  // NEW requests
  NLM_F_REPLACE: 0x100,
  NLM_F_EXCL: 0x200,
  NLM_F_CREATE: 0x400,
  NLM_F_APPEND: 0x800,
  // ACK flags
  NLM_F_CAPPED: 0x100,
  NLM_F_ACK_TLVS: 0x200,
  NLMSG_NOOP: 1,
  NLMSG_ERROR: 2,
  NLMSG_DONE: 3,
  NLMSG_OVERRUN: 4,
  NLMSG_HDRLEN: 16,
  NLA_HDRLEN: 4,
  NLA_F_NESTED: 0x8000,
  NLA_F_NET_BYTEORDER: 0x4000,
  NLA_TYPE_MASK: ~(0x8000 | 0x4000) & 0xffff,
  NLMSGERR_ATTR_MSG: 1,
  NLMSGERR_ATTR_OFFS: 2,
} as const;

/** linux/rtnetlink.h: message types and the traffic-control attribute types. */
export const Rtnl = {
  RTM_NEWLINK: 16,
  RTM_DELLINK: 17,
  RTM_GETLINK: 18,
  RTM_SETLINK: 19,
  RTM_NEWADDR: 20,
  RTM_DELADDR: 21,
  RTM_GETADDR: 22,
  RTM_NEWROUTE: 24,
  RTM_DELROUTE: 25,
  RTM_GETROUTE: 26,
  RTM_NEWQDISC: 36,
  RTM_DELQDISC: 37,
  RTM_GETQDISC: 38,
  RTM_NEWTFILTER: 44,
  RTM_DELTFILTER: 45,
  RTM_GETTFILTER: 46,
  RTM_NEWNSID: 88,
  RTM_DELNSID: 89,
  RTM_GETNSID: 90,
  TCA_UNSPEC: 0,
  TCA_KIND: 1,
  TCA_OPTIONS: 2,
  TCA_STATS: 3,
  TCA_XSTATS: 4,
  TCA_RATE: 5,
  TCA_FCNT: 6,
  TCA_STATS2: 7,
  TCA_STAB: 8,
  TCA_PAD: 9,
  TCA_DUMP_INVISIBLE: 10,
  TCA_CHAIN: 11,
  TCA_HW_OFFLOAD: 12,
  TCA_INGRESS_BLOCK: 13,
  TCA_EGRESS_BLOCK: 14,
} as const;

/** linux/rtnetlink.h: multicast groups (enum rtnetlink_groups). */
export const RtnlGroup = {
  RTNLGRP_NONE: 0,
  RTNLGRP_LINK: 1,
  RTNLGRP_TC: 4,
  RTNLGRP_NSID: 28,
} as const;

/** linux/net_namespace.h: netns id attributes (RTM_*NSID). */
export const NetNsA = {
  NETNSA_NONE: 0,
  NETNSA_NSID: 1,
  NETNSA_PID: 2,
  NETNSA_FD: 3,
  NETNSA_TARGET_NSID: 4,
  NETNSA_CURRENT_NSID: 5,
  /** NETNSA_NSID's value for a netns without an id (and "pick one" in RTM_NEWNSID). */
  NETNSA_NSID_NOT_ASSIGNED: -1,
} as const;

/** linux/if.h: net_device flags (ifinfomsg.ifi_flags). */
export const If = {
  IFF_UP: 0x1,
  IFF_BROADCAST: 0x2,
  IFF_LOOPBACK: 0x8,
  IFF_POINTOPOINT: 0x10,
  IFF_RUNNING: 0x40,
  IFF_NOARP: 0x80,
  IFF_PROMISC: 0x100,
  IFF_MULTICAST: 0x1000,
  IFF_LOWER_UP: 0x10000,
  IFNAMSIZ: 16,
} as const;

/** linux/if_arp.h: link-layer types (ifinfomsg.ifi_type). */
export const IfArp = {
  ARPHRD_ETHER: 1,
  ARPHRD_LOOPBACK: 772,
  ARPHRD_NONE: 0xfffe,
} as const;

/** linux/if_link.h: link attributes and their nested kinds. */
export const IfLink = {
  IFLA_UNSPEC: 0,
  IFLA_ADDRESS: 1,
  IFLA_BROADCAST: 2,
  IFLA_IFNAME: 3,
  IFLA_MTU: 4,
  IFLA_LINK: 5,
  IFLA_QDISC: 6,
  IFLA_STATS: 7,
  IFLA_MASTER: 10,
  IFLA_TXQLEN: 13,
  IFLA_OPERSTATE: 16,
  IFLA_LINKMODE: 17,
  IFLA_LINKINFO: 18,
  IFLA_NET_NS_PID: 19,
  IFLA_IFALIAS: 20,
  IFLA_AF_SPEC: 26,
  IFLA_GROUP: 27,
  IFLA_NET_NS_FD: 28,
  IFLA_EXT_MASK: 29,
  IFLA_PROMISCUITY: 30,
  IFLA_NUM_TX_QUEUES: 31,
  IFLA_NUM_RX_QUEUES: 32,
  IFLA_CARRIER: 33,
  IFLA_CARRIER_CHANGES: 35,
  IFLA_LINK_NETNSID: 37,
  IFLA_GSO_MAX_SEGS: 40,
  IFLA_GSO_MAX_SIZE: 41,
  /** A request's target netns, by its id in the socket's netns (IFLA_IF_NETNSID). */
  IFLA_TARGET_NETNSID: 46,
  IFLA_MIN_MTU: 50,
  IFLA_MAX_MTU: 51,
  IFLA_ALT_IFNAME: 53,
  IFLA_PERM_ADDRESS: 54,
  IFLA_GRO_MAX_SIZE: 58,
  IFLA_TSO_MAX_SIZE: 59,
  IFLA_TSO_MAX_SEGS: 60,
  // IFLA_LINKINFO nested
  IFLA_INFO_KIND: 1,
  IFLA_INFO_DATA: 2,
  IFLA_INFO_XSTATS: 3,
  IFLA_INFO_SLAVE_KIND: 4,
  IFLA_INFO_SLAVE_DATA: 5,
  // IFLA_AF_SPEC / AF_INET nested (IPv4 devconf values by IPV4_DEVCONF_*)
  IFLA_INET_CONF: 1,
  // IFLA_AF_SPEC / AF_INET6 nested
  IFLA_INET6_FLAGS: 1,
  IFLA_INET6_CONF: 2,
  IFLA_INET6_TOKEN: 7,
  IFLA_INET6_ADDR_GEN_MODE: 8,
  IN6_ADDR_GEN_MODE_EUI64: 0,
  IN6_ADDR_GEN_MODE_NONE: 1,
  IN6_ADDR_GEN_MODE_STABLE_PRIVACY: 2,
  IN6_ADDR_GEN_MODE_RANDOM: 3,
  // IFLA_OPERSTATE values (RFC 2863)
  IF_OPER_UNKNOWN: 0,
  IF_OPER_NOTPRESENT: 1,
  IF_OPER_DOWN: 2,
  IF_OPER_LOWERLAYERDOWN: 3,
  IF_OPER_TESTING: 4,
  IF_OPER_DORMANT: 5,
  IF_OPER_UP: 6,
} as const;

/** linux/ip.h: IPv4 per-device settings (IFLA_INET_CONF entries). */
export const Ipv4Devconf = {
  IPV4_DEVCONF_FORWARDING: 1,
  IPV4_DEVCONF_RP_FILTER: 8,
  /** rp_filter: strict reverse-path check (RFC 3704). */
  RP_FILTER_STRICT: 1,
} as const;

/** linux/veth.h */
export const Veth = {
  VETH_INFO_UNSPEC: 0,
  VETH_INFO_PEER: 1,
} as const;

/** linux/if_addr.h: address attributes and flags. */
export const IfAddr = {
  IFA_UNSPEC: 0,
  IFA_ADDRESS: 1,
  IFA_LOCAL: 2,
  IFA_LABEL: 3,
  IFA_BROADCAST: 4,
  IFA_ANYCAST: 5,
  IFA_CACHEINFO: 6,
  IFA_MULTICAST: 7,
  IFA_FLAGS: 8,
  IFA_F_SECONDARY: 0x01,
  IFA_F_NODAD: 0x02,
  IFA_F_DADFAILED: 0x08,
  IFA_F_TENTATIVE: 0x40,
  IFA_F_PERMANENT: 0x80,
  IFA_F_NOPREFIXROUTE: 0x200,
  RT_SCOPE_UNIVERSE: 0,
  RT_SCOPE_LINK: 253,
  RT_SCOPE_HOST: 254,
} as const;

/** linux/pkt_sched.h: qdisc handles and parents. */
export const PktSched = {
  TC_H_UNSPEC: 0,
  TC_H_ROOT: 0xffffffff,
  TC_H_INGRESS: 0xfffffff1,
  TC_H_CLSACT: 0xfffffff1,
  TC_H_MAJ_MASK: 0xffff0000,
  TC_H_MIN_MASK: 0x0000ffff,
  TC_H_MIN_INGRESS: 0xfff2,
  TC_H_MIN_EGRESS: 0xfff3,
} as const;

/** linux/pkt_cls.h: classifier and action attributes. */
export const PktCls = {
  TCA_ACT_UNSPEC: 0,
  TCA_ACT_KIND: 1,
  TCA_ACT_OPTIONS: 2,
  TCA_ACT_INDEX: 3,
  TCA_ACT_STATS: 4,
  TCA_ACT_PAD: 5,
  TCA_ACT_COOKIE: 6,
  TCA_ACT_FLAGS: 7,
  TC_ACT_UNSPEC: -1,
  TC_ACT_OK: 0,
  TC_ACT_RECLASSIFY: 1,
  TC_ACT_SHOT: 2,
  TC_ACT_PIPE: 3,
  TC_ACT_STOLEN: 4,
  TC_ACT_QUEUED: 5,
  TC_ACT_REPEAT: 6,
  TC_ACT_REDIRECT: 7,
  TCA_CLS_FLAGS_SKIP_HW: 1,
  TCA_CLS_FLAGS_SKIP_SW: 2,
  TCA_U32_UNSPEC: 0,
  TCA_U32_CLASSID: 1,
  TCA_U32_HASH: 2,
  TCA_U32_LINK: 3,
  TCA_U32_DIVISOR: 4,
  TCA_U32_SEL: 5,
  TCA_U32_POLICE: 6,
  TCA_U32_ACT: 7,
  TCA_U32_INDEV: 8,
  TCA_U32_PCNT: 9,
  TCA_U32_MARK: 10,
  TCA_U32_FLAGS: 11,
  TC_U32_TERMINAL: 1,
  TC_U32_OFFSET: 2,
  TC_U32_VAROFFSET: 4,
  TC_U32_EAT: 8,
} as const;

/** linux/tc_act/tc_mirred.h */
export const TcMirred = {
  TCA_MIRRED_UNSPEC: 0,
  TCA_MIRRED_TM: 1,
  TCA_MIRRED_PARMS: 2,
  TCA_MIRRED_PAD: 3,
  TCA_EGRESS_REDIR: 1,
  TCA_EGRESS_MIRROR: 2,
  TCA_INGRESS_REDIR: 3,
  TCA_INGRESS_MIRROR: 4,
} as const;

/**
 * linux/pkt_sched.h: the tbf qdisc (vmnic's rate limits) and the link-layer
 * types of a `struct tc_ratespec`.
 */
export const TcTbf = {
  TCA_TBF_UNSPEC: 0,
  TCA_TBF_PARMS: 1,
  TCA_TBF_RTAB: 2,
  TCA_TBF_PTAB: 3,
  TCA_TBF_RATE64: 4,
  TCA_TBF_PRATE64: 5,
  TCA_TBF_BURST: 6,
  TCA_TBF_PBURST: 7,
  TCA_TBF_PAD: 8,
  TC_LINKLAYER_UNAWARE: 0,
  TC_LINKLAYER_ETHERNET: 1,
  TC_LINKLAYER_ATM: 2,
} as const;

/** linux/pkt_sched.h: the htb qdisc (probed by `doctor`). */
export const TcHtb = {
  TCA_HTB_UNSPEC: 0,
  TCA_HTB_PARMS: 1,
  TCA_HTB_INIT: 2,
  TCA_HTB_CTAB: 3,
  TCA_HTB_RTAB: 4,
  TCA_HTB_DIRECT_QLEN: 5,
  TCA_HTB_RATE64: 6,
  TCA_HTB_CEIL64: 7,
  TCA_HTB_PAD: 8,
  TCA_HTB_OFFLOAD: 9,
  /** struct tc_htb_glob's version field. */
  TC_HTB_PROTOVER: 3,
} as const;

/** linux/gen_stats.h: statistics nested in TCA_STATS2 / TCA_ACT_STATS. */
export const GenStats = {
  TCA_STATS_UNSPEC: 0,
  TCA_STATS_BASIC: 1,
  TCA_STATS_RATE_EST: 2,
  TCA_STATS_QUEUE: 3,
  TCA_STATS_APP: 4,
  TCA_STATS_RATE_EST64: 5,
  TCA_STATS_PAD: 6,
  TCA_STATS_BASIC_HW: 7,
  TCA_STATS_PKT64: 8,
} as const;

/** linux/tc_act/tc_gact.h: the generic action (drop, pass). */
export const TcGact = {
  TCA_GACT_UNSPEC: 0,
  TCA_GACT_TM: 1,
  TCA_GACT_PARMS: 2,
  TCA_GACT_PROB: 3,
} as const;

/** linux/pkt_cls.h: the police action's attributes. */
export const TcPolice = {
  TCA_POLICE_UNSPEC: 0,
  TCA_POLICE_TBF: 1,
  TCA_POLICE_RATE: 2,
  TCA_POLICE_PEAKRATE: 3,
  TCA_POLICE_AVRATE: 4,
  TCA_POLICE_RESULT: 5,
} as const;

/** linux/in.h, linux/in6.h: IP protocol numbers (next headers). */
export const InProto = {
  IPPROTO_HOPOPTS: 0,
  IPPROTO_ICMP: 1,
  IPPROTO_TCP: 6,
  IPPROTO_UDP: 17,
  IPPROTO_ROUTING: 43,
  IPPROTO_FRAGMENT: 44,
  IPPROTO_ICMPV6: 58,
  IPPROTO_DSTOPTS: 60,
} as const;

/** net/ndisc.h: neighbor discovery message types and option types. */
export const Ndisc = {
  NDISC_ROUTER_SOLICITATION: 133,
  NDISC_ROUTER_ADVERTISEMENT: 134,
  NDISC_NEIGHBOUR_SOLICITATION: 135,
  NDISC_NEIGHBOUR_ADVERTISEMENT: 136,
  NDISC_REDIRECT: 137,
  ND_OPT_SOURCE_LL_ADDR: 1,
  ND_OPT_TARGET_LL_ADDR: 2,
} as const;

/** linux/if_ether.h */
export const IfEther = {
  ETH_ALEN: 6,
  ETH_P_ALL: 0x0003,
  ETH_P_IP: 0x0800,
  ETH_P_ARP: 0x0806,
  ETH_P_IPV6: 0x86dd,
} as const;

/**
 * linux/rtnetlink.h, linux/fib_rules.h: route and policy-rule messages
 * (the routed path of clone NICs, docs/datapath.md).
 */
export const RtRoute = {
  RTM_NEWRULE: 32,
  RTM_DELRULE: 33,
  RTM_GETRULE: 34,
  /** struct rtmsg and struct fib_rule_hdr are both 12 bytes. */
  RTMSG_LEN: 12,
  FIB_RULE_HDR_LEN: 12,
  RTA_DST: 1,
  RTA_OIF: 4,
  RTA_GATEWAY: 5,
  RTA_PRIORITY: 6,
  RTA_PREFSRC: 7,
  RTA_TABLE: 15,
  RT_TABLE_UNSPEC: 0,
  /** rtm_table of a table id past 255 (the id goes in RTA_TABLE). */
  RT_TABLE_COMPAT: 252,
  RT_TABLE_MAIN: 254,
  RT_TABLE_LOCAL: 255,
  /** Routes whose table id fits rtm_table. */
  RT_TABLE_MAX_U8: 255,
  RTPROT_BOOT: 3,
  RTPROT_STATIC: 4,
  RTN_UNICAST: 1,
  RT_SCOPE_UNIVERSE: 0,
  RT_SCOPE_LINK: 253,
  /** A delete's scope that matches a route of any scope. */
  RT_SCOPE_NOWHERE: 255,
  FRA_IIFNAME: 3,
  FRA_PRIORITY: 6,
  FRA_TABLE: 15,
  FRA_OIFNAME: 17,
  FR_ACT_TO_TBL: 1,
} as const;
