/**
 * The per-NIC plumbing inside a VM's netns, after CNI ADD gave it a veth:
 * the veth handed over to the guest (its IPs removed, its MAC and MTU kept
 * for the guest, IPv6 silenced), a TAP beside it, and the TC redirects
 * between the two (docs/datapath.md). Plus what `verify` and `recover` need
 * to see and mend it in place, and the tag that marks a netns as vmnic's.
 *
 * Synchronous: the caller runs it through `Kernel.inNetns`.
 *
 * @module
 */
import type { NetlinkConn } from "../netlink/conn.ts";
import { IfLink } from "../netlink/constants.ts";
import {
  deleteLink,
  getLinkByIndex,
  getLinkByName,
  type Link,
  requireLink,
  setInet6AddrGenMode,
  setLinkAlias,
  setLinkDown,
  setLinkUp,
  setMac,
  setMaster,
  setMtu,
  setTxQueueLen,
} from "../kernel/link.ts";
import { addAddr, flushAddrs, listAddrs } from "../kernel/addr.ts";
import { isErrno } from "../sys/errors.ts";
import { Errno } from "../sys/errno.ts";
import { unwireTap } from "./tap_wiring.ts";
import {
  applyTapPolicy,
  compileTapPolicy,
  describeTapPolicy,
  OPEN_POLICY,
  type PolicyChange,
  type TapPolicy,
} from "./tap_policy.ts";
import { EthHdr } from "../kernel/packet.ts";
import type { NetnsScope } from "./kernel.ts";

/** IP text parsing, for the provider's checks of recovery IPs. */
export { parseIP } from "../kernel/ipaddr.ts";
/** Link lookup and removal, for what the provider checks and forces. */
export { deleteLink, getLinkByName } from "../kernel/link.ts";
/** Removing the redirects alone (a rebuild keeps the TAP). */
export { unwireTap } from "./tap_wiring.ts";

/** TAP transmit queue length: deep enough for a busy guest's bursts. */
export const TAP_TXQUEUELEN = 10_000;

/** The loopback device, present in every netns: it carries the netns tag. */
const LOOPBACK = "lo";

/** What {@linkcode plumbNic} needs. */
export interface PlumbOptions {
  /** The CNI veth in the netns (`eth0`). */
  veth: string;
  /** The TAP to create (`tap0`). */
  tap: string;
  /** Queue pairs; more than one makes a multi-queue TAP. */
  queues: number;
  /** A MAC to set on the veth (recovery); the veth's own is kept otherwise. */
  mac?: string;
  /** Owner uid allowed to open the TAP besides root. */
  tapOwner?: number;
  /** Leave the veth down (a quiesced VM): no traffic until unquiesced. */
  down?: boolean;
  /**
   * The NIC's policy on its TAP path (docs/policy.md); none: redirect
   * everything both ways, no rate limits.
   */
  policy?: TapPolicy;
}

/** What the guest must be given: the veth's MAC and MTU. */
export interface PlumbResult {
  /** The veth's MAC, which the guest uses. */
  mac: string;
  /** The veth's MTU, which the TAP and the guest use. */
  mtu: number;
}

/**
 * Hands the veth to the guest and wires a new TAP to it. On failure, what
 * this call created is removed again before the error propagates.
 */
export function plumbNic(scope: NetnsScope, opts: PlumbOptions): PlumbResult {
  const sock = scope.conn;
  const veth = requireLink(sock, opts.veth, "plumb nic");
  if (opts.mac && opts.mac !== veth.mac) setMac(sock, opts.veth, opts.mac);
  handOverVeth(sock, opts.veth);
  let tapCreated = false;
  try {
    makeTap(scope, opts.tap, opts.queues, veth.mtu, opts.tapOwner);
    tapCreated = true;
    wirePolicy(sock, opts, opts.mac ?? veth.mac ?? "", veth.mtu);
    setLinkUp(sock, opts.tap);
    if (opts.down) setLinkDown(sock, opts.veth);
    else if (!veth.up) setLinkUp(sock, opts.veth);
  } catch (err) {
    if (tapCreated) {
      try {
        unwireTap(sock, { veth: opts.veth, tap: opts.tap });
      } catch { /* the original error matters more */ }
      try {
        deleteLink(sock, opts.tap, { ignoreMissing: true });
      } catch { /* likewise */ }
    }
    throw err;
  }
  return { mac: opts.mac ?? veth.mac ?? "", mtu: veth.mtu };
}

/**
 * The NIC's policy with what the devices tell: the guest's MAC (the
 * veth's, unless the policy names one) and bursts of at least one frame of
 * the veth's MTU (a tbf drops frames larger than its bucket).
 */
function withDevices(
  policy: TapPolicy,
  mac: string,
  mtu: number,
): TapPolicy & { mac: string } {
  const frame = mtu + EthHdr.ETH_HLEN;
  const fit = (r: TapPolicy["rateIn"]) =>
    r && r.burst < frame ? { ...r, burst: frame } : r;
  return {
    ...policy,
    mac: policy.mac ?? mac,
    rateIn: fit(policy.rateIn),
    rateOut: fit(policy.rateOut),
  };
}

/** Puts the NIC's policy (or plain redirects) between veth and TAP. */
function wirePolicy(
  sock: NetlinkConn,
  opts: { veth: string; tap: string; policy?: TapPolicy },
  mac: string,
  mtu: number,
): PolicyChange {
  const p = withDevices(opts.policy ?? OPEN_POLICY, mac, mtu);
  return applyTapPolicy(
    sock,
    { veth: opts.veth, tap: opts.tap },
    compileTapPolicy(p),
    p,
  );
}

/**
 * Changes the policy of a plumbed NIC in place (`vmnic policy`): the new
 * filters go in before the old ones go, so what both allow keeps flowing.
 *
 * @throws {KernelError} `ENODEV` when the veth or the TAP is missing.
 */
export function applyNicPolicy(
  sock: NetlinkConn,
  opts: { veth: string; tap: string; policy?: TapPolicy },
): PolicyChange {
  const veth = requireLink(sock, opts.veth, "apply policy");
  return wirePolicy(sock, opts, veth.mac ?? "", veth.mtu);
}

/**
 * Silences the netns stack on the veth: the guest owns its MAC, so nothing
 * the netns sends (link-local, DAD, RS, MLD) may go out with it, and the
 * guest's addresses must not live here too.
 */
function handOverVeth(sock: NetlinkConn, veth: string): void {
  setInet6AddrGenMode(sock, veth, IfLink.IN6_ADDR_GEN_MODE_NONE);
  flushAddrs(sock, veth);
}

/**
 * A TAP, down, with everything set before the first packet can flow. If a
 * step after its creation fails, the TAP is deleted again.
 */
export function makeTap(
  scope: NetnsScope,
  tap: string,
  queues: number,
  mtu: number,
  owner?: number,
): void {
  scope.createTap({ name: tap, multiQueue: queues > 1, vnetHdr: true, owner });
  try {
    setInet6AddrGenMode(scope.conn, tap, IfLink.IN6_ADDR_GEN_MODE_NONE);
    setMtu(scope.conn, tap, mtu);
    setTxQueueLen(scope.conn, tap, TAP_TXQUEUELEN);
  } catch (err) {
    try {
      deleteLink(scope.conn, tap, { ignoreMissing: true });
    } catch { /* the original error matters more */ }
    throw err;
  }
}

/**
 * Removes the TAP and the veth's redirect (the veth itself is CNI DEL's).
 * Idempotent: what is already gone is skipped.
 */
export function unplumbNic(
  sock: NetlinkConn,
  opts: { veth: string; tap: string },
): void {
  if (getLinkByName(sock, opts.veth)) unwireTap(sock, opts);
  deleteLink(sock, opts.tap, { ignoreMissing: true });
}

/**
 * Puts the CNI result's addresses back on the veth before CNI DEL. Some
 * plugins find what to clean up from them (the bridge plugin's `ipMasq`
 * NAT rules); vmnic removed them when it handed the veth to the guest.
 * Returns false when the veth is gone (nothing to restore).
 */
export function restoreVethAddrs(
  sock: NetlinkConn,
  veth: string,
  cidrs: readonly string[],
): boolean {
  if (!getLinkByName(sock, veth)) return false;
  for (const cidr of cidrs) {
    try {
      addAddr(sock, veth, cidr, { noDad: true });
    } catch (err) {
      if (!isErrno(err, Errno.EEXIST)) {
        throw err;
      }
    }
  }
  return true;
}

/** What one NIC's devices look like, for `verify` and `recover`. */
export interface NicState {
  /** The TAP exists. */
  tapPresent: boolean;
  /** The CNI veth exists. */
  vethPresent: boolean;
  /** Both redirects are in place. */
  wired: boolean;
  /**
   * Where the devices differ from the NIC's policy (a rule missing, one
   * too many, a rate limit): one line each; absent when they match.
   */
  policyProblems?: string[];
  /** The veth's MAC, when it exists. */
  vethMac?: string;
  /** The veth is administratively up. */
  vethUp: boolean;
  /** The TAP is administratively up. */
  tapUp: boolean;
  /** Addresses on the veth (`10.0.0.2/24`): none belong there. */
  vethAddrs: string[];
  /** ifindex of the veth's peer in the host netns, when the kernel says. */
  peerIndex?: number;
}

/**
 * Reports the NIC's devices: presence, wiring and policy (`policy`, or
 * plain redirects without one), MAC, link states, addresses.
 */
export function inspectNic(
  sock: NetlinkConn,
  opts: { veth: string; tap: string; policy?: TapPolicy },
): NicState {
  const veth = getLinkByName(sock, opts.veth);
  const tap = getLinkByName(sock, opts.tap);
  let wired = false;
  let policyProblems: string[] = [];
  if (veth && tap) {
    const p = withDevices(
      opts.policy ?? OPEN_POLICY,
      veth.mac ?? "",
      veth.mtu,
    );
    const w = describeTapPolicy(
      sock,
      { veth: opts.veth, tap: opts.tap },
      compileTapPolicy(p),
      p,
    );
    wired = w.wired;
    policyProblems = w.problems;
  }
  return {
    tapPresent: tap !== null,
    vethPresent: veth !== null,
    wired,
    ...(policyProblems.length ? { policyProblems } : {}),
    ...(veth?.mac ? { vethMac: veth.mac } : {}),
    vethUp: veth?.up ?? false,
    tapUp: tap?.up ?? false,
    vethAddrs: veth
      ? listAddrs(sock, { index: veth.index }).map((a) =>
        `${a.address}/${a.prefix}`
      )
      : [],
    ...(veth?.linkIndex !== undefined ? { peerIndex: veth.linkIndex } : {}),
  };
}

/** What {@linkcode repairNic} found wrong and mended. */
export interface NicRepair {
  /** One line per thing mended, e.g. `"TAP tap0 re-made"`. */
  repaired: string[];
}

/**
 * Mends one NIC in place around a healthy veth: the recorded MAC back, stray
 * addresses off, a missing TAP re-made, missing redirects re-added, link
 * states as recorded. Leaves alone what is right, so a TAP the hypervisor
 * holds open is never replaced. The veth must exist.
 */
export function repairNic(
  scope: NetnsScope,
  opts: PlumbOptions & { mac: string },
): NicRepair {
  const sock = scope.conn;
  const repaired: string[] = [];
  const veth = requireLink(sock, opts.veth, "repair nic");
  if (veth.mac !== opts.mac) {
    setMac(sock, opts.veth, opts.mac);
    repaired.push(`MAC ${opts.mac} set back on ${opts.veth}`);
  }
  const stray = listAddrs(sock, { index: veth.index });
  if (stray.length || veth.inet6AddrGenMode !== IfLink.IN6_ADDR_GEN_MODE_NONE) {
    handOverVeth(sock, opts.veth);
    if (stray.length) {
      repaired.push(
        `addresses ${
          stray.map((a) => `${a.address}/${a.prefix}`).join(", ")
        } removed from ${opts.veth}`,
      );
    }
  }
  let tap = getLinkByName(sock, opts.tap);
  if (!tap) {
    makeTap(scope, opts.tap, opts.queues, veth.mtu, opts.tapOwner);
    tap = requireLink(sock, opts.tap, "repair nic");
    repaired.push(`TAP ${opts.tap} re-made`);
  } else if (tap.mtu !== veth.mtu) {
    setMtu(sock, opts.tap, veth.mtu);
    repaired.push(`TAP ${opts.tap} MTU set to ${veth.mtu}`);
  }
  const wiring = wirePolicy(sock, opts, opts.mac, veth.mtu);
  if (wiring.changed) {
    repaired.push(
      `redirects between ${opts.veth} and ${opts.tap} re-made` +
        (opts.policy
          ? ` with the NIC's policy (${wiring.actions.join("; ")})`
          : ""),
    );
  }
  if (!tap.up) {
    setLinkUp(sock, opts.tap);
    repaired.push(`TAP ${opts.tap} up`);
  }
  if (opts.down && veth.up) {
    setLinkDown(sock, opts.veth);
    repaired.push(`${opts.veth} down (quiesced)`);
  } else if (!opts.down && !veth.up) {
    setLinkUp(sock, opts.veth);
    repaired.push(`${opts.veth} up`);
  }
  return { repaired };
}

/**
 * Brings the veth down (quiesce) or up (unquiesce). While a VM is stopped,
 * a live veth redirecting into a TAP nobody reads turns broadcast traffic
 * into a softirq storm; down, the bridge stops sending to it.
 * Returns false when the veth is absent.
 */
export function setNicQuiesced(
  sock: NetlinkConn,
  veth: string,
  quiesced: boolean,
): boolean {
  if (!getLinkByName(sock, veth)) return false;
  if (quiesced) setLinkDown(sock, veth);
  else setLinkUp(sock, veth);
  return true;
}

/**
 * Sets a device up when it exists and is down; says whether it exists.
 * For the CNI veth while a chain with `dhcp` IPAM runs its ADD
 * (src/provider/dhcp.ts).
 */
export function raiseLink(sock: NetlinkConn, name: string): boolean {
  const link = getLinkByName(sock, name);
  if (!link) return false;
  if (!link.up) setLinkUp(sock, name);
  return true;
}

/**
 * Marks the netns as made by one vmnic install: the alias of its loopback
 * device, which lives and dies with the netns and any tool can read.
 */
export function tagNetns(sock: NetlinkConn, tag: string): void {
  setLinkAlias(sock, LOOPBACK, tag);
}

/** The tag {@linkcode tagNetns} left, or null for an untagged netns. */
export function netnsTag(sock: NetlinkConn): string | null {
  return getLinkByName(sock, LOOPBACK)?.alias ?? null;
}

/** Puts a NIC's host veth back on its bridge (in vmnic's own netns). */
export function reattachHostVeth(
  sock: NetlinkConn,
  veth: string,
  bridge: string,
): void {
  setMaster(sock, veth, bridge);
}

/** The host end of a NIC, as `verify` checks it. */
export interface HostSide {
  /** The host veth exists. */
  present: boolean;
  /** Its name, when found. */
  name?: string;
  /** The name of its master device (a bridge), if any. */
  master?: string;
  /** The expected bridge exists (when one was named). */
  bridgePresent?: boolean;
}

/**
 * Looks for a NIC's host veth in vmnic's own netns, by name (from the CNI
 * result) or by ifindex (the VM-side veth's peer), and its bridge.
 */
export function inspectHostSide(
  sock: NetlinkConn,
  opts: { name?: string; index?: number; bridge?: string },
): HostSide {
  // The kernel's word (the VM-side veth's peer index) before the result's.
  let link: Link | null = null;
  if (opts.index !== undefined) {
    link = getLinkByIndex(sock, opts.index);
    if (link && link.kind !== "veth") link = null;
  }
  if (!link && opts.name) link = getLinkByName(sock, opts.name);
  const out: HostSide = { present: link !== null };
  if (link) out.name = link.name;
  if (link?.master !== undefined) {
    const master = getLinkByIndex(sock, link.master);
    if (master) out.master = master.name;
  }
  if (opts.bridge) {
    out.bridgePresent = getLinkByName(sock, opts.bridge) !== null;
  }
  return out;
}
