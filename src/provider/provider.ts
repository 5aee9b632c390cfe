/**
 * The vmnic provider: per VM a named netns, the CNI chain of a conflist run
 * in it, a TAP wired to each CNI veth, records in SQLite, and hooks around
 * every NIC add and remove. The only layer that combines the others.
 *
 * @module
 */
import { basename, dirname } from "node:path";
import { CniRuntime, type PluginVersionInfo } from "../cni/runtime.ts";
import {
  loadConfDir,
  type NetworkConfigList,
  type NetworkConfigSet,
  parseConfList,
} from "../cni/config.ts";
import type { CniResult } from "../cni/result.ts";
import { CniPluginNotFoundError } from "../cni/errors.ts";
import {
  deleteNetns,
  ensureNetns,
  inNetns,
  listNetns,
  netnsDirPropagates,
  netnsExists,
  netnsPath,
} from "../wiring/netns.ts";
import { Store } from "../store/store.ts";
import { acquireVmLock, type VmLock } from "../store/locks.ts";
import { newNicId, type NicRecord, type NicState } from "../store/types.ts";
import { HookRunner } from "../hooks/runner.ts";
import type {
  HookEvent,
  HookInfo,
  HookInput,
  HookOperation,
  TsHook,
} from "../hooks/types.ts";
import {
  inspectNic,
  plumbNic,
  restoreVethAddrs,
  setNicQuiesced,
  unplumbNic,
} from "../wiring/nic.ts";
import { faultPoint } from "./faults.ts";
import { hookFields, ipRequest, ipsOf, toNicConfig } from "./records.ts";
import { EMBEDDED_NETWORK_NAME, embeddedConflist } from "./default_network.ts";
import {
  InvalidInputError,
  messageOf,
  NotFoundError,
  OperationError,
  RollbackIncompleteError,
  toVmnicError,
  VmBusyError,
} from "./errors.ts";
import {
  isVmId,
  MAX_NIC_INDEX,
  normalizeMac,
  parseIpArg,
  validateIndex,
  validateSpec,
  validateVmConfig,
  validateVmId,
} from "./validate.ts";
import {
  type AddSpec,
  DEFAULTS,
  type DeleteResult,
  type ListFilter,
  type NicConfig,
  type ProviderConfig,
  type RecoverResult,
  type VerifyResult,
  type VmConfig,
} from "./types.ts";
import {
  type GuestConfigFile,
  type GuestConfigFormat,
  kernelCmdline,
  netplan,
  networkd,
} from "./guest_config.ts";
import type { GcModule, GcOrchestrator, GcPlan, GcReport } from "./gc.ts";

/** Default virtio queue size recorded when the VM config names none. */
export const DEFAULT_QUEUE_SIZE = 256;

/** A network the provider can use, as `vmnic networks` lists it. */
export interface NetworkInfo {
  /** Its name. */
  name: string;
  /** The conflist file, or `"embedded"`. */
  source: string;
  /** True for the embedded default network. */
  embedded: boolean;
  /** The one used when neither spec nor VM config names a network. */
  isDefault: boolean;
  /** The list's CNI version. */
  cniVersion: string;
  /** Plugin types, in ADD order. */
  plugins: string[];
}

/** Networks, and conflist files that could not be loaded. */
export interface NetworksReport {
  /** Usable networks; the default first. */
  networks: NetworkInfo[];
  /** Ids that failed, with why. */
  errors: { source: string; error: string }[];
}

/** The settings in effect, every default filled in. */
export type ResolvedConfig = Required<ProviderConfig>;

/** Fills in DESIGN.md's defaults. */
export function resolveConfig(cfg: ProviderConfig = {}): ResolvedConfig {
  return {
    rootDir: cfg.rootDir ?? DEFAULTS.rootDir,
    runDir: cfg.runDir ?? DEFAULTS.runDir,
    cniConfDir: cfg.cniConfDir ?? DEFAULTS.cniConfDir,
    cniBinDirs: cfg.cniBinDirs ?? [...DEFAULTS.cniBinDirs],
    netnsDir: cfg.netnsDir ?? DEFAULTS.netnsDir,
    netnsPrefix: cfg.netnsPrefix ?? DEFAULTS.netnsPrefix,
    hooksDir: cfg.hooksDir ?? DEFAULTS.hooksDir,
    pluginTimeoutMs: cfg.pluginTimeoutMs ?? DEFAULTS.pluginTimeoutMs,
    hookTimeoutMs: cfg.hookTimeoutMs ?? DEFAULTS.hookTimeoutMs,
    tsHooks: cfg.tsHooks ?? true,
  };
}

/** Options of {@linkcode CniProvider.open} besides the settings. */
export interface OpenOptions {
  /** TS hooks to run (the CLI passes the compiled-in registry). */
  tsHooks?: Record<string, TsHook>;
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
  readonly #store: Store;
  readonly #cni: CniRuntime;
  readonly #hooks: HookRunner;
  #networks?: NetworkConfigSet;

  private constructor(config: ResolvedConfig, store: Store, hooks: HookRunner) {
    this.config = config;
    this.#store = store;
    this.#hooks = hooks;
    this.#cni = new CniRuntime({
      binDirs: config.cniBinDirs,
      timeoutMs: config.pluginTimeoutMs,
      versionCache: {
        get: (key) => store.getPluginVersion(key) as PluginVersionInfo | null,
        put: (key, info) => store.putPluginVersion(key, info),
      },
    });
  }

  /**
   * Opens the provider: the record store under `rootDir`. A missing
   * conflist is not an error until `add` (the embedded network serves).
   */
  static async open(
    config: ProviderConfig = {},
    opts: OpenOptions = {},
  ): Promise<CniProvider> {
    const cfg = resolveConfig(config);
    if (!/^[A-Za-z0-9_.-]{0,32}$/.test(cfg.netnsPrefix)) {
      throw new InvalidInputError(
        "open",
        cfg.netnsPrefix,
        `invalid netns prefix ${
          JSON.stringify(cfg.netnsPrefix)
        }: up to 32 of [A-Za-z0-9_.-]`,
      );
    }
    let store: Store;
    try {
      store = Store.open(cfg.rootDir);
    } catch (e) {
      throw toVmnicError("open", cfg.rootDir, e);
    }
    const hooks = new HookRunner({
      tsHooks: cfg.tsHooks ? opts.tsHooks ?? {} : {},
      hooksDir: cfg.hooksDir,
      defaultTimeoutMs: cfg.hookTimeoutMs,
    });
    return await Promise.resolve(new CniProvider(cfg, store, hooks));
  }

  /** Closes the record store. */
  close(): void {
    this.#store.close();
  }

  /** The netns name of a VM. */
  netnsName(vmId: string): string {
    return this.config.netnsPrefix + vmId;
  }

  /** The netns path of a VM. */
  netnsPath(vmId: string): string {
    return netnsPath(this.netnsName(vmId), this.config.netnsDir);
  }

  // ---------------------------------------------------------------- networks

  async #loadNetworks(): Promise<NetworkConfigSet> {
    this.#networks ??= await loadConfDir(this.config.cniConfDir);
    return this.#networks;
  }

  #embedded(): NetworkConfigList {
    return parseConfList(embeddedConflist(this.config.rootDir), "embedded");
  }

  /** The conflists loaded (or the embedded network), and the broken files. */
  async networks(): Promise<NetworksReport> {
    const set = await this.#loadNetworks().catch((e) => {
      throw toVmnicError("networks", this.config.cniConfDir, e);
    });
    const lists = set.networks.length ? set.networks : [this.#embedded()];
    // With every conflist broken, nothing is default: `add` refuses to fall
    // back to the embedded network unless it is named.
    const hasDefault = set.networks.length > 0 || set.errors.length === 0;
    return {
      networks: lists.map((n, i) => ({
        name: n.name,
        source: n.source,
        embedded: n.source === "embedded",
        isDefault: i === 0 && hasDefault,
        cniVersion: n.cniVersion,
        plugins: n.plugins.map((p) => p.type),
      })),
      errors: set.errors.map((e) => ({
        source: e.source,
        error: e.message,
      })),
    };
  }

  async #resolveNetwork(
    op: string,
    vmId: string,
    name?: string,
  ): Promise<NetworkConfigList> {
    const set = await this.#loadNetworks();
    if (!set.networks.length) {
      if (name === EMBEDDED_NETWORK_NAME) return this.#embedded();
      // Broken conflists are not "no conflist": never put a VM on a network
      // other than the one the operator configured.
      if (name === undefined && set.errors.length) {
        throw new OperationError(
          op,
          vmId,
          `${op} ${vmId}: no usable network in ${this.config.cniConfDir}` +
            brokenNote(set),
        );
      }
      if (name === undefined) return this.#embedded();
      throw new InvalidInputError(
        op,
        vmId,
        `${op} ${vmId}: unknown network ${
          JSON.stringify(name)
        }: no conflist in ` +
          `${this.config.cniConfDir}; known: ${EMBEDDED_NETWORK_NAME} (embedded)` +
          brokenNote(set),
      );
    }
    if (name === undefined) return set.defaultNetwork!;
    const found = set.findNetwork(name);
    if (!found) {
      throw new InvalidInputError(
        op,
        vmId,
        `${op} ${vmId}: unknown network ${JSON.stringify(name)}; known: ` +
          set.networks.map((n) => n.name).join(", ") + brokenNote(set),
      );
    }
    return found;
  }

  // ----------------------------------------------------------------- prepare

  /** Creates the VM's netns (idempotent) and returns its path. */
  async prepare(vmId: string, vmCfg: VmConfig = {}): Promise<string> {
    const op = "prepare";
    validateVmId(op, vmId);
    validateVmConfig(op, vmId, vmCfg);
    return await this.#withLock(op, vmId, () => {
      this.#checkPropagation(op);
      return ensureNetns(this.netnsName(vmId), this.config.netnsDir).path;
    });
  }

  // --------------------------------------------------------------------- add

  /**
   * Adds one NIC per spec (one NIC when no spec is given), creating the netns
   * if absent. Any failure rolls back exactly what this call did and leaves
   * no record.
   */
  async add(
    vmId: string,
    vmCfg: VmConfig = {},
    ...specs: AddSpec[]
  ): Promise<NicConfig[]> {
    const op = "add";
    if (!specs.length) specs = [{}];
    validateVmId(op, vmId);
    validateVmConfig(op, vmId, vmCfg);
    for (const s of specs) validateSpec(op, vmId, s);
    // Resolve networks before any change: an unknown name changes nothing.
    const lists = await Promise.all(
      specs.map((s) =>
        this.#resolveNetwork(op, vmId, s.network ?? vmCfg.network)
      ),
    ).catch((e) => {
      throw toVmnicError(op, vmId, e);
    });
    return await this.#withLock(op, vmId, async () => {
      this.#checkPropagation(op);
      await this.#finishStaleNics(vmId, op);
      const indices = this.#pickIndices(op, vmId, specs);
      const path = this.netnsPath(vmId);
      const plans = specs.map((spec, i) => ({
        spec,
        list: lists[i],
        index: indices[i],
        queues: spec.queues ?? vmCfg.cpu ?? 1,
        queueSize: vmCfg.queueSize ?? DEFAULT_QUEUE_SIZE,
      }));
      // Veto point: nothing exists yet.
      for (const p of plans) {
        await this.#runHook("beforeAdd", {
          operation: op,
          vmId,
          index: p.index,
          ifName: `eth${p.index}`,
          tap: `tap${p.index}`,
          netnsPath: path,
          network: p.list.name,
          numQueues: p.queues,
          queueSize: p.queueSize,
          ...(p.spec.mac ? { mac: p.spec.mac.toLowerCase() } : {}),
        });
      }
      const { created } = ensureNetns(
        this.netnsName(vmId),
        this.config.netnsDir,
      );
      faultPoint("add:netns-created");
      const added: NicRecord[] = [];
      // NICs whose afterAdd hooks ran: their hooks hear of the rollback.
      const announced = new Set<NicRecord>();
      try {
        for (const p of plans) {
          added.push(await this.#addNic(op, vmId, path, p));
        }
        for (const rec of added) {
          await this.#runHook("afterAdd", {
            ...hookFields(rec),
            operation: op,
            cniResult: rec.cniResult,
          });
          announced.add(rec);
        }
      } catch (err) {
        const rollbackErrors: string[] = [];
        // Reported, but no reason to keep a netns whose NICs are all gone.
        const hookErrors: string[] = [];
        for (const rec of added.reverse()) {
          // Marked first: a crash or failed DEL leaves it for delete/gc.
          this.#store.markDeleting(vmId, [rec.index]);
          try {
            await this.#teardownNic(rec);
            this.#store.deleteNic(vmId, rec.index);
          } catch (e) {
            rollbackErrors.push(`NIC ${rec.index}: ${messageOf(e)}`);
            continue;
          }
          if (announced.has(rec)) {
            hookErrors.push(...await this.#afterRemove(rec, op));
          }
        }
        if (err instanceof RollbackIncompleteError) {
          // Its record is kept; the netns stays for the retry to run in.
          rollbackErrors.push(`NIC record kept for delete/gc`);
        }
        if (created && !rollbackErrors.length) {
          try {
            deleteNetns(this.netnsName(vmId), this.config.netnsDir);
          } catch (e) {
            rollbackErrors.push(`netns: ${messageOf(e)}`);
          }
        }
        throw new OperationError(
          op,
          vmId,
          `${op} ${vmId}: ${messageOf(err)}` +
            (rollbackErrors.length
              ? `; rollback incomplete: ${rollbackErrors.join("; ")}`
              : "; rolled back") +
            (hookErrors.length ? `; ${hookErrors.join("; ")}` : ""),
          err,
        );
      }
      return added.map(toNicConfig);
    });
  }

  #pickIndices(op: string, vmId: string, specs: AddSpec[]): number[] {
    const used = new Set(this.#store.usedIndices(vmId));
    const out: number[] = [];
    for (const s of specs) {
      if (s.index !== undefined) {
        if (used.has(s.index)) {
          throw new InvalidInputError(
            op,
            `${vmId}/${s.index}`,
            `${op} ${vmId}: NIC index ${s.index} already exists (remove it first)`,
          );
        }
        used.add(s.index);
        out.push(s.index);
      } else out.push(-1);
    }
    for (let i = 0; i < out.length; i++) {
      if (out[i] !== -1) continue;
      let next = 0;
      while (used.has(next)) next++;
      if (next > MAX_NIC_INDEX) {
        throw new InvalidInputError(
          op,
          vmId,
          `${op} ${vmId}: no free NIC index (0–${MAX_NIC_INDEX} all used)`,
        );
      }
      used.add(next);
      out[i] = next;
    }
    return out;
  }

  async #addNic(
    op: "add" | "recover",
    vmId: string,
    path: string,
    p: {
      spec: AddSpec;
      list: NetworkConfigList;
      index: number;
      queues: number;
      queueSize: number;
    },
  ): Promise<NicRecord> {
    const ifName = `eth${p.index}`;
    const tap = `tap${p.index}`;
    const mac = p.spec.mac ? normalizeMac(op, vmId, p.spec.mac) : undefined;
    const record: NicRecord = {
      id: newNicId(),
      vmId,
      index: p.index,
      ifName,
      tap,
      mac: mac ?? "",
      network: p.list.name,
      netnsPath: path,
      numQueues: p.queues,
      queueSize: p.queueSize,
      mtu: 0,
      // Recovery's IPs are kept from the start: a crash before CNI ADD ends
      // must not lose the addresses the next recover asks for again.
      ips: (p.spec.ips ?? []).map((s) => {
        const ip = parseIpArg(op, vmId, s);
        const prefix = ip.prefix ?? (ip.version === 4 ? 32 : 128);
        return { address: ip.address, prefix, version: ip.version };
      }),
      dns: {},
      cniResult: null,
      cniConfig: p.list.raw,
      containerId: this.netnsName(vmId),
      // Recorded before CNI ADD: a crash from here on leaves a record that
      // the next delete/gc (or add of this index) tears down.
      state: "adding",
      createdAt: new Date().toISOString(),
    };
    this.#store.insertNic(record);
    faultPoint("add:record-inserted");
    let result: CniResult | undefined;
    try {
      result = await this.#cni.addNetworkList(p.list, {
        containerId: record.containerId,
        netns: path,
        ifName,
        ...ipRequest(p.list, p.spec, op, vmId),
      });
      // Kept before plumbing flushes the veth: any teardown from here on
      // (rollback, or delete/gc after a crash) has the result and the IPs
      // that CNI DEL needs.
      record.cniResult = result;
      record.ips = ipsOf(result, ifName, path);
      record.dns = (result.dns ?? {}) as Record<string, unknown>;
      this.#store.updateNic(record);
      faultPoint("add:cni-added");
      const plumbed = inNetns(
        path,
        (sock) => plumbNic(sock, { veth: ifName, tap, queues: p.queues, mac }),
      );
      faultPoint("add:plumbed");
      record.mac = plumbed.mac;
      record.mtu = plumbed.mtu;
      record.state = "active";
      this.#store.updateNic(record);
      faultPoint("add:active");
      return record;
    } catch (err) {
      try {
        // Plugin lookup fails before any plugin runs: nothing for CNI DEL to
        // undo, and DEL would fail the same way and strand the record.
        if (!(err instanceof CniPluginNotFoundError)) {
          await this.#teardownNic(record);
        }
        this.#store.deleteNic(vmId, p.index);
      } catch (e) {
        throw new RollbackIncompleteError(
          op,
          `${vmId}/${p.index}`,
          `NIC ${p.index}: ${messageOf(err)}; cleanup failed (${
            messageOf(e)
          }), record kept for gc`,
          err,
        );
      }
      throw err;
    }
  }

  /**
   * Tears down one NIC's plumbing: TAP and redirects, then CNI DEL with the
   * stored config and result. Throws when CNI DEL fails (the record is kept
   * by callers that retry).
   */
  async #teardownNic(
    rec: NicRecord,
    { unplumb = true }: { unplumb?: boolean } = {},
  ): Promise<void> {
    // The record's own netns: settings (prefix, dir) may have changed since.
    if (netnsExists(basename(rec.netnsPath), dirname(rec.netnsPath))) {
      inNetns(rec.netnsPath, (sock) => {
        if (unplumb) unplumbNic(sock, { veth: rec.ifName, tap: rec.tap });
        try {
          restoreVethAddrs(
            sock,
            rec.ifName,
            rec.ips.map((ip) => `${ip.address}/${ip.prefix}`),
          );
        } catch {
          // Only a help for the plugins' DEL: never a reason to skip it.
        }
      });
    }
    faultPoint("teardown:unplumbed");
    const list = parseConfList(rec.cniConfig, `record ${rec.id}`);
    await this.#cni.delNetworkList(
      list,
      {
        containerId: rec.containerId,
        netns: rec.netnsPath,
        ifName: rec.ifName,
      },
      (rec.cniResult as CniResult | null) ?? undefined,
    );
    faultPoint("teardown:cni-deleted");
  }

  /** Finishes adds and removes that a crashed process left half-done. */
  async #finishStaleNics(
    vmId: string,
    op: string,
    states: readonly NicState[] = ["adding", "deleting"],
  ): Promise<void> {
    const problems = await this.#tryFinishStaleNics(vmId, states);
    if (problems.length) {
      const [first] = problems;
      throw new OperationError(
        op,
        `${vmId}/${first.index}`,
        `${op} ${vmId}: ${problems.map((p) => p.error).join("; ")}`,
      );
    }
  }

  /** Like {@linkcode #finishStaleNics}, but returns the failures per NIC. */
  async #tryFinishStaleNics(
    vmId: string,
    states: readonly NicState[],
  ): Promise<{ index: number; error: string }[]> {
    const problems: { index: number; error: string }[] = [];
    for (const rec of this.#store.listNics({ vmId })) {
      if (!states.includes(rec.state)) continue;
      try {
        await this.#teardownNic(rec);
        this.#store.deleteNic(vmId, rec.index);
      } catch (e) {
        problems.push({
          index: rec.index,
          error:
            `NIC ${rec.index} was left ${rec.state} by an earlier run and could not be finished: ${
              messageOf(e)
            }`,
        });
      }
    }
    return problems;
  }

  // ------------------------------------------------------------------ remove

  /**
   * Tears down the NICs at `indices`, keeping the netns. Their records are
   * always swept, even when a teardown step fails (that failure is thrown).
   */
  async remove(vmId: string, ...indices: number[]): Promise<void> {
    const op = "remove";
    validateVmId(op, vmId);
    if (!indices.length) {
      throw new InvalidInputError(
        op,
        vmId,
        `${op} ${vmId}: no NIC index given`,
      );
    }
    for (const i of indices) validateIndex(op, vmId, i);
    await this.#withLock(op, vmId, async () => {
      const recs = indices.map((i) => this.#store.getNicByIndex(vmId, i));
      const missing = indices.filter((_, k) => !recs[k]);
      if (missing.length === indices.length) {
        throw new NotFoundError(
          op,
          vmId,
          `${op} ${vmId}: no NIC ${missing.join(", ")}`,
        );
      }
      const found = recs.filter((r): r is NicRecord => r !== null);
      for (const rec of found) {
        // A NIC left half-added or half-removed by a crash has no say.
        if (rec.state !== "active") continue;
        await this.#runHook("beforeRemove", {
          ...hookFields(rec),
          operation: op,
        });
      }
      const errors: string[] = [];
      for (const rec of found) {
        this.#store.markDeleting(vmId, [rec.index]);
        faultPoint("remove:marked");
        try {
          await this.#teardownNic(rec);
        } catch (e) {
          errors.push(`NIC ${rec.index}: ${messageOf(e)}`);
        }
        this.#store.deleteNic(vmId, rec.index);
        if (rec.state === "active") {
          errors.push(...await this.#afterRemove(rec, op));
        }
      }
      if (missing.length) errors.push(`no NIC ${missing.join(", ")}`);
      if (errors.length) {
        throw new OperationError(
          op,
          vmId,
          `${op} ${vmId}: ${errors.join("; ")}`,
        );
      }
    });
  }

  async #afterRemove(rec: NicRecord, op: HookOperation): Promise<string[]> {
    try {
      await this.#runHook("afterRemove", { ...hookFields(rec), operation: op });
      return [];
    } catch (e) {
      return [`afterRemove hook: ${messageOf(e)}`];
    }
  }

  // ------------------------------------------------------------------ delete

  /**
   * Deletes every NIC of each VM, then its netns, then its records. Best
   * effort per VM: returns the ids fully cleaned and why the others were not.
   * An unknown VM counts as cleaned.
   */
  async delete(
    vmIds: string[],
    opts: { onProgress?: (vmId: string, done: number, total: number) => void } =
      {},
  ): Promise<DeleteResult> {
    const op = "delete";
    for (const id of vmIds) validateVmId(op, id);
    const result: DeleteResult = { deleted: [], errors: [], warnings: [] };
    let done = 0;
    for (const vmId of vmIds) {
      try {
        const lock = await this.#lock(op, vmId, true);
        try {
          const warnings = await this.#deleteVm(vmId, op);
          result.warnings.push(
            ...warnings.map((warning) => ({ vmId, warning })),
          );
        } finally {
          lock.releaseAndRemove();
        }
        result.deleted.push(vmId);
      } catch (e) {
        result.errors.push({ vmId, error: messageOf(e) });
      }
      opts.onProgress?.(vmId, ++done, vmIds.length);
    }
    return result;
  }

  /**
   * Tears a whole VM down; the caller holds its lock. Throws unless the VM
   * is fully gone; returns the `afterRemove` hook failures, which do not
   * undo a removal.
   */
  async #deleteVm(vmId: string, op: HookOperation): Promise<string[]> {
    const recs = this.#store.listNics({ vmId });
    // Veto point: nothing torn down yet.
    for (const rec of recs) {
      if (rec.state !== "active") continue;
      await this.#runHook("beforeRemove", {
        ...hookFields(rec),
        operation: op,
      });
    }
    this.#store.markDeleting(vmId);
    faultPoint("delete:marked");
    const teardownErrors: string[] = [];
    const hookErrors: string[] = [];
    for (const rec of recs) {
      try {
        // The TAP and its redirects go with the netns below: deleting them
        // one by one first would only add the kernel's per-device unregister
        // wait. CNI DEL still runs with the netns present, so the plugins
        // remove the veth pair (and the host end) synchronously.
        await this.#teardownNic(rec, { unplumb: false });
        this.#store.deleteNic(vmId, rec.index);
        faultPoint("delete:nic-torn-down");
      } catch (e) {
        // Kept, marked deleting, for the next delete or gc to retry.
        teardownErrors.push(`NIC ${rec.index}: ${messageOf(e)}`);
        continue;
      }
      if (rec.state === "active") {
        hookErrors.push(...await this.#afterRemove(rec, op));
      }
    }
    // The netns stays while a NIC's CNI DEL still has to be retried in it.
    if (!teardownErrors.length) {
      const paths = new Set([
        this.netnsPath(vmId),
        ...recs.map((r) => r.netnsPath),
      ]);
      for (const path of paths) deleteNetns(basename(path), dirname(path));
      faultPoint("delete:netns-deleted");
    }
    if (teardownErrors.length) {
      throw new OperationError(
        op,
        vmId,
        [...teardownErrors, ...hookErrors].join("; "),
      );
    }
    return hookErrors;
  }

  // ---------------------------------------------------------------- queries

  /** One NIC by record id, or null. */
  async inspect(id: string): Promise<NicConfig | null> {
    try {
      const rec = this.#store.getNic(id);
      return await Promise.resolve(rec ? toNicConfig(rec) : null);
    } catch (e) {
      throw toVmnicError("inspect", id, e);
    }
  }

  /** Every NIC, optionally of one VM. */
  list(filter: ListFilter = {}): Promise<NicConfig[]> {
    // Promise.try: bad input rejects rather than throwing synchronously.
    return Promise.try(() => {
      if (filter.vmId !== undefined) validateVmId("list", filter.vmId);
      return this.#store.listNics(filter).map(toNicConfig);
    }).catch((e) => {
      throw toVmnicError("list", filter.vmId ?? "*", e);
    });
  }

  /**
   * Checks that the VM's netns exists and every recorded TAP is present and
   * wired to its veth. Throws {@linkcode NotFoundError} for a VM with neither
   * records nor netns.
   */
  verify(vmId: string): Promise<VerifyResult> {
    // Bad input (or a kernel error) rejects rather than throwing synchronously.
    return Promise.try(() => this.#verify(vmId)).catch((e) => {
      throw toVmnicError("verify", vmId, e);
    });
  }

  #verify(vmId: string): Promise<VerifyResult> {
    const op = "verify";
    validateVmId(op, vmId);
    const recs = this.#store.listNics({ vmId });
    const path = this.netnsPath(vmId);
    const present = netnsExists(this.netnsName(vmId), this.config.netnsDir);
    if (!present && !recs.length) {
      return Promise.reject(
        new NotFoundError(
          op,
          vmId,
          `${op} ${vmId}: unknown VM (no netns, no records)`,
        ),
      );
    }
    const problems: string[] = [];
    if (!present) problems.push(`netns ${path} is missing`);
    const absent = {
      tapPresent: false,
      vethPresent: false,
      wired: false,
    };
    // One entry into the netns for all NICs.
    const states = present
      ? inNetns(
        path,
        (sock) =>
          recs.map((rec) =>
            inspectNic(sock, { veth: rec.ifName, tap: rec.tap })
          ),
      )
      : recs.map(() => absent);
    const nics = recs.map((rec, i) => {
      const state = states[i];
      if (present && !state.tapPresent) {
        problems.push(`NIC ${rec.index}: TAP ${rec.tap} is missing`);
      }
      if (present && !state.vethPresent) {
        problems.push(`NIC ${rec.index}: veth ${rec.ifName} is missing`);
      }
      if (present && state.tapPresent && state.vethPresent && !state.wired) {
        problems.push(
          `NIC ${rec.index}: ${rec.ifName} and ${rec.tap} are not wired`,
        );
      }
      if (rec.state !== "active") {
        problems.push(
          `NIC ${rec.index}: left ${rec.state} by an interrupted run`,
        );
      }
      return {
        index: rec.index,
        tap: rec.tap,
        ifName: rec.ifName,
        tapPresent: state.tapPresent,
        vethPresent: state.vethPresent,
        wired: state.wired,
      };
    });
    return Promise.resolve({
      vmId,
      ok: problems.length === 0,
      netnsPath: path,
      netns: present,
      nics,
      problems,
    });
  }

  // ----------------------------------------------------------------- recover

  /**
   * After a host reboot (netns and TAPs gone, records present): rebuilds the
   * same netns, sets the same MACs and re-requests the same IPs. NICs whose
   * IPs could not be had again are reported, not fatal to the others.
   */
  async recover(vmId: string): Promise<RecoverResult> {
    const op = "recover";
    validateVmId(op, vmId);
    return await this.#withLock(op, vmId, async () => {
      this.#checkPropagation(op);
      // A crashed remove is finished, not revived. A NIC left `adding` (by a
      // crashed add or recover) keeps its MAC and requested IPs: recovered.
      const hadRecords = this.#store.listNics({ vmId }).length > 0;
      const stale = await this.#tryFinishStaleNics(vmId, ["deleting"]);
      const recs = this.#store.listNics({ vmId })
        .filter((r) => r.state !== "deleting");
      if (!recs.length) {
        if (stale.length) return { vmId, nics: [], problems: stale };
        if (hadRecords) {
          // A delete that crashed: finished now, netns included.
          await this.#deleteVm(vmId, op);
        }
        throw new NotFoundError(
          op,
          vmId,
          `${op} ${vmId}: no records of this VM`,
        );
      }
      const path = this.netnsPath(vmId);
      ensureNetns(this.netnsName(vmId), this.config.netnsDir);
      const out: RecoverResult = { vmId, nics: [], problems: [...stale] };
      for (const rec of recs) {
        try {
          const nic = await this.#recoverNic(rec, path);
          const got = new Set(nic.ips.map((ip) => ip.address));
          const lost = rec.ips.filter((ip) => !got.has(ip.address))
            .map((ip) => ip.address);
          if (lost.length) {
            out.problems.push({
              index: rec.index,
              error: `IP ${lost.join(", ")} not had again; got ${
                [...got].join(", ") || "none"
              }`,
            });
          }
          out.nics.push(nic);
        } catch (e) {
          out.problems.push({ index: rec.index, error: messageOf(e) });
        }
      }
      return out;
    });
  }

  /**
   * Rebuilds one recorded NIC: same index, MAC and IPs. A veto or failure
   * keeps the old record, so the persisted MAC and IPs are never lost and
   * recover can be retried.
   */
  async #recoverNic(rec: NicRecord, path: string): Promise<NicConfig> {
    const op = "recover";
    // Veto point: nothing torn down yet.
    await this.#runHook("beforeAdd", { ...hookFields(rec), operation: op });
    // Whatever survived the reboot (TAP, IPAM lease) is released first, so
    // IPAM can hand the same IP to the same attachment again.
    await this.#teardownNic(rec).catch(() => {});
    this.#store.deleteNic(rec.vmId, rec.index);
    const restore = () => {
      if (!this.#store.getNicByIndex(rec.vmId, rec.index)) {
        this.#store.insertNic(rec);
      }
    };
    let added: NicRecord;
    try {
      added = await this.#addNic(op, rec.vmId, path, {
        spec: {
          index: rec.index,
          mac: rec.mac || undefined,
          ips: rec.ips.map((ip) => `${ip.address}/${ip.prefix}`),
        },
        list: parseConfList(rec.cniConfig, `record ${rec.id}`),
        index: rec.index,
        queues: rec.numQueues,
        queueSize: rec.queueSize,
      });
    } catch (e) {
      restore();
      throw e;
    }
    try {
      await this.#runHook("afterAdd", {
        ...hookFields(added),
        operation: op,
        cniResult: added.cniResult,
      });
    } catch (e) {
      this.#store.markDeleting(rec.vmId, [added.index]);
      try {
        await this.#teardownNic(added);
      } catch (teardown) {
        // The re-added NIC stays recorded (deleting) for delete/gc; the old
        // record cannot come back over it.
        throw new RollbackIncompleteError(
          "recover",
          `${rec.vmId}/${rec.index}`,
          `${messageOf(e)}; rollback failed (${messageOf(teardown)})`,
          e,
        );
      }
      this.#store.deleteNic(rec.vmId, added.index);
      restore();
      throw e;
    }
    return toNicConfig(added);
  }

  // --------------------------------------------------------------- quiesce

  /**
   * Brings the VM's veths down while it is stopped (`true`) or up before it
   * starts (`false`). Returns the NICs concerned.
   */
  async quiesce(vmId: string, quiesced = true): Promise<NicConfig[]> {
    const op = quiesced ? "quiesce" : "unquiesce";
    validateVmId(op, vmId);
    return await this.#withLock(op, vmId, () => {
      const recs = this.#store.listNics({ vmId }).filter((r) =>
        r.state === "active"
      );
      if (!recs.length) {
        throw new NotFoundError(op, vmId, `${op} ${vmId}: no NICs recorded`);
      }
      if (!netnsExists(this.netnsName(vmId), this.config.netnsDir)) {
        throw new NotFoundError(
          op,
          vmId,
          `${op} ${vmId}: netns ${
            this.netnsPath(vmId)
          } is missing (run recover)`,
        );
      }
      const missing = inNetns(
        this.netnsPath(vmId),
        (sock) =>
          recs.filter((r) => !setNicQuiesced(sock, r.ifName, quiesced)).map((
            r,
          ) => r.ifName),
      );
      if (missing.length) {
        throw new OperationError(
          op,
          vmId,
          `${op} ${vmId}: veth ${missing.join(", ")} missing (run recover)`,
        );
      }
      return recs.map(toNicConfig);
    });
  }

  // ------------------------------------------------------------ guest config

  /** The guest side of a VM's records in one of the supported formats. */
  async guestConfig(
    vmId: string,
    format: GuestConfigFormat,
  ): Promise<GuestConfigFile[]> {
    const op = "guest-config";
    validateVmId(op, vmId);
    const nics = await this.list({ vmId });
    if (!nics.length) {
      throw new NotFoundError(op, vmId, `${op} ${vmId}: no NICs recorded`);
    }
    switch (format) {
      case "cmdline": {
        const line = kernelCmdline(vmId, nics);
        if (!line) {
          throw new OperationError(
            op,
            vmId,
            `${op} ${vmId}: NIC 0 has no IPv4 address for the kernel ip= parameter`,
          );
        }
        return [{ name: "", content: line + "\n" }];
      }
      case "netplan":
        return [{ name: "50-vmnic.yaml", content: netplan(nics) }];
      case "networkd":
        return networkd(nics);
      default:
        throw new InvalidInputError(
          op,
          vmId,
          `${op}: unknown format ${
            JSON.stringify(format)
          }: use cmdline, netplan or networkd`,
        );
    }
  }

  // --------------------------------------------------------------------- gc

  /** The hooks in effect, in run order. */
  hooks(): Promise<HookInfo[]> {
    return this.#hooks.list().catch((e) => {
      throw toVmnicError("hooks", this.config.hooksDir, e);
    });
  }

  /**
   * The GC module of this provider: candidates are the VMs in the records
   * and the netns carrying the prefix; whatever is not active is collected
   * like `delete`, skipping VMs another process is working on.
   */
  gcModule(): GcModule<CniGcSnapshot> {
    return {
      name: "cni",
      snapshot: () => Promise.resolve(this.#gcSnapshot()),
      collect: (snapshot, active, opts) =>
        this.#gcCollect(snapshot, active, opts),
    };
  }

  /** Registers {@linkcode gcModule} with an orchestrator (the seed's `RegisterGC`). */
  registerGc(orchestrator: GcOrchestrator): void {
    orchestrator.register(this.gcModule());
  }

  #gcSnapshot(): CniGcSnapshot {
    const prefix = this.config.netnsPrefix;
    const netns = prefix
      ? listNetns(this.config.netnsDir, { stale: true })
        .filter((n) => n.startsWith(prefix)).map(
          (n) => n.slice(prefix.length),
        )
      : [];
    return {
      vmIds: [...new Set([...this.#store.listVmIds(), ...netns])].sort(),
    };
  }

  async #gcCollect(
    snapshot: CniGcSnapshot,
    active: ReadonlySet<string>,
    opts: GcPlan,
  ): Promise<GcReport> {
    const report: GcReport = {
      module: "cni",
      candidates: [],
      collected: [],
      skipped: [],
      errors: [],
      warnings: [],
    };
    const doomed = snapshot.vmIds.filter((id) => !active.has(id));
    report.candidates = doomed;
    if (opts.dryRun) return report;
    let done = 0;
    for (const vmId of doomed) {
      await this.#gcOne(vmId, report);
      opts.onProgress?.(vmId, ++done, doomed.length);
    }
    return report;
  }

  /** Collects one VM for GC, unless it is not vmnic's or is locked. */
  async #gcOne(vmId: string, report: GcReport): Promise<void> {
    if (!isVmId(vmId)) {
      report.skipped.push({ id: vmId, reason: "not a vmnic VM id" });
      return;
    }
    const lock = await acquireVmLock(this.config.runDir, vmId, {
      wait: false,
    });
    if (!lock) {
      report.skipped.push({
        id: vmId,
        reason: "locked by another vmnic process",
      });
      return;
    }
    try {
      const warnings = await this.#deleteVm(vmId, "gc");
      report.collected.push(vmId);
      report.warnings.push(
        ...warnings.map((warning) => ({ id: vmId, warning })),
      );
    } catch (e) {
      report.errors.push({ id: vmId, error: messageOf(e) });
    } finally {
      lock.releaseAndRemove();
    }
  }

  // ---------------------------------------------------------------- helpers

  async #lock(op: string, vmId: string, wait: boolean): Promise<VmLock> {
    const lock = await acquireVmLock(this.config.runDir, vmId, { wait });
    if (!lock) throw new VmBusyError(op, vmId);
    return lock;
  }

  async #withLock<T>(
    op: string,
    vmId: string,
    fn: () => T | Promise<T>,
  ): Promise<T> {
    let lock: VmLock | undefined;
    try {
      lock = await this.#lock(op, vmId, true);
      return await fn();
    } catch (e) {
      throw toVmnicError(op, vmId, e);
    } finally {
      lock?.release();
    }
  }

  #checkPropagation(op: string): void {
    const p = netnsDirPropagates(this.config.netnsDir);
    if (!p.ok) {
      throw new OperationError(op, this.config.netnsDir, `${op}: ${p.reason}`);
    }
  }

  async #runHook(event: HookEvent, input: HookInput): Promise<void> {
    await this.#hooks.run(event, input);
  }
}

/** What the CNI GC module sees: every VM id it could collect. */
export interface CniGcSnapshot {
  /** VM ids in the records or netns carrying the prefix. */
  vmIds: string[];
}

function brokenNote(set: NetworkConfigSet): string {
  return set.errors.length
    ? ` (${set.errors.length} conflist file(s) could not be loaded: ${
      set.errors.map((e) => e.message).join("; ")
    })`
    : "";
}
