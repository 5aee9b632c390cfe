/**
 * The watcher (docs/watcher.md): what `vmnic serve` runs beside its API to
 * see what breaks under running VMs and react, each reaction `off`,
 * `report` or `repair`, each recorded as an event.
 *
 * - **carrier**: a TAP losing its carrier means its hypervisor closed it
 *   (stopped, crashed). Once no TAP of the VM has carrier, the VM is
 *   quiesced (quiesce is per VM: its veths go down, so nothing redirects
 *   into TAPs nobody reads); a TAP getting carrier back on a quiesced VM
 *   (a hypervisor opened it: the VM starts) unquiesces it.
 * - **netns**: the VM's netns, a TAP, a veth or the redirects between them
 *   gone under a recorded NIC. Repair is `recover`.
 * - **host**: a NIC's host veth off its bridge, or the bridge gone. Repair
 *   is `recover` (it puts the veth back, or rebuilds the NIC when the
 *   bridge is gone so the plugin makes it again).
 *
 * How it sees: one NETLINK_ROUTE socket in vmnic's own netns, in the link,
 * traffic-control and netns-id groups, with NETLINK_LISTEN_ALL_NSID: it
 * hears every VM netns that has an id here (each VM's is given one), so no
 * socket sits inside a VM's netns. That matters: a socket holds its netns
 * alive, and with it the TAP and veth in it, after the netns is deleted
 * (by `vmnic delete` or by hand). The socket is waited on with `poll(2)` on
 * a worker thread, so the event loop never blocks, and idles at no cost.
 * A netns removed by hand is seen three ways, as none is enough alone:
 * the netns dir is watched (inotify: the mount's file goes with `ip netns
 * del`), a netns that dies drops its id (RTM_DELNSID), and a sweep every
 * `sweepMs` compares the records with what is mounted (a mount undone
 * without removing its file, a dir that did not exist at start, lost
 * notifications) and picks up VMs added by other processes.
 *
 * How it acts: never on a notification alone. A notification marks the
 * VM; after `settleMs` the VM is checked with `verify`, which takes the
 * VM's lock (with a short wait): an operation in progress (vmnic's own
 * quiesce, recover or delete, or another process's) makes the VM busy, and
 * the check is retried later, never fought. What is broken once the lock
 * is free is what gets reported or repaired, through the provider's
 * operations, which take the lock again. A VM being deleted is never
 * acted on. The carrier reaction is edge-triggered and debounced: only a
 * change of a TAP's carrier starts it, and it acts on the state `settleMs`
 * later (a hypervisor restarting within that is no event). vmnic's own
 * changes do not flap a TAP's carrier (quiesce sets only the veths down).
 *
 * @module
 */
import { RtnlGroup } from "../netlink/constants.ts";
import { NetlinkMonitor, type Notification } from "../netlink/monitor.ts";
import { NetlinkSocket } from "../netlink/socket.ts";
import { sleep } from "../sys/timers.ts";
import { getLinkByIndex, getLinkByName } from "../kernel/link.ts";
import { netnsId } from "../kernel/nsid.ts";
import { pollReadable, Wakeup } from "../sys/poll.ts";
import type { CniProvider } from "../provider/provider.ts";
import {
  NotFoundError,
  OperationError,
  reasonOf,
  VmBusyError,
  VmnicError,
} from "../provider/errors.ts";
import type { EventRecord } from "../store/events.ts";
import type {
  NicConfig,
  NicState,
  NicVerdict,
  VerifyResult,
  VmInfo,
} from "../provider/types.ts";
import {
  decodeKernelEvent,
  type KernelEvent,
  type LinkEvent,
  readLink,
} from "./kernel_events.ts";

/** What the watcher does about one kind of trouble. */
export type ReactionMode = "off" | "report" | "repair";

/** The modes, in the order of the flags' help. */
export const REACTION_MODES: readonly ReactionMode[] = [
  "off",
  "report",
  "repair",
];

/** Settings of {@linkcode startWatcher}. */
export interface WatcherOptions {
  /** TAP carrier lost / back: quiesce / unquiesce the VM. Default `repair`. */
  carrier?: ReactionMode;
  /** The VM's netns, a TAP, veth or redirect gone. Default `report`. */
  netns?: ReactionMode;
  /** A host veth off its bridge, or the bridge gone. Default `report`. */
  host?: ReactionMode;
  /** How long a VM settles after a notification before it is looked at (ms). */
  settleMs?: number;
  /** How often the records are compared with the host (ms). */
  sweepMs?: number;
  /** How long a check or reaction waits for a busy VM's lock (ms). */
  lockWaitMs?: number;
  /** Longest pause before a busy VM is tried again (ms). */
  maxRetryMs?: number;
  /** Repairs tried on one unchanged breakage before giving up on it. */
  repairAttempts?: number;
  /** Where the watcher tells what it does (one line each). */
  log?: (line: string) => void;
}

/** The defaults of {@linkcode WatcherOptions} (docs/watcher.md, "Defaults"). */
export const WATCHER_DEFAULTS = {
  carrier: "repair",
  netns: "report",
  host: "report",
  settleMs: 500,
  sweepMs: 30_000,
  lockWaitMs: 200,
  maxRetryMs: 5_000,
  repairAttempts: 3,
} as const satisfies Required<Omit<WatcherOptions, "log">>;

/** What a reaction was about. */
export type ReactionKind = "carrier-lost" | "carrier-back" | "netns" | "host";
/** How a reaction ended. */
export type ReactionOutcome = "reported" | "repaired" | "failed";

/**
 * The watcher's counters, for metrics (read them; never reset). A reaction
 * that concerns both the netns and the host side counts under both kinds.
 */
export interface WatcherCounters {
  /** Reactions by kind and outcome (each also recorded as an event). */
  reactions: Record<ReactionKind, Record<ReactionOutcome, number>>;
  /** VMs looked at (`verify` under the VM's lock). */
  checks: number;
  /** Checks and reactions put off because the VM was busy. */
  busy: number;
  /** Times something broken was left alone because the VM is being deleted. */
  skippedDeleting: number;
  /** Kernel notifications received. */
  notifications: number;
  /** Times the kernel dropped notifications (every VM was looked at again). */
  overruns: number;
}

/** The watcher as `GET /v1/health` shows it. */
export interface WatcherStatus {
  /** It listens (false: every reaction is off, or it stopped). */
  running: boolean;
  /** The carrier reaction. */
  carrier: ReactionMode;
  /** The netns reaction. */
  netns: ReactionMode;
  /** The host reaction. */
  host: ReactionMode;
  /** VMs watched. */
  vms: number;
  /** NICs watched. */
  nics: number;
  /** The counters. */
  counters: WatcherCounters;
}

/**
 * What the watcher saw, recorded as the error of a `watch:report` event
 * (op `watch:report`, object the VM).
 */
export class WatchFinding extends VmnicError {
  /** Builds the finding. */
  constructor(vmId: string, reason: string) {
    super("watch:report", vmId, reason);
    this.name = "WatchFinding";
  }
}

/** A repair (`recover`) that left problems (op `watch:repair`). */
export class RepairIncompleteError extends OperationError {
  /** Builds the error. */
  constructor(vmId: string, reason: string) {
    super("watch:repair", vmId, reason);
    this.name = "RepairIncompleteError";
  }
}

/** A running watcher; {@linkcode Watcher.stop} it. */
export interface Watcher {
  /** The counters (live). */
  readonly counters: WatcherCounters;
  /** What it watches and has done. */
  status(): WatcherStatus;
  /**
   * Stops listening; waits for a reaction in progress to end (none starts
   * after this is called). Idempotent.
   */
  stop(): Promise<void>;
}

type Timer = ReturnType<typeof setTimeout>;

/** Checks and reactions run at the same time at most (one per VM). */
const MAX_PARALLEL = 2;
/** First pause before a busy VM is tried again (doubled each time). */
const FIRST_RETRY_MS = 250;
/** Pause after a failed poll or receive, so a broken socket cannot spin. */
const ERROR_PAUSE_MS = 200;
/** Events of these operations change nothing the watcher keeps. */
const QUIET_OPS = new Set(["quiesce", "unquiesce", "verify"]);

/**
 * Starts watching every VM of `provider` (and those added later). With
 * every reaction `off` nothing is opened and nothing happens.
 *
 * @throws {KernelError} when the netlink socket cannot be opened or set up.
 */
export async function startWatcher(
  provider: CniProvider,
  opts: WatcherOptions = {},
): Promise<Watcher> {
  const w = new VmWatcher(provider, opts);
  await w.start();
  return w;
}

/** One NIC as the watcher knows it. */
interface WatchedNic {
  index: number;
  tap: string;
  veth: string;
  /** Recorded `active` or `quiesced`. */
  live: boolean;
  /** Its host veth's name (kept from when it was last seen). */
  hostVeth?: string;
  /** The bridge its conflist names. */
  bridge?: string;
  /** The TAP's carrier while it is up; null: unknown, or the TAP is down. */
  carrier: boolean | null;
}

/** One VM as the watcher knows it. */
interface WatchedVm {
  vmId: string;
  /** Its netns's id here, while known. */
  nsid: number | null;
  nics: WatchedNic[];
  /** The tail of its work (one check or reaction at a time). */
  chain: Promise<void>;
  checkTimer?: Timer;
  refreshTimer?: Timer;
  checkRetries: number;
  carrierTimer?: Timer;
  carrierRetries: number;
  /** The NIC whose TAP's carrier changed last. */
  carrierNic?: number;
  /** The findings last reported (not reported again while unchanged). */
  reported?: string;
  /** The findings last repaired, and how many repairs of them failed. */
  repairing?: string;
  repairFailures: number;
  /** Its netns was seen gone but held alive once (looked at again). */
  heldOnce: boolean;
  forgotten: boolean;
}

/** A finding of a check. */
interface Finding {
  kind: "netns" | "host";
  /** The NIC, or null for the VM. */
  index: number | null;
  text: string;
  /** Repairing it now would do harm (see its text). */
  noRepair?: boolean;
}

function newCounters(): WatcherCounters {
  const outcomes = () => ({ reported: 0, repaired: 0, failed: 0 });
  return {
    reactions: {
      "carrier-lost": outcomes(),
      "carrier-back": outcomes(),
      netns: outcomes(),
      host: outcomes(),
    },
    checks: 0,
    busy: 0,
    skippedDeleting: 0,
    notifications: 0,
    overruns: 0,
  };
}

class VmWatcher implements Watcher {
  readonly counters: WatcherCounters = newCounters();
  readonly #provider: CniProvider;
  /** The provider whose lock waits are short. */
  readonly #quick: CniProvider;
  readonly #modes: Record<"carrier" | "netns" | "host", ReactionMode>;
  readonly #o: Required<Omit<WatcherOptions, "log">>;
  readonly #log: (line: string) => void;
  readonly #vms = new Map<string, WatchedVm>();
  readonly #byNsid = new Map<number, WatchedVm>();
  readonly #hostVeths = new Map<string, WatchedVm>();
  readonly #bridgeUsers = new Map<string, Set<WatchedVm>>();
  readonly #bridgeIndex = new Map<string, number | null>();
  readonly #limit = new Limit(MAX_PARALLEL);
  /** Work queued or running (checks, reactions, discoveries). */
  readonly #pending = new Set<Promise<unknown>>();
  #monitor?: NetlinkMonitor;
  #host?: NetlinkSocket;
  #wake?: Wakeup;
  #selfNsid: number | null = null;
  #loop?: Promise<void>;
  #fsWatcher?: Deno.FsWatcher;
  #sweepTimer?: Timer;
  #discoverTimer?: Timer;
  #unsubscribe?: () => void;
  #running = false;
  #stopped = false;

  constructor(provider: CniProvider, opts: WatcherOptions) {
    this.#o = { ...WATCHER_DEFAULTS, ...withoutUndefined(opts) };
    delete (this.#o as { log?: unknown }).log;
    for (const key of ["carrier", "netns", "host"] as const) {
      if (!REACTION_MODES.includes(this.#o[key])) {
        throw new OperationError(
          "watch",
          key,
          `unknown reaction ${JSON.stringify(this.#o[key])}: ${
            REACTION_MODES.join(", ")
          }`,
        );
      }
    }
    this.#modes = {
      carrier: this.#o.carrier,
      netns: this.#o.netns,
      host: this.#o.host,
    };
    this.#provider = provider;
    this.#quick = provider.withLockWait(this.#o.lockWaitMs);
    this.#log = opts.log ?? (() => {});
  }

  async start(): Promise<void> {
    if (Object.values(this.#modes).every((m) => m === "off")) return;
    this.#monitor = NetlinkMonitor.open({
      groups: [
        RtnlGroup.RTNLGRP_LINK,
        RtnlGroup.RTNLGRP_TC,
        RtnlGroup.RTNLGRP_NSID,
      ],
      allNsid: true,
    });
    try {
      this.#host = NetlinkSocket.open();
      this.#wake = Wakeup.open();
      try {
        this.#selfNsid = netnsId(this.#host, "/proc/self/ns/net");
      } catch { /* no id of its own: notifications from here carry none */ }
    } catch (e) {
      this.#close();
      throw e;
    }
    this.#running = true;
    // Listening before anything is read: no change falls in between.
    this.#loop = this.#listen();
    try {
      this.#unsubscribe = this.#provider.onEvent((e) =>
        this.#onProviderEvent(e)
      );
      this.#watchNetnsDir();
      const fresh = await this.#discover();
      await Promise.all(
        fresh.map((vm) => this.#enqueue(vm, () => this.#check(vm))),
      );
    } catch (e) {
      await this.stop();
      throw e;
    }
    this.#sweepTimer = setInterval(() => this.#sweep(), this.#o.sweepMs);
    this.#log(
      `vmnic watch: carrier ${this.#modes.carrier}, netns ${this.#modes.netns}, ` +
        `host ${this.#modes.host}; ${this.#vms.size} VM(s)`,
    );
  }

  status(): WatcherStatus {
    return {
      running: this.#running,
      ...this.#modes,
      vms: this.#vms.size,
      nics: [...this.#vms.values()].reduce((n, vm) => n + vm.nics.length, 0),
      counters: structuredClone(this.counters),
    };
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#running = false;
    this.#unsubscribe?.();
    clearInterval(this.#sweepTimer);
    clearTimeout(this.#discoverTimer);
    for (const vm of this.#vms.values()) {
      clearTimeout(vm.checkTimer);
      clearTimeout(vm.refreshTimer);
      clearTimeout(vm.carrierTimer);
    }
    this.#fsWatcher?.close();
    this.#wake?.wake();
    await this.#loop;
    // What runs ends (a repair in progress is not cut short).
    while (this.#pending.size) await Promise.all([...this.#pending]);
    this.#close();
  }

  #close(): void {
    this.#monitor?.close();
    this.#host?.close();
    this.#wake?.close();
  }

  // ------------------------------------------------------------ hearing

  /** The poll loop: waits off the main thread, handles what queued. */
  async #listen(): Promise<void> {
    const monitor = this.#monitor!;
    const wake = this.#wake!;
    while (!this.#stopped) {
      let ready: Map<number, number>;
      try {
        ready = await pollReadable([monitor.fd, wake.fd], -1);
      } catch (e) {
        this.#log(`vmnic watch: poll: ${reasonOf(e)}`);
        await sleep(ERROR_PAUSE_MS);
        continue;
      }
      if (this.#stopped) break;
      if (ready.has(wake.fd)) wake.drain();
      if (!ready.has(monitor.fd)) {
        if (!ready.size) await sleep(ERROR_PAUSE_MS); // interrupted
        continue;
      }
      try {
        for (let more = true; more && !this.#stopped;) {
          const got = monitor.drain();
          more = got.more;
          this.counters.notifications += got.notifications.length;
          if (got.overrun) this.#overrun();
          for (const n of got.notifications) {
            try {
              this.#onNotification(n);
            } catch (e) {
              // One message the decoder refuses costs only itself.
              this.#log(`vmnic watch: a notification: ${reasonOf(e)}`);
            }
          }
        }
      } catch (e) {
        this.#log(`vmnic watch: receive: ${reasonOf(e)}`);
        await sleep(ERROR_PAUSE_MS);
      }
    }
  }

  #onNotification(n: Notification): void {
    const ev = decodeKernelEvent(n.message);
    if (!ev) return;
    if (n.nsid === null || n.nsid === this.#selfNsid) this.#onHostEvent(ev);
    else {
      const vm = this.#byNsid.get(n.nsid);
      if (vm) this.#onVmEvent(vm, ev);
    }
  }

  /** In vmnic's own netns: host veths, bridges, netns ids. */
  #onHostEvent(ev: KernelEvent): void {
    if (ev.kind === "nsid") {
      const vm = ev.deleted ? this.#byNsid.get(ev.nsid) : undefined;
      if (!vm) return;
      // Its netns died: the id may be given to another one now.
      this.#byNsid.delete(ev.nsid);
      vm.nsid = null;
      this.#scheduleCheck(vm);
      return;
    }
    if (ev.kind !== "link") return;
    const vm = this.#hostVeths.get(ev.name);
    if (vm) {
      const nic = vm.nics.find((n) => n.hostVeth === ev.name);
      // Gone, or left its bridge (an AF_BRIDGE DELLINK), or on another
      // master (a link down or up keeps its master: no check).
      if (
        ev.deleted ||
        (!ev.bridgePort && nic?.bridge &&
          ev.master !== this.#bridgeIndexOf(nic.bridge))
      ) this.#scheduleCheck(vm);
    }
    const users = this.#bridgeUsers.get(ev.name);
    if (users && !ev.bridgePort) {
      this.#bridgeIndex.set(ev.name, ev.deleted ? null : ev.index);
      if (ev.deleted) { for (const u of users) this.#scheduleCheck(u); }
    }
  }

  /** In a VM's netns: its TAPs and veths, their redirects. */
  #onVmEvent(vm: WatchedVm, ev: KernelEvent): void {
    if (ev.kind === "tc") {
      if (ev.deleted) this.#scheduleCheck(vm);
      return;
    }
    if (ev.kind !== "link" || ev.bridgePort) return;
    const nic = vm.nics.find((n) => n.tap === ev.name || n.veth === ev.name);
    if (!nic) return;
    if (ev.deleted) {
      if (nic.tap === ev.name) nic.carrier = null;
      this.#scheduleCheck(vm);
      return;
    }
    if (nic.tap === ev.name) this.#carrierSeen(vm, nic, ev);
  }

  /** A TAP's state: an edge of its carrier starts the carrier reaction. */
  #carrierSeen(vm: WatchedVm, nic: WatchedNic, ev: LinkEvent): void {
    // A down TAP reports no carrier changes: its carrier means nothing.
    const now = ev.up ? ev.carrier ?? null : null;
    const before = nic.carrier;
    nic.carrier = now;
    if (before === null || now === null || before === now) return;
    vm.carrierNic = nic.index;
    vm.carrierRetries = 0;
    this.#scheduleCarrier(vm, this.#o.settleMs);
  }

  /** The kernel dropped notifications: read every VM afresh. */
  #overrun(): void {
    this.counters.overruns++;
    this.#log("vmnic watch: notifications were dropped: looking at every VM");
    for (const vm of this.#vms.values()) {
      for (const nic of vm.nics) {
        const before = nic.carrier;
        nic.carrier = null;
        this.#snapshotCarrier(vm, nic);
        if (before !== null && nic.carrier !== null && before !== nic.carrier) {
          vm.carrierNic = nic.index;
          this.#scheduleCarrier(vm, this.#o.settleMs);
        }
      }
      this.#scheduleCheck(vm);
    }
  }

  #onProviderEvent(e: EventRecord): void {
    if (this.#stopped || e.vmId === null) return;
    if (e.op.startsWith("watch:") || e.op.startsWith("pool")) return;
    if (QUIET_OPS.has(e.op)) return;
    const vm = this.#vms.get(e.vmId);
    // What vmnic itself did is read from the records, without the VM's
    // lock (the next operation on it is not held up); a VM that went is
    // forgotten, one that came is taken in.
    if (vm && e.op !== "delete" && e.op !== "gc") this.#scheduleRefresh(vm);
    else this.#scheduleDiscover();
  }

  /**
   * The netns dir, where `ip netns del` removes a mount's file (and `add`
   * makes one). Absent at start: looked for again at each sweep.
   */
  #watchNetnsDir(): void {
    if (this.#fsWatcher || this.#stopped) return;
    const { netnsDir, netnsPrefix } = this.#provider.config;
    let fsw: Deno.FsWatcher;
    try {
      fsw = Deno.watchFs(netnsDir, { recursive: false });
    } catch {
      return;
    }
    this.#fsWatcher = fsw;
    (async () => {
      try {
        for await (const ev of fsw) {
          for (const path of ev.paths) {
            const name = path.slice(path.lastIndexOf("/") + 1);
            if (!name.startsWith(netnsPrefix)) continue;
            const vm = this.#vms.get(name.slice(netnsPrefix.length));
            if (vm) this.#scheduleCheck(vm);
            else if (ev.kind === "create") this.#scheduleDiscover();
          }
        }
      } catch { /* closed, or the dir went: the sweep looks again */ }
      if (this.#fsWatcher === fsw) this.#fsWatcher = undefined;
    })();
  }

  #sweep(): void {
    if (this.#stopped) return;
    this.#watchNetnsDir();
    this.#discoverAndRead();
  }

  /** Discovers, then reads in the VMs new to the watcher. */
  #discoverAndRead(): void {
    const p = this.#discover().then((fresh) => {
      for (const vm of fresh) this.#scheduleRefresh(vm, 0);
    });
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  // ------------------------------------------------------------ the VMs

  #scheduleDiscover(): void {
    if (this.#discoverTimer !== undefined || this.#stopped) return;
    this.#discoverTimer = setTimeout(() => {
      this.#discoverTimer = undefined;
      this.#discoverAndRead();
    }, this.#o.settleMs);
  }

  /**
   * Compares the records with what is watched: VMs new to it are added
   * (and returned, to be read in), VMs gone are forgotten, and VMs whose
   * netns is not mounted are checked.
   */
  async #discover(): Promise<WatchedVm[]> {
    let list: VmInfo[];
    try {
      list = await this.#provider.vms();
    } catch (e) {
      this.#log(`vmnic watch: reading the records: ${reasonOf(e)}`);
      return [];
    }
    if (this.#stopped) return [];
    const fresh: WatchedVm[] = [];
    const listed = new Set<string>();
    for (const info of list) {
      listed.add(info.vmId);
      const known = this.#vms.get(info.vmId);
      if (!known) {
        const vm: WatchedVm = {
          vmId: info.vmId,
          nsid: null,
          nics: [],
          chain: Promise.resolve(),
          checkRetries: 0,
          carrierRetries: 0,
          repairFailures: 0,
          heldOnce: false,
          forgotten: false,
        };
        this.#vms.set(info.vmId, vm);
        fresh.push(vm);
      } else if (!info.netns) this.#scheduleCheck(known, 0);
    }
    for (const vm of this.#vms.values()) {
      if (!listed.has(vm.vmId)) this.#forget(vm);
    }
    return fresh;
  }

  #forget(vm: WatchedVm): void {
    vm.forgotten = true;
    clearTimeout(vm.checkTimer);
    clearTimeout(vm.refreshTimer);
    clearTimeout(vm.carrierTimer);
    if (this.#vms.get(vm.vmId) === vm) this.#vms.delete(vm.vmId);
    if (vm.nsid !== null && this.#byNsid.get(vm.nsid) === vm) {
      this.#byNsid.delete(vm.nsid);
    }
    this.#unmapHost(vm);
  }

  /** Runs `task` after the VM's earlier work, a few VMs at a time. */
  #enqueue(vm: WatchedVm, task: () => Promise<void>): Promise<void> {
    // Asked again once a slot is free: nothing starts after stop().
    const live = () => !this.#stopped && !vm.forgotten;
    const chain = vm.chain.then(() =>
      live()
        ? this.#limit.run(() => live() ? task() : Promise.resolve())
        : undefined
    ).catch((e) => this.#log(`vmnic watch: ${vm.vmId}: ${reasonOf(e)}`));
    vm.chain = chain;
    this.#pending.add(chain);
    void chain.finally(() => this.#pending.delete(chain));
    return chain;
  }

  #scheduleCheck(vm: WatchedVm, delay = this.#o.settleMs): void {
    if (vm.checkTimer !== undefined || this.#stopped || vm.forgotten) return;
    vm.checkTimer = setTimeout(() => {
      vm.checkTimer = undefined;
      void this.#enqueue(vm, () => this.#check(vm));
    }, delay);
  }

  #scheduleRefresh(vm: WatchedVm, delay = this.#o.settleMs): void {
    if (vm.refreshTimer !== undefined || this.#stopped || vm.forgotten) {
      return;
    }
    vm.refreshTimer = setTimeout(() => {
      vm.refreshTimer = undefined;
      void this.#enqueue(vm, () => this.#refreshFromRecords(vm));
    }, delay);
  }

  #scheduleCarrier(vm: WatchedVm, delay: number): void {
    if (this.#stopped || vm.forgotten) return;
    // Debounced: acts on the state once the edges stop.
    clearTimeout(vm.carrierTimer);
    vm.carrierTimer = setTimeout(() => {
      vm.carrierTimer = undefined;
      void this.#enqueue(vm, () => this.#carrierCheck(vm));
    }, delay);
  }

  #retryDelay(retries: number): number {
    return Math.min(this.#o.maxRetryMs, FIRST_RETRY_MS * 2 ** retries);
  }

  // ------------------------------------------------------------ checks

  /** Looks at the VM under its lock; reports or repairs what is broken. */
  async #check(vm: WatchedVm): Promise<void> {
    this.counters.checks++;
    let v: VerifyResult;
    try {
      v = await this.#quick.verify(vm.vmId, { check: false });
    } catch (e) {
      if (e instanceof NotFoundError) return this.#forget(vm);
      if (e instanceof VmBusyError) this.counters.busy++;
      else this.#log(`vmnic watch: ${vm.vmId}: verify: ${reasonOf(e)}`);
      this.#scheduleCheck(vm, this.#retryDelay(vm.checkRetries++));
      return;
    }
    vm.checkRetries = 0;
    this.#refresh(vm, v);
    if (v.nics.some((n) => n.state === "deleting")) {
      // Being deleted (or a delete or remove was cut short): never
      // touched; the next operation on it finishes the teardown.
      this.counters.skippedDeleting++;
      return;
    }
    const findings = this.#findings(v).filter((f) =>
      this.#modes[f.kind] !== "off"
    );
    if (!findings.length) {
      vm.heldOnce = false;
      vm.reported = undefined;
      vm.repairing = undefined;
      vm.repairFailures = 0;
      return;
    }
    if (findings.some((f) => f.noRepair) && !vm.heldOnce) {
      // A netns deleted by hand dies a moment later when nothing holds it
      // (its id goes then): look again before telling it lives on.
      vm.heldOnce = true;
      this.#scheduleCheck(vm, 2 * this.#o.settleMs);
      return;
    }
    vm.heldOnce = findings.some((f) => f.noRepair);
    const state = await this.#vmState(vm.vmId);
    if (!state.nics) return;
    if (state.deleting) {
      // Marked since it was looked at: left alone all the same.
      this.counters.skippedDeleting++;
      return;
    }
    const text = findings.map((f) => f.text).join("; ");
    const index = oneIndex(findings);
    const kinds = [...new Set(findings.map((f) => f.kind))];
    if (vm.reported !== text) {
      vm.reported = text;
      await this.#record("watch:report", vm, index, () => {
        throw new WatchFinding(vm.vmId, text);
      });
      for (const k of kinds) this.counters.reactions[k].reported++;
      this.#log(`vmnic watch: ${vm.vmId}: ${text}`);
    }
    const repair = findings.every((f) =>
      this.#modes[f.kind] === "repair" && !f.noRepair
    );
    if (!repair) return;
    if (vm.repairing !== text) {
      vm.repairing = text;
      vm.repairFailures = 0;
    }
    if (vm.repairFailures >= this.#o.repairAttempts) return;
    const out = await this.#record("watch:repair", vm, index, async (p) => {
      const r = await p.recover(vm.vmId, { finishDelete: false });
      if (r.problems.length) {
        throw new RepairIncompleteError(
          vm.vmId,
          r.problems.map((x) =>
            x.index === null ? x.error : `NIC ${x.index}: ${x.error}`
          ).join("; "),
        );
      }
    });
    if (out === "busy") {
      this.#scheduleCheck(vm, this.#retryDelay(vm.checkRetries++));
      return;
    }
    if (out === "gone") return this.#forget(vm);
    for (const k of kinds) {
      this.counters.reactions[k][out === "ok" ? "repaired" : "failed"]++;
    }
    if (out === "ok") {
      this.#log(`vmnic watch: ${vm.vmId}: repaired (${text})`);
      vm.reported = undefined;
      vm.repairing = undefined;
      vm.repairFailures = 0;
    } else {
      vm.repairFailures++;
      this.#log(
        `vmnic watch: ${vm.vmId}: repair failed (${vm.repairFailures}/` +
          `${this.#o.repairAttempts}): ${out.error}`,
      );
      if (vm.repairFailures >= this.#o.repairAttempts) return;
    }
    // Look again: a repair's own changes settle, new ids are learnt.
    this.#scheduleCheck(vm, this.#retryDelay(vm.repairFailures));
  }

  /** What the check found, by the reaction it belongs to. */
  #findings(v: VerifyResult): Finding[] {
    const live = v.nics.filter((n) => isLive(n.state));
    if (!live.length) return [];
    if (!v.netns) {
      // A netns whose mount went but that a process (its hypervisor)
      // holds lives on, its veths still on the bridge: a rebuild now would
      // put a second NIC with the same MAC and IPs beside them.
      const held = live.filter((n) => n.host.present).map((n) => n.index);
      return [{
        kind: "netns",
        index: null,
        text: `netns ${v.netnsPath} is gone` +
          (held.length
            ? ` but the namespace lives on (held by a process, e.g. the ` +
              `hypervisor) with NIC ${held.join(", ")} still attached: not ` +
              `repaired while it lives (stop the VM)`
            : ""),
        noRepair: held.length > 0,
      }];
    }
    const out: Finding[] = [];
    for (const n of live) {
      const nic = `NIC ${n.index}`;
      const add = (kind: Finding["kind"], text: string) =>
        out.push({ kind, index: n.index, text: `${nic}: ${text}` });
      if (!n.tapPresent) add("netns", `TAP ${n.tap} is gone`);
      if (!n.vethPresent) add("netns", `veth ${n.ifName} is gone`);
      if (n.tapPresent && n.vethPresent && !n.wired) {
        add("netns", `the redirects between ${n.ifName} and ${n.tap} are gone`);
      }
      if (!n.vethPresent) continue;
      const h = n.host;
      if (!h.present) add("host", "its host veth is gone");
      else if (h.bridge && h.master !== h.bridge) {
        add(
          "host",
          this.#bridgeIndexOf(h.bridge, true) === null
            ? `bridge ${h.bridge} is gone`
            : `host veth ${h.name} is off bridge ${h.bridge}` +
              (h.master ? ` (on ${h.master})` : ""),
        );
      }
    }
    return out;
  }

  /** Takes in what `verify` says of the VM: its NICs, its netns id. */
  #refresh(vm: WatchedVm, v: VerifyResult): void {
    const old = new Map(vm.nics.map((n) => [n.index, n]));
    const nsid = v.netns ? this.#nsidOf(vm, v.netnsPath) : vm.nsid;
    this.#apply(
      vm,
      nsid,
      v.nics.map((n) => ({
        index: n.index,
        tap: n.tap,
        veth: n.ifName,
        live: isLive(n.state),
        hostVeth: n.host.name ?? old.get(n.index)?.hostVeth,
        bridge: n.host.bridge,
      })),
    );
  }

  /**
   * Takes in the VM's NICs from the records, and their host ends from the
   * kernel (the VM-side veth's peer; the bridge it is on), without the
   * VM's lock: what vmnic's own operations left is right by definition.
   */
  async #refreshFromRecords(vm: WatchedVm): Promise<void> {
    let recs: NicConfig[];
    try {
      recs = await this.#provider.list({ vmId: vm.vmId });
    } catch (e) {
      this.#log(`vmnic watch: ${vm.vmId}: reading its records: ${reasonOf(e)}`);
      return;
    }
    if (this.#stopped || vm.forgotten) return;
    const old = new Map(vm.nics.map((n) => [n.index, n]));
    const path = recs[0]?.netnsPath;
    const nsid = path ? this.#nsidOf(vm, path) : vm.nsid;
    this.#apply(
      vm,
      nsid,
      recs.map((n) => {
        const was = old.get(n.index);
        const host = nsid === null ? null : this.#hostEnd(nsid, n.ifName);
        return {
          index: n.index,
          tap: n.tap,
          veth: n.ifName,
          live: isLive(n.state),
          hostVeth: host?.name ?? was?.hostVeth,
          bridge: was?.bridge ?? host?.bridge,
        };
      }),
    );
  }

  /** The netns id of the VM's netns at `path` (given one if it has none). */
  #nsidOf(vm: WatchedVm, path: string): number | null {
    if (!this.#host) return null;
    try {
      return netnsId(this.#host, path, { assign: true });
    } catch (e) {
      this.#log(`vmnic watch: ${vm.vmId}: netns id: ${reasonOf(e)}`);
      return null;
    }
  }

  /** A VM-side veth's host end: its name, and the bridge it is on. */
  #hostEnd(
    nsid: number,
    veth: string,
  ): { name: string; bridge?: string } | null {
    try {
      const inside = readLink(this.#host!, nsid, veth);
      if (!inside?.link) return null;
      const end = getLinkByIndex(this.#host!, inside.link);
      if (!end) return null;
      const master = end.master === undefined
        ? null
        : getLinkByIndex(this.#host!, end.master);
      return {
        name: end.name,
        ...(master?.kind === "bridge" ? { bridge: master.name } : {}),
      };
    } catch {
      return null;
    }
  }

  /** Installs the VM's NIC table and netns id; reads new TAPs' carrier. */
  #apply(
    vm: WatchedVm,
    nsid: number | null,
    nics: Omit<WatchedNic, "carrier">[],
  ): void {
    const old = new Map(vm.nics.map((n) => [n.index, n]));
    this.#unmapHost(vm);
    const sameNetns = nsid === vm.nsid;
    if (!sameNetns) {
      if (vm.nsid !== null && this.#byNsid.get(vm.nsid) === vm) {
        this.#byNsid.delete(vm.nsid);
      }
      if (nsid !== null) this.#byNsid.set(nsid, vm);
      vm.nsid = nsid;
    }
    vm.nics = nics.map((n) => {
      const was = old.get(n.index);
      const keep = sameNetns && was?.tap === n.tap;
      return { ...n, carrier: keep ? was!.carrier : null };
    });
    for (const nic of vm.nics) {
      if (nic.hostVeth) this.#hostVeths.set(nic.hostVeth, vm);
      if (nic.bridge) {
        let users = this.#bridgeUsers.get(nic.bridge);
        if (!users) this.#bridgeUsers.set(nic.bridge, users = new Set());
        users.add(vm);
      }
      if (nic.carrier === null && nic.live) this.#snapshotCarrier(vm, nic);
    }
  }

  /** The TAP's carrier now, read through the netns id. */
  #snapshotCarrier(vm: WatchedVm, nic: WatchedNic): void {
    if (vm.nsid === null || !this.#host) return;
    try {
      const l = readLink(this.#host, vm.nsid, nic.tap);
      nic.carrier = l?.up ? l.carrier ?? null : null;
    } catch {
      nic.carrier = null;
    }
  }

  #unmapHost(vm: WatchedVm): void {
    for (const nic of vm.nics) {
      if (nic.hostVeth && this.#hostVeths.get(nic.hostVeth) === vm) {
        this.#hostVeths.delete(nic.hostVeth);
      }
      if (nic.bridge) {
        const users = this.#bridgeUsers.get(nic.bridge);
        users?.delete(vm);
        if (users?.size === 0) {
          this.#bridgeUsers.delete(nic.bridge);
          this.#bridgeIndex.delete(nic.bridge);
        }
      }
    }
  }

  /** A bridge's ifindex (null: none), as last seen or read now. */
  #bridgeIndexOf(bridge: string, fresh = false): number | null {
    if (!fresh && this.#bridgeIndex.has(bridge)) {
      return this.#bridgeIndex.get(bridge)!;
    }
    let index: number | null = null;
    try {
      index = this.#host
        ? getLinkByName(this.#host, bridge)?.index ?? null
        : null;
    } catch { /* unknown: treated as gone */ }
    this.#bridgeIndex.set(bridge, index);
    return index;
  }

  // ------------------------------------------------------------ carrier

  /** Acts on the VM's TAPs' carrier once its edges settled. */
  async #carrierCheck(vm: WatchedVm): Promise<void> {
    const mode = this.#modes.carrier;
    if (mode === "off") return;
    const live = vm.nics.filter((n) => n.live);
    if (!live.length) return;
    const carrier = live.some((n) => n.carrier === true);
    const state = await this.#vmState(vm.vmId);
    if (!state.nics) return;
    const kind: ReactionKind | null = !carrier && !state.quiesced
      ? "carrier-lost"
      : carrier && state.quiesced
      ? "carrier-back"
      : null;
    if (!kind) return; // a flap, or the VM is already as it should be
    if (state.deleting) {
      this.counters.skippedDeleting++;
      return;
    }
    const index = vm.carrierNic ?? live[0].index;
    const tap = vm.nics.find((n) => n.index === index)?.tap ?? "its TAP";
    if (mode === "report") {
      const text = kind === "carrier-lost"
        ? `TAP ${tap} lost its carrier (its hypervisor closed it) and no ` +
          `TAP of the VM has one, but the VM is not quiesced: its veths ` +
          `still redirect into TAPs nobody reads`
        : `TAP ${tap} has its carrier back (a hypervisor opened it) but ` +
          `the VM is quiesced: its veths are down`;
      await this.#record("watch:report", vm, index, () => {
        throw new WatchFinding(vm.vmId, text);
      });
      this.counters.reactions[kind].reported++;
      this.#log(`vmnic watch: ${vm.vmId}: ${text}`);
      return;
    }
    const out = await this.#record(
      `watch:${kind}`,
      vm,
      index,
      async (p) => void await p.quiesce(vm.vmId, kind === "carrier-lost"),
    );
    if (out === "busy") {
      this.#scheduleCarrier(vm, this.#retryDelay(vm.carrierRetries++));
      return;
    }
    if (out === "gone") return this.#forget(vm);
    vm.carrierRetries = 0;
    this.counters.reactions[kind][out === "ok" ? "repaired" : "failed"]++;
    this.#log(
      `vmnic watch: ${vm.vmId}: TAP ${tap} ${
        kind === "carrier-lost" ? "lost its carrier" : "has its carrier back"
      }: ` + (out === "ok"
        ? kind === "carrier-lost" ? "quiesced" : "unquiesced"
        : `failed: ${out.error}`),
    );
  }

  // ------------------------------------------------------------ helpers

  /**
   * The VM as its NICs' records say, read for it alone (what `vms` tells
   * costs a look at every VM's netns): quiesced when its live NICs are,
   * being deleted when a NIC is (a delete marks them all; a remove or
   * delete cut short leaves one so), and how many NICs it has.
   */
  async #vmState(
    vmId: string,
  ): Promise<{ quiesced: boolean; deleting: boolean; nics: number }> {
    const nics = await this.#provider.list({ vmId });
    const live = nics.filter((n) => isLive(n.state));
    return {
      quiesced: live.length > 0 && live.every((n) => n.state === "quiesced"),
      deleting: nics.some((n) => n.state === "deleting"),
      nics: nics.length,
    };
  }

  /**
   * Runs `fn` as the watcher's event `op` on the VM: "ok", "busy" (no
   * event: tried again later), "gone" (no event: the VM has no records),
   * or the failure (recorded).
   */
  async #record(
    op: string,
    vm: WatchedVm,
    index: number | null,
    fn: (p: CniProvider) => Promise<void> | void,
  ): Promise<"ok" | "busy" | "gone" | { error: string }> {
    const seen: { skip: "busy" | "gone" | null } = { skip: null };
    try {
      await this.#quick.runRecorded(op, vm.vmId, async (p) => {
        try {
          await fn(p);
        } catch (e) {
          if (e instanceof VmBusyError) seen.skip = "busy";
          else if (e instanceof NotFoundError) seen.skip = "gone";
          throw e;
        }
      }, {
        ...(index === null ? {} : { index }),
        record: () => seen.skip === null,
      });
      return "ok";
    } catch (e) {
      if (seen.skip === "busy") this.counters.busy++;
      return seen.skip ?? { error: reasonOf(e) };
    }
  }
}

/** Runs at most `n` tasks at once. */
class Limit {
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  constructor(readonly n: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.n) {
      await new Promise<void>((r) => this.#waiting.push(r));
    }
    this.#active++;
    try {
      return await fn();
    } finally {
      this.#active--;
      this.#waiting.shift()?.();
    }
  }
}

function isLive(state: NicState | NicVerdict["state"]): boolean {
  return state === "active" || state === "quiesced";
}

/** The NIC all findings concern, or null. */
function oneIndex(findings: Finding[]): number | null {
  const set = new Set(findings.map((f) => f.index));
  return set.size === 1 ? [...set][0] : null;
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(o).filter(([, v]) => v !== undefined),
  ) as Partial<T>;
}
