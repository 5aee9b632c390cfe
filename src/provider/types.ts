/**
 * The provider's public data shapes: VM config, add specs, the NIC config
 * returned by `add`/`inspect`/`list` (stable camelCase JSON, DESIGN.md), and
 * the provider's settings.
 *
 * @module
 */
import { DEFAULT_BIN_DIRS, DEFAULT_TIMEOUT_MS } from "../cni/exec.ts";
import { DEFAULT_HOOK_TIMEOUT_MS, DEFAULT_HOOKS_DIR } from "../hooks/runner.ts";
import { DEFAULT_NETNS_DIR } from "../wiring/netns.ts";

/** Per-VM settings that shape its NICs (the seed's `VMConfig`). */
export interface VmConfig {
  /** vCPUs: one TAP queue pair per vCPU unless a spec says otherwise. */
  cpu?: number;
  /** virtio queue size the hypervisor should use (recorded, not enforced). */
  queueSize?: number;
  /** Network (conflist name) for NICs whose spec names none. */
  network?: string;
}

/**
 * One NIC to add. `mac`/`ips` given means recovery of an existing NIC: the
 * same MAC is set on the veth and the same IPs are re-requested from IPAM.
 */
export interface AddSpec {
  /** NIC index 0–31; the next free one when absent. */
  index?: number;
  /** Network (conflist name); the VM's or the default one when absent. */
  network?: string;
  /** TAP queue pairs; `cpu` of the VM config (or 1) when absent. */
  queues?: number;
  /** Unicast MAC to give the NIC (recovery). */
  mac?: string;
  /** IPs (`10.88.0.5` or `10.88.0.5/16`) to re-request (recovery). */
  ips?: string[];
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

/** A NIC as `add`, `inspect` and `list` return it (DESIGN.md's JSON). */
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
  /** The MAC the guest must use (the veth's). */
  mac: string;
  /** The CNI network (conflist name). */
  network: string;
  /** The VM's netns path. */
  netnsPath: string;
  /** TAP queue pairs. */
  numQueues: number;
  /** virtio queue size. */
  queueSize: number;
  /** MTU of veth and TAP; the guest's too. */
  mtu: number;
  /** IPs from the CNI result. */
  ips: IpConfig[];
  /** Routes from the CNI result. */
  routes: RouteConfig[];
  /** DNS settings from the CNI result. */
  dns: DnsConfig;
  /** ISO 8601 creation time. */
  createdAt: string;
}

/** A filter for `list`. */
export interface ListFilter {
  /** The VM. */
  vmId?: string;
}

/** The provider's settings; every field has the DESIGN.md default. */
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
  /** Timeout per CNI plugin call in ms: default 60000. */
  pluginTimeoutMs?: number;
  /** Default timeout per hook in ms: default 10000. */
  hookTimeoutMs?: number;
  /** Include the TS hooks compiled into vmnic (default true). */
  tsHooks?: boolean;
}

/** Defaults of {@linkcode ProviderConfig}, as DESIGN.md gives them. */
export const DEFAULTS = {
  rootDir: "/var/lib/vmnic",
  runDir: "/run/vmnic",
  cniConfDir: "/etc/cni/net.d",
  cniBinDirs: DEFAULT_BIN_DIRS,
  netnsDir: DEFAULT_NETNS_DIR,
  netnsPrefix: "vmnic-",
  hooksDir: DEFAULT_HOOKS_DIR,
  pluginTimeoutMs: DEFAULT_TIMEOUT_MS,
  hookTimeoutMs: DEFAULT_HOOK_TIMEOUT_MS,
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
  /** Per NIC. */
  nics: {
    /** NIC index (0–31). */
    index: number;
    /** The TAP the hypervisor opens (`tap<index>`). */
    tap: string;
    /** The CNI veth in the VM's netns (`eth<index>`). */
    ifName: string;
    tapPresent: boolean;
    vethPresent: boolean;
    wired: boolean;
  }[];
  /** What is wrong, one line each. */
  problems: string[];
}

/** Result of `recover`. */
export interface RecoverResult {
  /** The VM. */
  vmId: string;
  /** Per NIC. */
  nics: NicConfig[];
  /** NICs whose old IPs could not be had again (or failed outright). */
  problems: { index: number; error: string }[];
}
