/**
 * The kernel as the provider sees it: named network namespaces, and work
 * inside one of them (or in vmnic's own, the "host" side of each NIC) over
 * an rtnetlink connection plus TAP creation. {@linkcode hostKernel} is the
 * real one; the provider takes another through its open options, which is
 * how its state machine is tested without root (`tests/support/`).
 *
 * The rules of docs/architecture.md ("Kernel access") hold for every
 * implementation: work inside a netns is synchronous, no await, no spawn.
 *
 * @module
 */
import {
  deleteNetns,
  ensureNetns,
  listNetns,
  netnsDirPropagates,
  netnsExists,
  releaseNetnsDir,
  renameNetns,
  withNetns,
} from "../kernel/netns.ts";
import { createTap, type TapOptions } from "../kernel/tuntap.ts";
import type { NetlinkConn } from "../netlink/conn.ts";
import { NetlinkSocket } from "../netlink/socket.ts";
import { readSysctl, writeSysctl } from "../kernel/sysctl.ts";
import {
  nftUnavailable,
  runNft,
  type RunNftOptions,
} from "../sys/libnftables.ts";

export type { TapOptions } from "../kernel/tuntap.ts";
export {
  DEFAULT_NETNS_DIR,
  netnsPath,
  validateNetnsName,
} from "../kernel/netns.ts";
export { checkTunDevice } from "../kernel/tuntap.ts";
export { InvalidArgumentError, KernelError } from "../sys/errors.ts";

/**
 * The netns's own IP stack beyond rtnetlink: nftables and sysctls, which
 * clone NICs need (docs/datapath.md, "Clone NICs").
 */
export interface NetnsStack {
  /** Why nftables cannot be used (libnftables missing), or null. */
  unavailable(): string | null;
  /**
   * Runs one nft batch (one transaction) in this netns and returns what it
   * printed; throws `NftError` with libnftables' message.
   */
  nft(commands: string, opts?: RunNftOptions): string;
  /** A sysctl of this netns (path parts under /proc/sys); null if absent. */
  readSysctl(key: readonly string[]): string | null;
  /** Sets a sysctl of this netns. */
  writeSysctl(key: readonly string[], value: string): void;
}

/** What work inside one network namespace can use. */
export interface NetnsScope {
  /** An rtnetlink connection bound to this netns. */
  readonly conn: NetlinkConn;
  /** Creates a persistent TAP device in this netns. */
  createTap(opts: TapOptions): void;
  /**
   * nftables and sysctls of this netns; absent where the kernel seam has
   * none (then clone NICs are refused before anything changes).
   */
  readonly stack?: NetnsStack;
}

/** Named network namespaces and the work done inside them. */
export interface Kernel {
  /** Creates the named netns unless it exists; says whether it made it. */
  ensureNetns(name: string, dir: string): { path: string; created: boolean };
  /** Deletes the named netns (a leftover empty file too); false when absent. */
  deleteNetns(name: string, dir: string): boolean;
  /** Gives the named netns `from` the name `to` (same namespace, new name). */
  renameNetns(from: string, to: string, dir: string): void;
  /** True when a network namespace is mounted at `dir/name`. */
  netnsExists(name: string, dir: string): boolean;
  /** Names in `dir` with a netns mounted; with `stale`, empty leftovers too. */
  listNetns(dir: string, opts?: { stale?: boolean }): string[];
  /** Whether netns mounts made in `dir` outlive this process. */
  netnsDirPropagates(dir: string): { ok: boolean; reason?: string };
  /**
   * Undoes what making `dir` a shared mount did, once it holds no netns
   * (a custom netns dir must not keep a bind mount behind).
   */
  releaseNetnsDir(dir: string): void;
  /** Runs `fn` synchronously inside the netns at `path`. */
  inNetns<T>(path: string, fn: (scope: NetnsScope) => T): T;
  /** Runs `fn` in vmnic's own netns, where the host ends of the NICs are. */
  inHost<T>(fn: (scope: NetnsScope) => T): T;
}

/** The real kernel: FFI into libc and rtnetlink. */
export const hostKernel: Kernel = {
  ensureNetns,
  deleteNetns,
  renameNetns,
  netnsExists,
  listNetns,
  netnsDirPropagates,
  releaseNetnsDir,
  inNetns: (path, fn) => withNetns(path, () => withSocket(fn)),
  inHost: (fn) => withSocket(fn),
};

/** The real netns stack: libnftables and /proc/sys of the thread's netns. */
const hostStack: NetnsStack = {
  unavailable: nftUnavailable,
  nft: runNft,
  readSysctl,
  writeSysctl,
};

/** One socket opened in the thread's current netns for the whole of `fn`. */
function withSocket<T>(fn: (scope: NetnsScope) => T): T {
  const conn = NetlinkSocket.open();
  try {
    return fn({ conn, createTap, stack: hostStack });
  } finally {
    conn.close();
  }
}
