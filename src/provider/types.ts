/**
 * The provider's public data shapes: VM config, add specs, the NIC config
 * returned by `add`/`inspect`/`list` (stable camelCase JSON, docs/cli.md),
 * the results of the other operations, and the provider's settings.
 *
 * @module
 */
import { DEFAULT_BIN_DIRS, DEFAULT_TIMEOUT_MS } from "../cni/exec.ts";
import { DEFAULT_HOOK_TIMEOUT_MS, DEFAULT_HOOKS_DIR } from "../hooks/runner.ts";
import { DEFAULT_NETNS_DIR } from "../wiring/kernel.ts";
import type { NicState } from "../store/types.ts";
import type { EventRetention } from "../store/events.ts";
import type { NicPolicy, PolicySpec } from "./policy.ts";
import type {
  CapabilityArgs,
  CniBandwidth,
  CniDns,
  PortMapping,
} from "./capabilities.ts";

export type { NicState } from "../store/types.ts";

/** Per-VM settings that shape its NICs (the seed's `VMConfig`). */
export interface VmConfig {
  /** vCPUs: one TAP queue pair per vCPU unless a spec says otherwise. */
  cpu?: number;
  /** virtio queue size the hypervisor should use (recorded, not enforced). */
  queueSize?: number;
  /** Network (conflist name) for NICs whose spec names none. */
  network?: string;
  /**
   * `add` only: the VM is a clone of this one (restored from its
   * snapshot). Each NIC's guest keeps that VM's NIC's identity (MAC, IP,
   * gateway, routes) while the network sees the clone at its own CNI
   * address (docs/clones.md). Without specs, the clone gets every NIC of
   * that VM (same indices, networks and queue counts unless given).
   */
  cloneOf?: string;
}

/**
 * A clone NIC's guest identity given explicitly (`--guest-mac`,
 * `--guest-ip`, `--guest-gateway`). With `cloneOf`, what is given must be
 * the source NIC's, and what is not comes from it; without, `mac` and `ip`
 * are needed.
 */
export interface GuestSpec {
  /** The guest's MAC (its snapshot's). */
  mac?: string;
  /** The guest's IPv4 address with its prefix (`10.88.0.5/16`). */
  ip?: string;
  /** The guest's gateway (IPv4, inside `ip`'s subnet). */
  gateway?: string;
}

/**
 * One NIC to add. `mac`/`ips` given means recovery of an existing NIC: the
 * same MAC is set on the veth and the same IPs are re-requested from IPAM.
 */
export interface AddSpec {
  /**
   * NIC index 0–31. When absent, the spec's position among the specs of the
   * call: `add(vm, cfg, {}, {})` means "NICs 0 and 1 exist".
   */
  index?: number;
  /** Network (conflist name); the VM's or the default one when absent. */
  network?: string;
  /** TAP queue pairs; `cpu` of the VM config (or 1) when absent. */
  queues?: number;
  /** Unicast MAC to give the NIC (recovery). */
  mac?: string;
  /** IPs (`10.88.0.5` or `10.88.0.5/16`) to re-request (recovery). */
  ips?: readonly string[];
  /**
   * The NIC's policy on its TAP path (docs/policy.md): what is given
   * overrides the network's defaults in the policy file and the built-in
   * ones (anti-spoofing on, 169.254.169.254 denied).
   */
  policy?: PolicySpec;
  /** CNI `portMappings` for the portmap plugin (host port to guest port). */
  portMappings?: PortMapping[];
  /** CNI `bandwidth` for the bandwidth plugin (bits/s and bits). */
  bandwidth?: CniBandwidth;
  /** CNI `dns` for plugins that take it. */
  dns?: CniDns;
  /**
   * Make it a clone NIC whose guest has this identity (see
   * {@linkcode GuestSpec}); `mac`/`ips` stay the network side's.
   */
  guest?: GuestSpec;
}

/** One IP of a NIC, from the CNI result. */
export interface IpConfig {
  /** The address, without prefix. */
  address: string;
  /** Prefix length. */
  prefix: number;
  /** The gateway, when the result names one. */
  gateway?: string;
  /** IP version. */
  version: 4 | 6;
}

/** A route from the CNI result, for the guest. */
export interface RouteConfig {
  /** Destination CIDR. */
  dst: string;
  /** Next hop. */
  gw?: string;
}

/** DNS settings from the CNI result. */
export interface DnsConfig {
  /** Name servers. */
  nameservers?: string[];
  /** Local domain. */
  domain?: string;
  /** Search domains. */
  search?: string[];
  /** resolv.conf options. */
  options?: string[];
}

/**
 * The identity a clone NIC's guest has (its snapshot's), which its TAP
 * presents to it; the NIC's own `mac` and `ips` are what the network sees.
 */
export interface GuestIdentity {
  /** The guest's MAC. */
  mac: string;
  /** The guest's IPs (one IPv4), with prefix and gateway. */
  ips: IpConfig[];
  /** The guest's routes. */
  routes: RouteConfig[];
  /** The VM it was cloned from (`cloneOf`), when it was. */
  cloneOf?: string;
}

/** A NIC as `add`, `inspect` and `list` return it (docs/cli.md, "JSON"). */
export interface NicConfig {
  /** Stable record id (`inspect <id>`). */
  id: string;
  /** The VM. */
  vmId: string;
  /** NIC index (0–31). */
  index: number;
  /** The CNI veth inside the VM's netns (`eth<index>`). */
  ifName: string;
  /** The TAP the hypervisor opens (`tap<index>`). */
  tap: string;
  /**
   * The MAC the guest must use (the veth's). Known once the NIC is plumbed:
   * always there for `active` and `quiesced` NICs.
   */
  mac?: string;
  /** The CNI network (conflist name). */
  network: string;
  /** The VM's netns path. */
  netnsPath: string;
  /** TAP queue pairs. */
  numQueues: number;
  /** virtio queue size. */
  queueSize: number;
  /** MTU of veth and TAP; the guest's too. Known once the NIC is plumbed. */
  mtu?: number;
  /** IPs from the CNI result. */
  ips: IpConfig[];
  /** Routes from the CNI result. */
  routes: RouteConfig[];
  /** DNS settings from the CNI result. */
  dns: DnsConfig;
  /** Its policy in effect (docs/policy.md); absent for a NIC made before policies. */
  policy?: NicPolicy;
  /** The CNI capability args its ADD was given (`portMappings`, `bandwidth`, `dns`). */
  capabilityArgs?: CapabilityArgs;
  /**
   * Where the NIC is in its life cycle (docs/state-machine.md): `adding`,
   * `active`, `quiesced` (veth down while the VM is stopped), `deleting`,
   * or `failed` (CNI DEL failed; see `error`).
   */
  state: NicState;
  /** Why the NIC is `failed`. */
  error?: string;
  /**
   * A clone NIC's guest identity: what the guest has and `hv-args` and
   * `guest-config` give it (the network sees `mac` and `ips`).
   */
  guest?: GuestIdentity;
  /** ISO 8601 creation time. */
  createdAt: string;
}

/** A filter for `list`. */
export interface ListFilter {
  /** The VM. */
  vmId?: string;
  /** Only the NIC holding this address (`10.88.0.5`). */
  ip?: string;
  /** The warm pool's slots instead of VMs' NICs. */
  pool?: boolean;
}

/** A VM this install holds, with or without NICs (`vmnic vms`). */
export interface VmInfo {
  /** The VM. */
  vmId: string;
  /** Its netns path. */
  netnsPath: string;
  /** Whether that netns exists now. */
  netns: boolean;
  /** The network NICs added without one join. */
  network?: string;
  /** Stopped (`quiesce`): veths down, new NICs stay down. */
  quiesced: boolean;
  /** A delete of it was cut short; the next operation on it finishes it. */
  deleting: boolean;
  /** Its NICs' indices and states. */
  nics: { index: number; state: NicState }[];
  /** ISO 8601 time the VM was first recorded. */
  createdAt: string;
}

/** Options of `prepare`. */
export interface PrepareOptions {
  /**
   * Take over a netns of that name that exists without a record here (made
   * by hand, or by a tool vmnic does not know). Never one another vmnic
   * install made.
   */
  adopt?: boolean;
}

/** Options of `remove` and `delete`. */
export interface TeardownOptions {
  /**
   * Finish the teardown even when CNI DEL fails: the kernel state, the
   * records and the lock go; what the plugins could not release is
   * reported (as warnings).
   */
  force?: boolean;
}

/** Result of `remove`. */
export interface RemoveResult {
  /** The VM. */
  vmId: string;
  /** Indices torn down. */
  removed: number[];
  /** Indices that had no NIC (nothing to do). */
  absent: number[];
  /** Failed `afterRemove` hooks, and what `force` dropped. */
  warnings: string[];
}

/** The provider's settings; every field has the default of docs/cli.md. */
export interface ProviderConfig {
  /** Database dir (`vmnic.db`): default `/var/lib/vmnic`. */
  rootDir?: string;
  /** Locks dir: default `/run/vmnic`. */
  runDir?: string;
  /** Conflists: default `/etc/cni/net.d`. */
  cniConfDir?: string;
  /** CNI plugin search path: default `/opt/cni/bin`, `/usr/lib/cni`, `/usr/libexec/cni`. */
  cniBinDirs?: string[];
  /** Named netns dir: default `/var/run/netns`. */
  netnsDir?: string;
  /** Prefix of every netns vmnic makes; GC touches no other: default `vmnic-`. */
  netnsPrefix?: string;
  /** Executable hooks: default `/etc/vmnic/hooks.d`. */
  hooksDir?: string;
  /** Per-network policy defaults (docs/policy.md): default `/etc/vmnic/policy.json`. */
  policyFile?: string;
  /** Timeout per CNI plugin call in ms: default 60000. */
  pluginTimeoutMs?: number;
  /** Default timeout per hook in ms: default 10000. */
  hookTimeoutMs?: number;
  /** How long to wait for another process's lock on a VM, in ms: default 30000. */
  lockWaitMs?: number;
  /** Include the TS hooks compiled into vmnic (default true). */
  tsHooks?: boolean;
  /**
   * Bounds of the event log (docs/events.md): default a week and 100 000
   * events; `null` records no events.
   */
  eventRetention?: EventRetention | null;
}

/** Defaults of {@linkcode ProviderConfig}, as docs/cli.md gives them. */
export const DEFAULTS = {
  rootDir: "/var/lib/vmnic",
  runDir: "/run/vmnic",
  cniConfDir: "/etc/cni/net.d",
  cniBinDirs: DEFAULT_BIN_DIRS,
  netnsDir: DEFAULT_NETNS_DIR,
  netnsPrefix: "vmnic-",
  hooksDir: DEFAULT_HOOKS_DIR,
  policyFile: "/etc/vmnic/policy.json",
  pluginTimeoutMs: DEFAULT_TIMEOUT_MS,
  hookTimeoutMs: DEFAULT_HOOK_TIMEOUT_MS,
  lockWaitMs: 30_000,
} as const;

/** Result of `delete` (and of GC's collection): who is gone, who is not and why. */
export interface DeleteResult {
  /** VM ids fully cleaned (netns, NICs and records gone). */
  deleted: string[];
  /** VM ids not fully cleaned, each with why. */
  errors: { vmId: string; error: string }[];
  /** Cleaned VMs whose `afterRemove` hooks failed (the removal stands). */
  warnings: { vmId: string; warning: string }[];
}

/** What `verify` found of one NIC. */
export interface NicVerdict {
  /** NIC index (0–31). */
  index: number;
  /** The TAP the hypervisor opens (`tap<index>`). */
  tap: string;
  /** The CNI veth in the VM's netns (`eth<index>`). */
  ifName: string;
  /** The recorded state. */
  state: NicState;
  /** The TAP exists. */
  tapPresent: boolean;
  /** The veth exists. */
  vethPresent: boolean;
  /** Both redirects join them. */
  wired: boolean;
  /**
   * The NIC's policy in the kernel: `ok`, `mismatch` (a rule or rate
   * missing or extra: see the problems), `none` (a NIC without a recorded
   * policy, or not checked).
   */
  policy: "ok" | "mismatch" | "none";
  /** The veth has the recorded MAC. */
  macOk: boolean;
  /** The veth is up (down is right only while quiesced). */
  vethUp: boolean;
  /** Addresses on the veth, which must carry none. */
  strayAddresses: string[];
  /** The host end of the veth: present, its bridge. */
  host: {
    /** The host veth exists. */
    present: boolean;
    /** Its name. */
    name?: string;
    /** Its master device. */
    master?: string;
    /** The bridge the conflist names, when it does. */
    bridge?: string;
  };
  /** CNI CHECK: `ok`, `failed`, or `skipped` where the chain has none. */
  check: "ok" | "failed" | "skipped";
  /**
   * A clone NIC's translation (then `wired` means all of it is in place,
   * there being no redirects): its nft rules, routes, forwarding, proxy ARP.
   */
  translation?: {
    /** The NAT and filter rules of its nft tables. */
    rules: boolean;
    /** The guest's route, the NIC's table and rule. */
    routes: boolean;
    /** IPv4 forwarding on in the netns. */
    forwarding: boolean;
    /** Proxy ARP on the TAP. */
    proxyArp: boolean;
  };
}

/** Result of `verify`. */
export interface VerifyResult {
  /** The VM. */
  vmId: string;
  /** True when nothing is wrong. */
  ok: boolean;
  /** The VM's netns path. */
  netnsPath: string;
  /** Whether the netns exists. */
  netns: boolean;
  /** The VM is quiesced. */
  quiesced: boolean;
  /** Per NIC. */
  nics: NicVerdict[];
  /** What is wrong, one line each. */
  problems: string[];
}

/** Result of `recover`. */
export interface RecoverResult {
  /** The VM. */
  vmId: string;
  /** Per NIC, as it is now. */
  nics: NicConfig[];
  /** What was mended in place, per NIC. */
  repaired: { index: number; actions: string[] }[];
  /** NICs that had to be rebuilt (CNI DEL and ADD; hooks fired). */
  rebuilt: number[];
  /** NICs that could not be recovered, with why (their records are kept). */
  problems: { index: number; error: string }[];
  /** What went wrong without stopping the recovery (failed `afterRemove` hooks). */
  warnings: string[];
}
