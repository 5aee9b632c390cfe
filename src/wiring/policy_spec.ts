/**
 * A NIC's policy as the data path applies it, and what can be said of one
 * without a kernel: the types, the open policy, isolation's subnets, a
 * rule in words. Kept apart from `tap_policy.ts` (which programs TC) so
 * that checking policy input, in the CLI above all, loads no netlink.
 *
 * @module
 */
import { parseCidr } from "../kernel/ipaddr.ts";
import type { TbfOptions } from "../kernel/tc.ts";

/** Address text parsing, for the provider's checks of policy input. */
export { formatIP, parseCidr, parseIP } from "../kernel/ipaddr.ts";
export type { TbfOptions } from "../kernel/tc.ts";

/** A protocol an egress rule may name. */
export type EgressProtocol = "tcp" | "udp" | "icmp";

/** One egress rule, in kernel terms. */
export interface EgressMatch {
  /** Allow (redirect on) or deny (not redirected). */
  action: "allow" | "deny";
  /** Destination, `10.0.0.0/8` or `fd00::/8`. */
  cidr: string;
  /** Only this protocol (`icmp` is ICMPv6 for IPv6 destinations). */
  protocol?: EgressProtocol;
  /** Only this destination port (tcp or udp). */
  port?: number;
}

/** A NIC's policy as the data path applies it. */
export interface TapPolicy {
  /** The guest's MAC; the veth's when absent. */
  mac?: string;
  /** The NIC's IPv4 addresses (no prefix). */
  ipv4: readonly string[];
  /** The NIC's IPv6 addresses (no prefix). */
  ipv6: readonly string[];
  /** Only the NIC's MAC and addresses as sources from the guest. */
  antiSpoofing: boolean;
  /**
   * The network's IPAM is CNI's `dhcp`, whose daemon holds the lease from
   * the VM's netns: DHCP replies (UDP to port 68) arriving on the veth stay
   * in the netns, and DHCP from the guest (UDP to port 67) is not sent on.
   */
  dhcp: boolean;
  /**
   * The VM is stopped (quiesced) but its veth stays up, for the `dhcp`
   * daemon renewing through it: toward the guest nothing is redirected
   * (the DHCP rules only), so nothing floods a TAP nobody reads.
   */
  quiesced?: boolean;
  /** Egress rules, first match wins; unmatched traffic is allowed. */
  egress: readonly EgressMatch[];
  /** Isolation within the NIC's subnets (CIDRs), except the gateways. */
  isolate: { subnets: readonly string[]; gateways: readonly string[] } | null;
  /** Toward the guest: a tbf on the TAP. */
  rateIn: TbfOptions | null;
  /** From the guest: a tbf on the veth. */
  rateOut: TbfOptions | null;
}

/** No filtering, no rates: what a NIC without a recorded policy has. */
export const OPEN_POLICY: TapPolicy = Object.freeze({
  ipv4: [],
  ipv6: [],
  antiSpoofing: false,
  dhcp: false,
  egress: [],
  isolate: null,
  rateIn: null,
  rateOut: null,
});

/** The network of `address/prefix`, e.g. `10.1.2.0/24`. */
function networkOf(cidr: string): string {
  const c = parseCidr(cidr);
  const out = Uint8Array.from(c.bytes);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, c.prefix - i * 8));
    out[i] &= bits ? (0xff << (8 - bits)) & 0xff : 0;
  }
  const text = c.family === 4
    ? [...out].join(".")
    : [...Array(8).keys()].map((g) =>
      ((out[2 * g] << 8) | out[2 * g + 1]).toString(16)
    ).join(":");
  return `${text}/${c.prefix}`;
}

/**
 * The subnets (as networks) and gateways of a NIC's addresses, for
 * {@linkcode TapPolicy.isolate}.
 */
export function isolationOf(
  ips: readonly { address: string; prefix: number; gateway?: string }[],
): { subnets: string[]; gateways: string[] } {
  const subnets = [
    ...new Set(ips.map((ip) => networkOf(`${ip.address}/${ip.prefix}`))),
  ];
  const gateways = [
    ...new Set(ips.flatMap((ip) => ip.gateway ? [ip.gateway] : [])),
  ];
  return { subnets, gateways };
}

/** An egress rule in words: `deny 10.0.0.0/8 tcp port 22`. */
export function egressText(r: EgressMatch): string {
  return `${r.action} ${r.cidr}${r.protocol ? ` ${r.protocol}` : ""}${
    r.port !== undefined ? ` port ${r.port}` : ""
  }`;
}
