/**
 * The vmnic provider: per VM a named netns, the CNI chain of a conflist run
 * in it, a TAP wired to each CNI veth, records in SQLite, and hooks around
 * every NIC add and remove (docs/architecture.md). This class opens the
 * parts, holds them in one context, and hands each operation to its module:
 * `lifecycle.ts`, `recover.ts`, `quiesce.ts`, `queries.ts`, `gc.ts`.
 *
 * @module
 */
import { after } from "../sys/timers.ts";
import { CniRuntime, type PluginVersionInfo } from "../cni/runtime.ts";
import type { PluginExec } from "../cni/exec.ts";
import { HookRunner } from "../hooks/runner.ts";
import type { HookInfo, TsHook } from "../hooks/types.ts";
import { Store } from "../store/store.ts";
import { newInstallId } from "../store/types.ts";
import { hostKernel, type Kernel } from "../wiring/kernel.ts";
import {
  resolveConfig,
  type ResolvedConfig,
  validateConfig,
} from "./config.ts";
import type { EventListener, FaultHook, ProviderContext } from "./context.ts";
import { IPAM_DEL_FIRST } from "./dhcp.ts";
import type { EventFilter, EventRecord } from "../store/events.ts";
import { parseTraceparent } from "./trace.ts";
import { flushEvents } from "./oplog.ts";
import { Pool, type PoolSpec, type PoolStatus } from "./pool.ts";
import { InvalidInputError, toVmnicError } from "./errors.ts";
import { faultPoint } from "./faults.ts";
import { cniGcModule, type CniGcOptions, type CniGcSnapshot } from "./gc.ts";
import type { GcModule, GcOrchestrator } from "./gc_orchestrator.ts";
import type { GuestConfigFile, GuestConfigFormat } from "./guest_config.ts";
import type { HvArgs, HvArgsOptions, Hypervisor } from "./hv_args.ts";
import * as lifecycle from "./lifecycle.ts";
import { Networks, type NetworksReport } from "./networks.ts";
import { checkRecordsNotLost, previousInstallId } from "./ownership.ts";
import * as queries from "./queries.ts";
import { quiesce } from "./quiesce.ts";
import { recover, type RecoverOptions } from "./recover.ts";
import { tracedOp } from "./oplog.ts";
import { networkStatus } from "./cni_verbs.ts";
import {
  type PolicyChange,
  type PolicyResult,
  setPolicy,
} from "./policy_op.ts";
import type {
  AddSpec,
  DeleteResult,
  ListFilter,
  NicConfig,
  PrepareOptions,
  ProviderConfig,
  RecoverResult,
  RemoveResult,
  TeardownOptions,
  VerifyResult,
  VmConfig,
  VmInfo,
} from "./types.ts";

/** Options of {@linkcode CniProvider.open} besides the settings. */
export interface OpenOptions {
  /** TS hooks to run (the CLI passes the compiled-in registry). */
  tsHooks?: Record<string, TsHook>;
  /** The kernel to work on; default the real one (tests pass a fake). */
  kernel?: Kernel;
  /** How CNI plugins are found and run; default the binaries. */
  pluginExec?: PluginExec;
  /**
   * Aborted when the process must stop: the operation in progress ends at
   * its next step boundary and rolls back what it began.
   */
  signal?: AbortSignal;
  /** Crash points for tests; default `VMNIC_FAULT_POINT`. */
  fault?: FaultHook;
  /**
   * Keep a warm pool of pre-wired NIC slots (docs/pool.md): an `add` of a
   * one-NIC VM on a pooled network and queue count takes a slot. Slots
   * begin filling in the background once the provider is open. Given
   * (even empty), this provider owns the pools: slots left from an earlier
   * run that no spec wants are retired as it opens (what `vmnic serve`
   * does); left out, slots are not touched.
   */
  pool?: PoolSpec[];
  /**
   * A missing or empty database: `"require"` (default) refuses when this
   * install's state is on the host; `"restore"` rebuilds it from the
   * record backups; `"fresh"` starts afresh regardless (what
   * `gc --include-unknown` needs to clear the host of the lost VMs).
   */
  records?: "require" | "restore" | "fresh";
}

/**
 * The CNI network provider for microVMs (the seed's `CNI`).
 *
 * @example
 * ```ts ignore
 * import { CniProvider } from "./mod.ts";
 * const vmnic = await CniProvider.open({ netnsPrefix: "vmnic-" });
 * const [nic] = await vmnic.add("vm1", { cpu: 2 });
 * console.log(nic.tap, nic.mac, nic.ips[0].address);
 * await vmnic.delete(["vm1"]);
 * vmnic.close();
 * ```
 */
export class CniProvider {
  /** The provider type, as the seed's `Type()`. */
  readonly type = "cni";
  /** The settings in effect. */
  readonly config: ResolvedConfig;
  readonly #ctx: ProviderContext;

  private constructor(ctx: ProviderContext) {
    this.#ctx = ctx;
    this.config = ctx.config;
  }

  /**
   * Opens the provider: the record store under `rootDir`. A missing
   * conflist is not an error until `add` (the embedded network serves).
   * A missing or empty database while this install's netns or record
   * backups are on the host is refused (`RecordsLostError`).
   */
  static async open(
    config: ProviderConfig = {},
    opts: OpenOptions = {},
  ): Promise<CniProvider> {
    const op = opts.records === "restore" ? "restore-records" : "open";
    const cfg = resolveConfig(config);
    validateConfig(cfg);
    const kernel = opts.kernel ?? hostKernel;
    const mode = opts.records ?? "require";
    let store: Store;
    try {
      if (mode === "require" && !Store.exists(cfg.rootDir)) {
        checkRecordsNotLost(op, cfg, kernel);
      }
      store = Store.open(cfg.rootDir);
    } catch (e) {
      throw toVmnicError(op, cfg.rootDir, e);
    }
    try {
      if (store.installId === null) {
        if (mode === "restore") store.restoreFromBackups();
        else {
          if (mode === "require") checkRecordsNotLost(op, cfg, kernel);
          // Starting afresh keeps the install's id: its netns tags and
          // claim stay its own, so gc can still take them down.
          store.initialize(
            previousInstallId(cfg, store.backups().installId) ??
              newInstallId(),
          );
        }
      } else if (mode === "restore") {
        if (store.listVmIds().length || store.listNics().length) {
          throw new InvalidInputError(
            op,
            store.path,
            "the database holds records: there is nothing to restore",
          );
        }
        // Initialized but empty (e.g. by a gc run meanwhile): still restorable.
        store.restoreFromBackups();
      }
    } catch (e) {
      store.close();
      throw toVmnicError(op, cfg.rootDir, e);
    }
    const cni = new CniRuntime({
      binDirs: cfg.cniBinDirs,
      timeoutMs: cfg.pluginTimeoutMs,
      exec: opts.pluginExec,
      // The dhcp daemon releases out of the veth: before the bridge's DEL.
      ipamDelFirst: IPAM_DEL_FIRST,
      versionCache: {
        get: (key) => store.getPluginVersion(key) as PluginVersionInfo | null,
        put: (key, info) => store.putPluginVersion(key, info),
      },
    });
    const hooks = new HookRunner({
      tsHooks: cfg.tsHooks ? opts.tsHooks ?? {} : {},
      hooksDir: cfg.hooksDir,
      defaultTimeoutMs: cfg.hookTimeoutMs,
    });
    const ctx: ProviderContext = {
      config: cfg,
      store,
      cni,
      hooks,
      kernel,
      networks: new Networks(cfg.cniConfDir),
      installId: store.installId!,
      signal: opts.signal,
      fault: opts.fault ?? faultPoint,
      memo: {},
      held: new Map(),
      listeners: new Set(),
      pendingEvents: { events: [] },
    };
    if (cfg.eventRetention) {
      try {
        store.events(cfg.eventRetention).trim();
      } catch { /* the log is best effort */ }
    }
    if (opts.pool) {
      try {
        ctx.pool = new Pool(ctx, opts.pool);
        await ctx.pool.start();
      } catch (e) {
        store.close();
        throw toVmnicError("open", cfg.rootDir, e);
      }
    }
    return new CniProvider(ctx);
  }

  /** Closes the record store (see {@linkcode shutdown} with a pool). */
  close(): void {
    flushEvents(this.#ctx);
    this.#ctx.store.close();
  }

  /** Waits for the pool's fills in flight, then closes. */
  async shutdown(): Promise<void> {
    await this.#ctx.pool?.stop();
    this.close();
  }

  /**
   * This provider with its operations run under the caller's W3C trace
   * context: plugins get it (as `TRACEPARENT`, with the operation's span as
   * parent), hooks too, and each event records it. Shares everything with
   * this provider; close only one of them. Throws
   * {@linkcode InvalidInputError} for a malformed `traceparent`.
   */
  withTrace(traceparent: string): CniProvider {
    parseTraceparent(traceparent, "trace", "traceparent");
    return new CniProvider({ ...this.#ctx, traceparent });
  }

  /**
   * Events of the log (docs/events.md), oldest first: the newest
   * `filter.limit` (default 1000) that match.
   */
  events(filter: EventFilter = {}): Promise<EventRecord[]> {
    return this.#run(
      "events",
      this.#ctx.store.path,
      () => {
        flushEvents(this.#ctx);
        return this.#ctx.store.events().query(filter);
      },
    );
  }

  /**
   * The events matching `filter` as they are recorded, until `signal`
   * aborts: first the newest `filter.limit` already there (none with
   * `limit: 0`), then each new one. Events of this provider arrive at
   * once; those other processes record (a CLI beside a daemon) within
   * `pollMs`.
   */
  async *followEvents(
    filter: EventFilter,
    signal: AbortSignal,
    pollMs = 250,
  ): AsyncGenerator<EventRecord> {
    let last = this.lastEventId();
    if (filter.limit !== 0) {
      for (const e of await this.events({ ...filter, afterId: undefined })) {
        if (e.id <= last) yield e;
      }
    }
    let wake: () => void = () => {};
    const stop = this.onEvent(() => wake());
    try {
      while (!signal.aborted) {
        const more = await this.events({
          ...filter,
          since: undefined,
          afterId: last,
          limit: 100_000,
        });
        for (const e of more) {
          last = e.id;
          yield e;
        }
        await new Promise<void>((resolve) => {
          const timer = after(pollMs, done);
          function done() {
            timer.cancel();
            signal.removeEventListener("abort", done);
            wake = () => {};
            resolve();
          }
          wake = done;
          signal.addEventListener("abort", done, { once: true });
        });
      }
    } finally {
      stop();
    }
  }

  /** The id of the newest event, 0 when there is none (a `follow` cursor). */
  lastEventId(): number {
    flushEvents(this.#ctx);
    return this.#ctx.store.events().lastId();
  }

  /**
   * Calls `listener` with each event this provider records from now on
   * (and what failed in it); returns what stops it.
   */
  onEvent(listener: EventListener): () => void {
    this.#ctx.listeners.add(listener);
    return () => this.#ctx.listeners.delete(listener);
  }

  /**
   * This provider with its waits for a VM's lock bounded by `lockWaitMs`
   * instead of the configured wait (0: none): a busy VM is a `VmBusyError`
   * at once (the watcher's way: retry later rather than queue behind an
   * operation). Shares everything with this provider; close only one.
   */
  withLockWait(lockWaitMs: number): CniProvider {
    const config = { ...this.#ctx.config, lockWaitMs };
    validateConfig(config);
    return new CniProvider({ ...this.#ctx, config });
  }

  /**
   * Runs `fn` as an operation of the caller's own, recorded as one event
   * `op` on `vmId` (the watcher's reactions, docs/watcher.md): its outcome
   * and error are `fn`'s, its phases those of the provider operations `fn`
   * runs on the provider it is given, which record no events of their own.
   * `opts.record`, asked when `fn` ends, may leave the event out (an
   * attempt put off because the VM was busy). What `fn` throws leaves as a
   * vmnic error (its own class when it is one).
   */
  runRecorded<T>(
    op: string,
    vmId: string,
    fn: (provider: CniProvider) => Promise<T>,
    opts: { index?: number; record?: () => boolean } = {},
  ): Promise<T> {
    return this.#run(
      op,
      vmId,
      () =>
        tracedOp(
          this.#ctx,
          op,
          vmId,
          (ctx) => fn(new CniProvider(ctx)),
          { index: opts.index ?? null, record: opts.record ?? true },
        ),
    );
  }

  /** This install's id (in its CNI container ids and netns tags). */
  get installId(): string {
    return this.#ctx.installId;
  }

  /** The netns name of a VM. */
  netnsName(vmId: string): string {
    return this.config.netnsPrefix + vmId;
  }

  /** Creates the VM's netns (idempotent) and returns its path. */
  prepare(
    vmId: string,
    vmCfg: VmConfig = {},
    opts: PrepareOptions = {},
  ): Promise<string> {
    return this.#run(
      "prepare",
      vmId,
      () => lifecycle.prepare(this.#ctx, vmId, vmCfg, opts),
    );
  }

  /**
   * Makes the VM have one NIC per spec (NIC 0 when no spec is given): a
   * spec without an index stands for the index of its position. NICs that
   * exist already are returned unchanged, so a retried add is harmless.
   * Any failure rolls back exactly what this call made.
   */
  add(
    vmId: string,
    vmCfg: VmConfig = {},
    ...specs: AddSpec[]
  ): Promise<NicConfig[]> {
    return this.#run(
      "add",
      vmId,
      () => lifecycle.add(this.#ctx, vmId, vmCfg, specs),
    );
  }

  /**
   * Tears down the NICs at the given indices, keeping the netns. The last
   * argument may be options (`{ force: true }`).
   */
  remove(
    vmId: string,
    ...args: [...number[], TeardownOptions] | number[]
  ): Promise<RemoveResult> {
    const all = args as (number | TeardownOptions)[];
    const last = all.at(-1);
    const opts = typeof last === "object" ? last : {};
    const indices = all.filter((a): a is number => typeof a === "number");
    return this.#run(
      "remove",
      vmId,
      () => lifecycle.remove(this.#ctx, vmId, indices, opts),
    );
  }

  /**
   * Deletes every NIC of each VM, then its netns, its records and its lock.
   * Best effort per VM: returns the ids fully cleaned and why the others
   * were not. An unknown VM counts as cleaned.
   */
  delete(
    vmIds: string[],
    opts: TeardownOptions & {
      onProgress?: (vmId: string, done: number, total: number) => void;
    } = {},
  ): Promise<DeleteResult> {
    return this.#run(
      "delete",
      vmIds.join(","),
      () => lifecycle.deleteVms(this.#ctx, vmIds, opts),
    );
  }

  /** One NIC by record id, or null. */
  inspect(id: string): Promise<NicConfig | null> {
    return this.#run("inspect", id, () => queries.inspect(this.#ctx, id));
  }

  /** Every NIC, optionally of one VM. */
  list(filter: ListFilter = {}): Promise<NicConfig[]> {
    return this.#run(
      "list",
      filter.vmId ?? "*",
      () => queries.list(this.#ctx, filter),
    );
  }

  /** Every VM this install holds, with or without NICs. */
  vms(): Promise<VmInfo[]> {
    return this.#run("vms", "*", () => queries.vms(this.#ctx));
  }

  /**
   * Checks the VM against its records (netns, TAPs, veths, redirects, host
   * veths and bridges, CNI CHECK). Throws `NotFoundError` for a VM without
   * records; `VmBusyError` while another operation holds it.
   */
  verify(
    vmId: string,
    opts: queries.VerifyOptions = {},
  ): Promise<VerifyResult> {
    return this.#run(
      "verify",
      vmId,
      () => queries.verify(this.#ctx, vmId, opts),
    );
  }

  /**
   * Brings the VM's NICs back to what the records say: mends what is
   * broken in place, rebuilds NICs whose veth is gone with the same id,
   * MAC and IPs. Per-NIC failures are reported, never destructive.
   */
  recover(vmId: string, opts: RecoverOptions = {}): Promise<RecoverResult> {
    return this.#run("recover", vmId, () => recover(this.#ctx, vmId, opts));
  }

  /**
   * Changes NIC `index`'s policy in place (docs/policy.md): the fields of
   * `change.set` replace those asked for before, `change.unset` puts
   * fields back to the network's or built-in default; with neither, the
   * policy is resolved and applied again (a policy file changed since).
   * What both the old and the new policy allow keeps flowing.
   */
  policy(
    vmId: string,
    index: number,
    change: PolicyChange = {},
  ): Promise<PolicyResult> {
    return this.#run(
      "policy",
      `${vmId}/${index}`,
      () => setPolicy(this.#ctx, vmId, index, change),
    );
  }

  /**
   * Brings the VM's veths down while it is stopped (`true`) or up before
   * it starts (`false`), and records it. Returns the NICs concerned.
   */
  quiesce(vmId: string, quiesced = true): Promise<NicConfig[]> {
    return this.#run(
      quiesced ? "quiesce" : "unquiesce",
      vmId,
      () => quiesce(this.#ctx, vmId, quiesced),
    );
  }

  /** The guest side of a VM's records in one of the supported formats. */
  guestConfig(
    vmId: string,
    format: GuestConfigFormat,
  ): Promise<GuestConfigFile[]> {
    return this.#run(
      "guest-config",
      vmId,
      () => queries.guestConfig(this.#ctx, vmId, format),
    );
  }

  /**
   * What to pass QEMU, Cloud Hypervisor or Firecracker for every NIC of the
   * VM, and how to start it inside the VM's netns.
   */
  hvArgs(
    vmId: string,
    hypervisor: Hypervisor,
    opts: HvArgsOptions = {},
  ): Promise<HvArgs> {
    return this.#run(
      "hv-args",
      vmId,
      () => queries.hvArgs(this.#ctx, vmId, hypervisor, opts),
    );
  }

  /** Reads the conf dir again at the next use (the daemon calls it on changes). */
  reloadNetworks(): void {
    this.#ctx.networks.reload();
  }

  /** The warm pool: slots per network and the IPs they hold. */
  poolStatus(): Promise<PoolStatus> {
    return Promise.resolve(this.#ctx.pool?.status() ?? { pools: [] });
  }

  /** The conflists loaded (or the embedded network), and the broken files. */
  networks(): Promise<NetworksReport> {
    return this.#run("networks", this.config.cniConfDir, async () => {
      const report = await this.#ctx.networks.report();
      // CNI STATUS of each chain that speaks 1.1 (the others: skipped).
      for (const n of report.networks) {
        const list = await this.#ctx.networks.current(n.name);
        if (!list) continue;
        const s = await networkStatus(this.#ctx.cni, list);
        n.status = s.status;
        if (s.error !== undefined) n.statusError = s.error;
      }
      return report;
    });
  }

  /** The hooks in effect, in run order. */
  hooks(): Promise<HookInfo[]> {
    return this.#run(
      "hooks",
      this.config.hooksDir,
      () => this.#ctx.hooks.list(),
    );
  }

  /**
   * The GC module of this provider: every recorded VM not in the active set
   * is collected like `delete`, skipping VMs another process is working on.
   */
  gcModule(opts: CniGcOptions = {}): GcModule<CniGcSnapshot> {
    return cniGcModule(this.#ctx, opts);
  }

  /** Registers {@linkcode gcModule} with an orchestrator (the seed's `RegisterGC`). */
  registerGc(orchestrator: GcOrchestrator): void {
    orchestrator.register(this.gcModule());
  }

  /** Runs an operation; whatever it throws leaves as a vmnic error. */
  async #run<T>(
    op: string,
    object: string,
    fn: () => T | Promise<T>,
  ): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw toVmnicError(op, object, e);
    }
  }
}

export type { CniGcOptions, CniGcSnapshot } from "./gc.ts";
export type { NetworkInfo, NetworksReport } from "./networks.ts";
export { DEFAULT_QUEUE_SIZE } from "./lifecycle.ts";
export { resolveConfig, type ResolvedConfig } from "./config.ts";
export { parsePoolSpec, type PoolSpec, type PoolStatus } from "./pool.ts";
