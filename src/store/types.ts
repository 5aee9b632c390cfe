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
 * Life cycle of a NIC row (docs/state-machine.md): `adding` until its
 * plumbing is complete (a crash leaves it for the next operation to
 * finish), `active` or `quiesced` (its veth down) once complete,
 * `deleting` once a teardown has started, and `failed` when CNI DEL
 * failed: kept, with the error, until a retry or `delete --force` ends it.
 */
export type NicState = "adding" | "active" | "quiesced" | "deleting" | "failed";

/** Every {@linkcode NicState}. */
export const NIC_STATES: readonly NicState[] = [
  "adding",
  "active",
  "quiesced",
  "deleting",
  "failed",
];

/** One VM this install made a netns for. */
export interface VmRecord {
  /** The VM id. */
  vmId: string;
  /** Its netns path. */
  netnsPath: string;
  /** The network NICs added without one join (the first NIC's). */
  network: string | null;
  /** Stopped: its veths are down, and NICs added now stay down. */
  quiesced: boolean;
  /** A delete has begun: what is left of the VM is finished, never revived. */
  deleting: boolean;
  /** A warm pool slot's pool (`network/queues`); null for a VM. */
  slot?: string | null;
  /** The VM a slot is being handed to (a claim in progress); null otherwise. */
  claimVm?: string | null;
  /** ISO 8601 time the record was made. */
  createdAt: string;
}

/**
 * The identity a clone NIC's guest has: its snapshot's, which the TAP
 * presents to it while the network sees the NIC's own (docs/clones.md).
 */
export interface GuestRecord {
  /** The guest's MAC (the snapshot's; not unique on the host). */
  mac: string;
  /** The guest's IPs (one IPv4), with prefix and gateway. */
  ips: IpRecord[];
  /** The guest's routes (`dst`, next hop). */
  routes: { dst: string; gw?: string }[];
  /** The VM whose NIC it was copied from (`--clone-of`), when it was. */
  cloneOf?: string;
}

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
  /** Where the NIC is in its life cycle. */
  state: NicState;
  /**
   * Why it is `failed` (the CNI DEL error); for an `adding` NIC, that
   * `recover` holds it for a rebuild (a crashed add's has none); null
   * otherwise.
   */
  error: string | null;
  /** Its `afterAdd` hooks ran, so its removal is announced too. */
  announced?: boolean;
  /**
   * A clone NIC's guest identity (the guest's MAC, IP and routes, its
   * snapshot's); null or absent for a NIC whose guest uses `mac`/`ips`.
   */
  guest?: GuestRecord | null;
  /**
   * The NIC's policy on its TAP path (docs/policy.md): what was asked for
   * and what is in effect, as JSON the provider gives its shape; null or
   * absent for a NIC made before policies (its redirects pass everything).
   */
  policy?: Record<string, unknown> | null;
  /**
   * The CNI capability args its ADD was given (`portMappings`,
   * `bandwidth`, `dns`): DEL and CHECK get them again. Null or absent: none.
   */
  capabilityArgs?: Record<string, unknown> | null;
  /** ISO 8601 creation time. */
  createdAt: string;
}

/** A fresh random NIC id: 16 lowercase hex characters. */
export function newNicId(): string {
  return randomHex(8);
}

/** A fresh install id: 8 lowercase hex characters. */
export function newInstallId(): string {
  return randomHex(4);
}

/** `bytes` random bytes as lowercase hex. */
export function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
