/**
 * Where the fields of the packet headers are, as the structs of the kernel
 * headers lay them out, for the u32 keys vmnic's policy matches with
 * (docs/policy.md). u32 offsets count from the network header; the
 * Ethernet header lies before it (negative offsets).
 *
 * @module
 */

/** linux/if_ether.h `struct ethhdr`, as offsets from the network header. */
export const EthHdr = {
  /** Bytes of the header (ETH_HLEN). */
  ETH_HLEN: 14,
  /** `h_dest`: the first byte of the frame. */
  H_DEST_OFF: -14,
  /** `h_source`: six bytes after the destination. */
  H_SOURCE_OFF: -8,
  /** `h_proto`: the two bytes before the network header. */
  H_PROTO_OFF: -2,
} as const;

/** linux/ip.h `struct iphdr`. */
export const IpHdr = {
  /** `version:4, ihl:4` in one byte. */
  VERSION_IHL_OFF: 0,
  /** The low nibble of that byte: header length in 32-bit words. */
  IHL_MASK: 0x0f,
  /** IHL of a header without options. */
  IHL_NO_OPTIONS: 5,
  /** Bytes of a header without options. */
  LEN: 20,
  /** `protocol`. */
  PROTOCOL_OFF: 9,
  /** `saddr`. */
  SADDR_OFF: 12,
  /** `daddr`. */
  DADDR_OFF: 16,
} as const;

/** linux/ipv6.h `struct ipv6hdr`. */
export const Ipv6Hdr = {
  /** `payload_len`. */
  PAYLOAD_LEN_OFF: 4,
  /** `nexthdr`. */
  NEXTHDR_OFF: 6,
  /** `saddr`. */
  SADDR_OFF: 8,
  /** `daddr`. */
  DADDR_OFF: 24,
  /** Bytes of the fixed header. */
  LEN: 40,
} as const;

/** linux/tcp.h, linux/udp.h: the ports lead both headers. */
export const L4Hdr = {
  /** `source`. */
  SOURCE_OFF: 0,
  /** `dest`. */
  DEST_OFF: 2,
} as const;

/**
 * linux/if_arp.h `struct arphdr` and the Ethernet/IPv4 body that follows
 * it (`ar_sha`, `ar_sip`, `ar_tha`, `ar_tip`).
 */
export const ArpHdr = {
  /** `ar_hrd`. */
  AR_HRD_OFF: 0,
  /** `ar_pro`. */
  AR_PRO_OFF: 2,
  /** `ar_hln`. */
  AR_HLN_OFF: 4,
  /** `ar_pln`. */
  AR_PLN_OFF: 5,
  /** `ar_op`. */
  AR_OP_OFF: 6,
  /** Sender hardware address. */
  AR_SHA_OFF: 8,
  /** Sender IPv4 address. */
  AR_SIP_OFF: 14,
  /** Target hardware address. */
  AR_THA_OFF: 18,
  /** Target IPv4 address. */
  AR_TIP_OFF: 24,
} as const;

/**
 * linux/icmpv6.h `struct icmp6hdr` and net/ndisc.h `struct nd_msg`,
 * `struct rs_msg`, `struct nd_opt_hdr`, as offsets from the ICMPv6 header.
 */
export const Icmp6Hdr = {
  /** `icmp6_type`. */
  ICMP6_TYPE_OFF: 0,
  /** `nd_msg.target` of a neighbor solicitation or advertisement. */
  ND_TARGET_OFF: 8,
  /** The first option of a neighbor solicitation or advertisement. */
  ND_OPT_OFF: 24,
  /** The first option of a router solicitation (`rs_msg.opt`). */
  RS_OPT_OFF: 8,
  /** `nd_opt_hdr`: type, then length in units of 8 bytes. */
  ND_OPT_TYPE_OFF: 0,
  /** `nd_opt_hdr.nd_opt_len`. */
  ND_OPT_LEN_OFF: 1,
  /** The link-layer address in a (source or target) link-layer option. */
  ND_OPT_LLADDR_OFF: 2,
  /** `nd_opt_len` of a link-layer option for a 6-byte address. */
  ND_OPT_LLADDR_LEN_ETHER: 1,
} as const;
