/**
 * The record vmnic keeps per NIC, as the store hands it out.
 *
 * @module
 */

/** One IP address of a NIC, from the CNI result. */
export interface IpRecord {
  /** The address without prefix, e.g. `"10.88.0.5"`. */
  address: string;
  /** The prefix length, e.g. `16`. */
  prefix: number;
  /** The gateway, when the CNI result names one. */
  gateway?: string;
  /** IP version. */
  version: 4 | 6;
}

/**
 * Life cycle of a NIC row: `adding` until its plumbing is complete (a crash
 * leaves it for the next delete/gc to tear down), `deleting` once a teardown
 * has started.
 */
export type NicState = "adding" | "active" | "deleting";

/** One NIC of one VM, keyed by `(vmId, index)`. */
export interface NicRecord {
  /** Random id, unique over all NICs (see {@linkcode newNicId}). */
  id: string;
  /** The VM the NIC belongs to. */
  vmId: string;
  /** The NIC's index within the VM (0, 1, …). */
  index: number;
  /** The CNI interface name inside the VM's netns, e.g. `"eth0"`. */
  ifName: string;
  /** The TAP device the hypervisor opens, e.g. `"tap0"`. */
  tap: string;
  /** The MAC address the guest uses (the veth's). */
  mac: string;
  /** The CNI network (conflist name). */
  network: string;
  /** The VM's netns path. */
  netnsPath: string;
  /** TAP queue pairs. */
  numQueues: number;
  /** virtio-net queue size. */
  queueSize: number;
  /** MTU of veth and TAP. */
  mtu: number;
  /** IPs the CNI result assigned. */
  ips: IpRecord[];
  /** DNS settings from the CNI result. */
  dns: Record<string, unknown>;
  /** The CNI result as the plugin chain returned it (needed for DEL). */
  cniResult: unknown;
  /** The exact conflist JSON text used for ADD (DEL must use the same). */
  cniConfig: string;
  /** The CNI container id used for ADD. */
  containerId: string;
  /** `deleting` once a teardown has started. */
  state: NicState;
  /** ISO 8601 creation time. */
  createdAt: string;
}

/** A fresh random NIC id: 16 lowercase hex characters. */
export function newNicId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
