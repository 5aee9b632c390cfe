/**
 * vmnic's data path inside a VM's netns (docs/datapath.md): every
 * frame arriving on the CNI veth is redirected out of the TAP (to the guest),
 * and every frame the guest sends into the TAP is redirected out of the veth,
 * with an ingress qdisc and a u32 match-all mirred filter on each side.
 *
 * Synchronous: the caller passes a netlink socket opened in the VM's netns.
 *
 * @module
 */
import { getLinkByName, type Link, requireLink } from "../kernel/link.ts";
import {
  addIngressQdisc,
  addRedirectFilter,
  deleteFilters,
  deleteIngressQdisc,
  type FilterInfo,
  INGRESS_PARENT,
  listFilters,
} from "../kernel/tc.ts";
import type { NetlinkConn } from "../netlink/conn.ts";

/**
 * The filter priority the wiring owns on both devices: 1, evaluated before
 * anything else on their ingress.
 */
export const WIRING_PRIO = 1;

/** The two devices of one NIC's data path, by name. */
export interface TapPair {
  /** The CNI veth in the VM's netns (e.g. `eth0`). */
  veth: string;
  /** The TAP the hypervisor attaches to (e.g. `tap0`). */
  tap: string;
}

/** What {@linkcode describeWiring} finds. */
export interface WiringState {
  /** ifindex of the veth, `null` when it does not exist. */
  vethIndex: number | null;
  /** ifindex of the TAP, `null` when it does not exist. */
  tapIndex: number | null;
  /** The veth's ingress redirects every frame out of the TAP. */
  vethToTap: boolean;
  /** The TAP's ingress redirects every frame out of the veth. */
  tapToVeth: boolean;
  /** Both redirects are in place and point at each other. */
  wired: boolean;
}

/**
 * Wires the TAP and the veth together, both ways. Idempotent: what is
 * already correct is kept; a wrong filter at {@linkcode WIRING_PRIO} (e.g.
 * pointing at an earlier TAP of the same name) is replaced. On failure,
 * everything this call added is removed again before the error is rethrown.
 *
 * @returns `changed: false` when both redirects were already in place.
 * @throws {KernelError} `ENODEV` (op "wire tap to veth") when a device is
 * missing, or the failing tc step's error.
 */
export function wireTapToVeth(
  sock: NetlinkConn,
  pair: TapPair,
): { changed: boolean } {
  const op = "wire tap to veth";
  const veth = requireLink(sock, pair.veth, op);
  const tap = requireLink(sock, pair.tap, op);
  const undo: (() => void)[] = [];
  try {
    const a = ensureRedirect(sock, veth, tap, undo);
    const b = ensureRedirect(sock, tap, veth, undo);
    return { changed: a || b };
  } catch (err) {
    for (const step of undo.reverse()) {
      try {
        step();
      } catch {
        // Best effort: the original error is the one worth reporting.
      }
    }
    throw err;
  }
}

/**
 * Removes the wiring: the ingress qdiscs of both devices, which takes their
 * filters with them. A missing device or qdisc is not an error.
 */
export function unwireTap(sock: NetlinkConn, pair: TapPair): void {
  for (const name of [pair.veth, pair.tap]) {
    const link = getLinkByName(sock, name);
    if (!link) continue;
    deleteIngressQdisc(sock, link.index, {
      ignoreMissing: true,
      label: link.name,
    });
  }
}

/** Whether both redirects are present and point at each other. */
export function describeWiring(
  sock: NetlinkConn,
  pair: TapPair,
): WiringState {
  const veth = getLinkByName(sock, pair.veth);
  const tap = getLinkByName(sock, pair.tap);
  const vethToTap = !!veth && !!tap && redirects(sock, veth, tap);
  const tapToVeth = !!veth && !!tap && redirects(sock, tap, veth);
  return {
    vethIndex: veth?.index ?? null,
    tapIndex: tap?.index ?? null,
    vethToTap,
    tapToVeth,
    wired: vethToTap && tapToVeth,
  };
}

/**
 * Makes `from`'s ingress redirect to `to`, recording how to undo each step.
 * Returns whether anything changed.
 */
function ensureRedirect(
  sock: NetlinkConn,
  from: Link,
  to: Link,
  undo: (() => void)[],
): boolean {
  const label = from.name;
  let changed = false;
  if (addIngressQdisc(sock, from.index, { ignoreExisting: true, label })) {
    changed = true;
    undo.push(() =>
      deleteIngressQdisc(sock, from.index, { ignoreMissing: true, label })
    );
  }
  const ours = listFilters(sock, from.index, INGRESS_PARENT, { label })
    .filter((f) => f.prio === WIRING_PRIO);
  if (ours.length === 1 && isRedirectTo(ours[0], to.index)) return changed;
  if (ours.length > 0) {
    deleteFilters(sock, from.index, { prio: WIRING_PRIO, label });
  }
  addRedirectFilter(sock, {
    ifindex: from.index,
    label,
    toIfindex: to.index,
    toLabel: to.name,
    prio: WIRING_PRIO,
  });
  undo.push(() =>
    deleteFilters(sock, from.index, { prio: WIRING_PRIO, label })
  );
  return true;
}

function redirects(sock: NetlinkConn, from: Link, to: Link): boolean {
  return listFilters(sock, from.index, INGRESS_PARENT, { label: from.name })
    .some((f) => isRedirectTo(f, to.index));
}

/** A match-all filter whose first action redirects out of `ifindex`. */
function isRedirectTo(f: FilterInfo, ifindex: number): boolean {
  const first = f.actions[0];
  return f.matchAll && first !== undefined && first.kind === "mirred" &&
    "direction" in first && first.direction === "egress" &&
    first.action === "redirect" && first.ifindex === ifindex;
}
