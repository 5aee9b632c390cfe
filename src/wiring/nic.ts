/**
 * The per-NIC plumbing inside a VM's netns, after CNI ADD gave it a veth:
 * the veth handed over to the guest (its IPs removed, its MAC and MTU kept
 * for the guest, IPv6 silenced), a TAP beside it, and the TC redirects
 * between the two (DESIGN.md "Data path").
 *
 * Synchronous: the caller runs it inside `withNetns` with a netlink socket
 * opened in that netns.
 *
 * @module
 */
import type { NetlinkSocket } from "../netlink/socket.ts";
import { IfLink } from "../netlink/constants.ts";
import {
  deleteLink,
  getLinkByName,
  requireLink,
  setInet6AddrGenMode,
  setLinkDown,
  setLinkUp,
  setMac,
  setMtu,
  setTxQueueLen,
} from "../kernel/link.ts";
import { addAddr, flushAddrs } from "../kernel/addr.ts";
import { isErrno } from "../sys/errors.ts";
import { Errno } from "../sys/errno.ts";
import { createTap } from "../kernel/tuntap.ts";
import { describeWiring, unwireTap, wireTapToVeth } from "./tap_wiring.ts";

/** IP text parsing, for the provider's checks of recovery IPs. */
export { parseIP } from "../kernel/ipaddr.ts";

/** TAP transmit queue length: deep enough for a busy guest's bursts. */
export const TAP_TXQUEUELEN = 10_000;

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
}

/** What the guest must be given: the veth's MAC and MTU. */
export interface PlumbResult {
  mac: string;
  mtu: number;
}

/**
 * Hands the veth to the guest and wires a new TAP to it. On failure, what
 * this call created is removed again before the error propagates.
 */
export function plumbNic(sock: NetlinkSocket, opts: PlumbOptions): PlumbResult {
  const veth = requireLink(sock, opts.veth, "plumb nic");
  if (opts.mac && opts.mac !== veth.mac) setMac(sock, opts.veth, opts.mac);
  // Silence the netns stack on the veth: the guest owns this MAC, so nothing
  // the netns sends (link-local, DAD, RS, MLD) may go out with it.
  setInet6AddrGenMode(sock, opts.veth, IfLink.IN6_ADDR_GEN_MODE_NONE);
  flushAddrs(sock, opts.veth);
  let tapCreated = false;
  try {
    createTap({
      name: opts.tap,
      multiQueue: opts.queues > 1,
      vnetHdr: true,
      owner: opts.tapOwner,
    });
    tapCreated = true;
    // Down still: set everything before the first packet can flow.
    setInet6AddrGenMode(sock, opts.tap, IfLink.IN6_ADDR_GEN_MODE_NONE);
    setMtu(sock, opts.tap, veth.mtu);
    setTxQueueLen(sock, opts.tap, TAP_TXQUEUELEN);
    wireTapToVeth(sock, { veth: opts.veth, tap: opts.tap });
    setLinkUp(sock, opts.tap);
    if (!veth.up) setLinkUp(sock, opts.veth);
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
 * Removes the TAP and the veth's redirect (the veth itself is CNI DEL's).
 * Idempotent: what is already gone is skipped.
 */
export function unplumbNic(
  sock: NetlinkSocket,
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
  sock: NetlinkSocket,
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

/** Presence and wiring of one NIC's devices, for `verify`. */
export interface NicState {
  tapPresent: boolean;
  vethPresent: boolean;
  wired: boolean;
}

/** Reports whether the TAP and veth exist and the redirects join them. */
export function inspectNic(
  sock: NetlinkSocket,
  opts: { veth: string; tap: string },
): NicState {
  const w = describeWiring(sock, opts);
  return {
    tapPresent: w.tapIndex !== null,
    vethPresent: w.vethIndex !== null,
    wired: w.wired,
  };
}

/**
 * Brings the veth down (quiesce) or up (unquiesce). While a VM is stopped,
 * a live veth redirecting into a TAP nobody reads turns broadcast traffic
 * into a softirq storm; down, the bridge stops sending to it.
 * Returns false when the veth is absent.
 */
export function setNicQuiesced(
  sock: NetlinkSocket,
  veth: string,
  quiesced: boolean,
): boolean {
  if (!getLinkByName(sock, veth)) return false;
  if (quiesced) setLinkDown(sock, veth);
  else setLinkUp(sock, veth);
  return true;
}
