/**
 * The CNI runtime: runs the plugins of a network list for ADD, DEL, CHECK,
 * STATUS and GC with the semantics of libcni (prevResult chaining, reverse
 * DEL with the cached result, capability args through `runtimeConfig`,
 * VERSION negotiation), plus a best-effort rollback of a failed ADD.
 *
 * @module
 */
import type {
  AttachmentCache,
  AttachmentKey,
  CachedAttachment,
} from "./cache.ts";
import type { NetworkConfigList, PluginConfig } from "./config.ts";
import { parseConfList } from "./config.ts";
import {
  CniError,
  CniExecError,
  CniGcError,
  CniInvalidArgumentError,
  CniVersionError,
} from "./errors.ts";
import {
  assertPluginType,
  binaryPluginExec,
  DEFAULT_BIN_DIRS,
  DEFAULT_TIMEOUT_MS,
  type PluginExec,
} from "./exec.ts";
import type { CniResult } from "./result.ts";
import { resultForVersion, toCniResult } from "./result.ts";
import { versionAtLeast } from "./version.ts";

/** Per-attachment runtime arguments (libcni's RuntimeConf). */
export interface RuntimeConf {
  /** The container (VM) id; `CNI_CONTAINERID`. */
  containerId: string;
  /** Path of the container's network namespace; `CNI_NETNS` (may be empty on DEL). */
  netns: string;
  /** Interface name inside the namespace; `CNI_IFNAME`. */
  ifName: string;
  /** `CNI_ARGS` pairs, e.g. `[["IgnoreUnknown", "1"], ["IP", "10.88.0.7"]]`. */
  args?: [string, string][];
  /**
   * Capability args (`mac`, `ips`, `portMappings`, `bandwidth`, ...); each
   * plugin gets, in `runtimeConfig`, only those it declares in `capabilities`.
   */
  capabilityArgs?: Record<string, unknown>;
  /**
   * Told the pid of each plugin run for this attachment as it starts (not
   * part of CNI: a caller may note them, to end them should it die first).
   */
  onSpawn?: (pid: number) => void;
  /**
   * Extra environment for each plugin run for this attachment, e.g. the
   * W3C `TRACEPARENT` (CNI_* variables cannot be overridden).
   */
  env?: Record<string, string>;
  /** Told how long the runtime's own steps took (`cni:resolve`, `cni:versions`). */
  onPhase?: (name: string, ms: number) => void;
  /** Told how long each plugin run took, and whether it failed. */
  onPluginDone?: (
    run: { type: string; command: string; ms: number; failed: boolean },
  ) => void;
}

/** Runs `fn`, telling `rt.onPhase` how long it took as `name`. */
async function timed<T>(
  rt: RuntimeConf | null,
  name: string,
  fn: () => Promise<T>,
): Promise<T> {
  if (!rt?.onPhase) return await fn();
  const start = performance.now();
  try {
    return await fn();
  } finally {
    rt.onPhase(name, performance.now() - start);
  }
}

/** What a plugin reports to `VERSION`. */
export interface PluginVersionInfo {
  /** The version the answer is written in. */
  cniVersion: string;
  /** Every CNI version the plugin speaks. */
  supportedVersions: string[];
}

/** An attachment that is still in use, for GC. */
export interface GcAttachment {
  /** The container (VM) id. */
  containerId: string;
  /** The interface name in the container. */
  ifName: string;
}

/** What {@linkcode CniRuntime.gcNetworkList} did. */
export interface GcOutcome {
  /** `done` when the plugins were sent GC, `skipped` when none speaks 1.1. */
  plugins: "done" | "skipped";
  /** Cached attachments that were not valid and were deleted (cache with `list`). */
  staleDeleted: AttachmentKey[];
}

/**
 * A persistent store of plugin VERSION answers. Keys name a binary by path,
 * inode, size and mtime, so a replaced plugin is asked again.
 */
export interface PluginVersionCache {
  /** The answer stored under `key`, or null. */
  get(
    key: string,
  ): PluginVersionInfo | null | Promise<PluginVersionInfo | null>;
  /** Stores an answer. */
  put(key: string, info: PluginVersionInfo): void | Promise<void>;
}

/** Options of a {@linkcode CniRuntime}. */
export interface CniRuntimeOptions {
  /** Plugin search path; default {@linkcode DEFAULT_BIN_DIRS}. */
  binDirs?: readonly string[];
  /** Where ADD results are kept for DEL/CHECK; without one, nothing is kept. */
  cache?: AttachmentCache;
  /** Limit for each plugin call, in ms; default 60 s. */
  timeoutMs?: number;
  /**
   * Keeps VERSION answers across runtimes (processes), keyed by the plugin
   * binary's identity, so a short-lived CLI does not exec VERSION each time.
   */
  versionCache?: PluginVersionCache;
  /** Extra environment for the plugins (added to the inherited one). */
  env?: Record<string, string>;
  /**
   * On timeout, kill the plugin's whole process group (what it forked too),
   * not only the plugin. On by default (about 0.15 ms a call).
   */
  killProcessGroup?: boolean;
  /** How plugins are found and run; default: the binaries in `binDirs`. */
  exec?: PluginExec;
  /**
   * IPAM types whose DEL is run on its own before a DEL of the chain (and
   * before the rollback of a failed ADD): IPAM that must let go while the
   * interface still exists, such as CNI's `dhcp` (its daemon sends the
   * DHCPRELEASE out of the interface, which the bridge plugin's DEL deletes
   * before it runs its IPAM). See {@linkcode CniRuntime.delIpam}. Default:
   * none.
   */
  ipamDelFirst?: readonly string[];
}

const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;
const IFNAME_MAX = 15;

/** Runs CNI network lists; one instance can serve many networks. */
export class CniRuntime {
  /** The plugin search path. */
  readonly binDirs: readonly string[];
  /** The limit for each plugin call, in ms. */
  readonly timeoutMs: number;
  readonly #killProcessGroup: boolean;
  readonly #plugins: PluginExec;
  readonly #cache?: AttachmentCache;
  readonly #env: Record<string, string>;
  /** VERSION answers per plugin binary path, for the runtime's life. */
  readonly #versions = new Map<string, Promise<PluginVersionInfo>>();
  readonly #versionCache?: PluginVersionCache;
  readonly #ipamDelFirst: ReadonlySet<string>;

  /** A runtime; with no options: default bin path, no cache, 60 s timeout. */
  constructor(opts: CniRuntimeOptions = {}) {
    this.binDirs = [...(opts.binDirs ?? DEFAULT_BIN_DIRS)];
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(this.timeoutMs > 0)) {
      throw new CniInvalidArgumentError("timeoutMs", "must be positive");
    }
    this.#cache = opts.cache;
    this.#versionCache = opts.versionCache;
    this.#killProcessGroup = opts.killProcessGroup ?? true;
    this.#plugins = opts.exec ?? binaryPluginExec;
    this.#env = { ...(opts.env ?? {}) };
    this.#ipamDelFirst = new Set(opts.ipamDelFirst ?? []);
  }

  /**
   * ADD: runs the plugins in order, each getting the previous one's result
   * as `prevResult`, and caches the final result with the exact config used.
   * If any step fails, the whole list is DELeted (best effort) so IPAM does
   * not leak, and the original error is rethrown.
   */
  async addNetworkList(
    list: NetworkConfigList,
    rt: RuntimeConf,
  ): Promise<CniResult> {
    checkRuntimeConf(rt, true);
    const paths = await timed(rt, "cni:resolve", () => this.#resolve(list));
    await timed(rt, "cni:versions", () => this.#ensureVersions(list, paths));
    let prev: unknown = undefined;
    try {
      for (const [i, plugin] of list.plugins.entries()) {
        const out = await this.#exec(paths[i], plugin, "ADD", rt, {
          stdin: this.#pluginConf(list, plugin, rt, prev),
        });
        if (out === null) {
          throw new CniExecError({
            kind: "empty-result",
            plugin: plugin.type,
            command: "ADD",
            detail: "exited 0 but printed no result",
          });
        }
        prev = out;
      }
      const result = toCniResult(prev, `${list.plugins.at(-1)!.type} ADD`);
      await this.#cache?.put(keyOf(list, rt), {
        config: list.raw,
        result,
        ...(rt.args ? { args: rt.args } : {}),
        ...(rt.capabilityArgs ? { capabilityArgs: rt.capabilityArgs } : {}),
      });
      return result;
    } catch (e) {
      const errors: unknown[] = [];
      try {
        await this.#delIpam(list, rt, this.#ipamDelFirst, prev);
      } catch (first) {
        errors.push(first);
      }
      errors.push(...await this.#delAll(list, rt, paths, prev, true));
      if (errors.length && e instanceof CniError) {
        e.rollbackError = errors.length === 1
          ? errors[0]
          : new AggregateError(errors);
      }
      throw e;
    }
  }

  /**
   * DEL: runs the plugins in reverse order with `prevResult` (the one given,
   * else the cached one; `null` for none), then drops the cache entry. Stops
   * at the first failure and keeps the entry, so DEL can be retried. No
   * VERSION check: nothing may block a teardown that the plugins can do.
   */
  async delNetworkList(
    list: NetworkConfigList,
    rt: RuntimeConf,
    prevResult?: CniResult | null,
  ): Promise<void> {
    checkRuntimeConf(rt, false);
    const key = keyOf(list, rt);
    if (prevResult === undefined) {
      prevResult = (await this.#cache?.get(key))?.result ?? null;
    }
    const paths = await timed(rt, "cni:resolve", () => this.#resolve(list));
    const prev = prevResult && versionAtLeast(list.cniVersion, "0.4.0")
      ? resultForVersion(prevResult, list.cniVersion)
      : undefined;
    await this.#delIpam(list, rt, this.#ipamDelFirst, prev);
    const errors = await this.#delAll(list, rt, paths, prev, false);
    if (errors.length) throw errors[0];
    await this.#cache?.delete(key);
  }

  /**
   * DEL of the list's IPAM plugins whose type is in `types`, run directly
   * (as a main plugin's DEL runs its IPAM, libcni's `ipam.ExecDel`), in
   * reverse order, each with its main plugin's config and `prevResult`.
   * For IPAM that must let go while the interface still exists: CNI's
   * `dhcp`, whose daemon sends its DHCPRELEASE out of the interface, while
   * the bridge plugin's DEL deletes the interface before it runs its IPAM.
   * The chain's own DEL runs the IPAM again afterwards (IPAM DEL is
   * idempotent). Stops at the first failure. Returns the types it ran.
   */
  async delIpam(
    list: NetworkConfigList,
    rt: RuntimeConf,
    types: ReadonlySet<string>,
    prevResult?: CniResult | null,
  ): Promise<string[]> {
    checkRuntimeConf(rt, false);
    const prev = prevResult && versionAtLeast(list.cniVersion, "0.4.0")
      ? resultForVersion(prevResult, list.cniVersion)
      : undefined;
    return await this.#delIpam(list, rt, types, prev);
  }

  /**
   * DEL of a cached attachment with the config, result and args its ADD used,
   * whatever the conflist on disk says now. `false` when nothing is cached.
   */
  async delCachedAttachment(
    network: string,
    rt: RuntimeConf,
  ): Promise<boolean> {
    const cached = await this.cachedAttachment({
      network,
      containerId: rt.containerId,
      ifName: rt.ifName,
    });
    if (!cached) return false;
    const list = parseConfList(cached.config, `cache of ${network}`);
    await this.delNetworkList(list, {
      ...rt,
      args: rt.args ?? cached.args,
      capabilityArgs: rt.capabilityArgs ?? cached.capabilityArgs,
    }, cached.result);
    return true;
  }

  /** The cached attachment for `key`, or `null` (also without a cache). */
  async cachedAttachment(key: AttachmentKey): Promise<CachedAttachment | null> {
    return (await this.#cache?.get(key)) ?? null;
  }

  /**
   * CHECK: runs the plugins in order with the given (else cached) result.
   * Skipped when the list disables it or its version is below 0.4.0.
   */
  async checkNetworkList(
    list: NetworkConfigList,
    rt: RuntimeConf,
    prevResult?: CniResult | null,
  ): Promise<"done" | "skipped"> {
    if (list.disableCheck || !versionAtLeast(list.cniVersion, "0.4.0")) {
      return "skipped";
    }
    checkRuntimeConf(rt, true);
    const result = prevResult ??
      (await this.#cache?.get(keyOf(list, rt)))?.result;
    if (!result) {
      throw new CniError(
        `CNI CHECK of network ${list.name} for ${rt.containerId}/${rt.ifName}: no result given or cached`,
      );
    }
    const paths = await timed(rt, "cni:resolve", () => this.#resolve(list));
    await timed(rt, "cni:versions", () => this.#ensureVersions(list, paths));
    const prev = resultForVersion(result, list.cniVersion);
    for (const [i, plugin] of list.plugins.entries()) {
      await this.#exec(paths[i], plugin, "CHECK", rt, {
        stdin: this.#pluginConf(list, plugin, rt, prev),
      });
    }
    return "done";
  }

  /**
   * VERSION of a plugin type: what it reports for `cniVersion` (default
   * 1.0.0). Answers are cached per binary path for the runtime's life.
   */
  async versionInfo(
    pluginType: string,
    cniVersion = "1.0.0",
  ): Promise<PluginVersionInfo> {
    assertPluginType(pluginType);
    const path = await this.#plugins.find(pluginType, this.binDirs);
    return this.#versionOf(path, pluginType, cniVersion);
  }

  /**
   * STATUS (CNI 1.1): asks each plugin that speaks the list's version
   * whether it is ready; a plugin error is thrown as is (codes 50, 51).
   * `skipped` when the list is below 1.1.0 or no plugin supports it.
   */
  async getStatus(list: NetworkConfigList): Promise<"ok" | "skipped"> {
    if (!versionAtLeast(list.cniVersion, "1.1.0")) return "skipped";
    const paths = await this.#resolve(list);
    let asked = 0;
    for (const [i, plugin] of list.plugins.entries()) {
      if (!(await this.#supports(paths[i], plugin.type, list.cniVersion))) {
        continue;
      }
      asked++;
      await this.#exec(paths[i], plugin, "STATUS", null, {
        stdin: JSON.stringify(this.#baseConf(list, plugin)),
      });
    }
    return asked ? "ok" : "skipped";
  }

  /**
   * GC: first DELs every cached attachment of the network that is not in
   * `validAttachments` (when the cache can list), then, for lists at 1.1.0
   * or later without `disableGC`, sends GC with `cni.dev/valid-attachments`
   * to every plugin that speaks the version. Every part is attempted; the
   * failures are thrown together as a {@linkcode CniGcError}.
   */
  async gcNetworkList(
    list: NetworkConfigList,
    validAttachments: readonly GcAttachment[],
  ): Promise<GcOutcome> {
    const errors: unknown[] = [];
    const staleDeleted: AttachmentKey[] = [];
    const valid = new Set(
      validAttachments.map((a) => `${a.containerId}\0${a.ifName}`),
    );
    if (this.#cache?.list) {
      let keys: AttachmentKey[] = [];
      try {
        keys = await this.#cache.list(list.name);
      } catch (e) {
        errors.push(e);
      }
      for (const key of keys) {
        if (valid.has(`${key.containerId}\0${key.ifName}`)) continue;
        try {
          await this.delCachedAttachment(list.name, {
            containerId: key.containerId,
            ifName: key.ifName,
            netns: "",
          });
          staleDeleted.push(key);
        } catch (e) {
          errors.push(e);
        }
      }
    }
    let plugins: GcOutcome["plugins"] = "skipped";
    if (versionAtLeast(list.cniVersion, "1.1.0") && !list.disableGC) {
      const attachments = validAttachments.map((a) => ({
        containerID: a.containerId,
        ifname: a.ifName,
      }));
      for (const plugin of list.plugins) {
        try {
          const path = await this.#plugins.find(plugin.type, this.binDirs);
          if (!(await this.#supports(path, plugin.type, list.cniVersion))) {
            continue;
          }
          plugins = "done";
          await this.#exec(path, plugin, "GC", null, {
            stdin: JSON.stringify({
              ...this.#baseConf(list, plugin),
              "cni.dev/valid-attachments": attachments,
            }),
          });
        } catch (e) {
          errors.push(e);
        }
      }
    }
    if (errors.length) throw new CniGcError(list.name, errors);
    return { plugins, staleDeleted };
  }

  /**
   * The executables of the list's plugins, in order: throws
   * `CniPluginNotFoundError` for the first missing one. Lets a caller
   * refuse before it changes anything.
   */
  findPlugins(list: NetworkConfigList): Promise<string[]> {
    return this.#resolve(list);
  }

  /** Resolves every plugin first, so a missing one fails before any runs. */
  async #resolve(list: NetworkConfigList): Promise<string[]> {
    // IPAM plugins are run by the main plugins; a missing one would fail
    // half-way through the chain.
    const ipamTypes = new Set(
      list.plugins.map((p) =>
        (p.conf.ipam as { type?: unknown } | undefined)?.type
      )
        .filter((t): t is string => typeof t === "string" && t !== ""),
    );
    const [paths] = await Promise.all([
      Promise.all(
        list.plugins.map((p) => this.#plugins.find(p.type, this.binDirs)),
      ),
      Promise.all(
        [...ipamTypes].map((t) => this.#plugins.find(t, this.binDirs)),
      ),
    ]);
    return paths;
  }

  async #ensureVersions(
    list: NetworkConfigList,
    paths: string[],
  ): Promise<void> {
    for (const [i, plugin] of list.plugins.entries()) {
      const info = await this.#versionOf(
        paths[i],
        plugin.type,
        list.cniVersion,
      );
      if (!info.supportedVersions.includes(list.cniVersion)) {
        throw new CniVersionError(
          plugin.type,
          paths[i],
          list.cniVersion,
          info.supportedVersions,
        );
      }
    }
  }

  async #supports(
    path: string,
    type: string,
    version: string,
  ): Promise<boolean> {
    const info = await this.#versionOf(path, type, version);
    return info.supportedVersions.includes(version);
  }

  #versionOf(
    path: string,
    pluginType: string,
    cniVersion: string,
  ): Promise<PluginVersionInfo> {
    let pending = this.#versions.get(path);
    if (!pending) {
      pending = this.#cachedVersion(path, pluginType, cniVersion);
      this.#versions.set(path, pending);
      // A failed answer is not kept: the next call asks again.
      pending.catch(() => this.#versions.delete(path));
    }
    return pending;
  }
  /**
   * The VERSION answer from the persistent cache when the binary is the one
   * that gave it (same inode, size and mtime), else asked and stored.
   */
  async #cachedVersion(
    path: string,
    pluginType: string,
    cniVersion: string,
  ): Promise<PluginVersionInfo> {
    const cache = this.#versionCache;
    const key = cache ? await this.#plugins.identity(path) : null;
    if (!cache || key === null) {
      return await this.#askVersion(path, pluginType, cniVersion);
    }
    const hit = await cache.get(key);
    if (hit) return hit;
    const info = await this.#askVersion(path, pluginType, cniVersion);
    await cache.put(key, info);
    return info;
  }

  async #askVersion(
    path: string,
    pluginType: string,
    cniVersion: string,
  ): Promise<PluginVersionInfo> {
    const out = await this.#plugins.exec({
      path,
      pluginType,
      command: "VERSION",
      stdin: JSON.stringify({ cniVersion }),
      env: this.#cniEnv("VERSION", null),
      timeoutMs: this.timeoutMs,
      killProcessGroup: this.#killProcessGroup,
    });
    const info = out as Partial<PluginVersionInfo> | null;
    if (
      !info || typeof info.cniVersion !== "string" ||
      !Array.isArray(info.supportedVersions) ||
      !info.supportedVersions.every((v) => typeof v === "string")
    ) {
      throw new CniExecError({
        kind: out === null ? "empty-result" : "invalid-output",
        plugin: pluginType,
        command: "VERSION",
        detail: `answer is not {cniVersion, supportedVersions}: ${
          JSON.stringify(out)?.slice(0, 200)
        }`,
      });
    }
    return {
      cniVersion: info.cniVersion,
      supportedVersions: [...info.supportedVersions],
    };
  }

  /** {@linkcode CniRuntime.delIpam} with `prev` in the list's version. */
  async #delIpam(
    list: NetworkConfigList,
    rt: RuntimeConf,
    types: ReadonlySet<string>,
    prev: unknown,
  ): Promise<string[]> {
    const ran: string[] = [];
    if (!types.size) return ran;
    for (let i = list.plugins.length - 1; i >= 0; i--) {
      const plugin = list.plugins[i];
      const type = ipamTypeOf(plugin);
      if (type === null || !types.has(type)) continue;
      const path = await timed(
        rt,
        "cni:resolve",
        () => this.#plugins.find(type, this.binDirs),
      );
      await this.#exec(path, { ...plugin, type }, "DEL", rt, {
        stdin: this.#pluginConf(list, plugin, rt, prev),
      });
      ran.push(type);
    }
    return ran;
  }

  /** DEL of every plugin in reverse; collects errors, stops at the first unless `bestEffort`. */
  async #delAll(
    list: NetworkConfigList,
    rt: RuntimeConf,
    paths: string[],
    prev: unknown,
    bestEffort: boolean,
  ): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (let i = list.plugins.length - 1; i >= 0; i--) {
      const plugin = list.plugins[i];
      try {
        await this.#exec(paths[i], plugin, "DEL", rt, {
          stdin: this.#pluginConf(list, plugin, rt, prev),
        });
      } catch (e) {
        errors.push(e);
        if (!bestEffort) break;
      }
    }
    return errors;
  }

  async #exec(
    path: string,
    plugin: PluginConfig,
    command: string,
    rt: RuntimeConf | null,
    io: { stdin: string },
  ): Promise<unknown> {
    const start = performance.now();
    let failed = true;
    try {
      const out = await this.#plugins.exec({
        path,
        pluginType: plugin.type,
        command,
        stdin: io.stdin,
        env: this.#cniEnv(command, rt),
        timeoutMs: this.timeoutMs,
        killProcessGroup: this.#killProcessGroup,
        ...(rt?.onSpawn ? { onSpawn: rt.onSpawn } : {}),
      });
      failed = false;
      return out;
    } finally {
      rt?.onPluginDone?.({
        type: plugin.type,
        command,
        ms: performance.now() - start,
        failed,
      });
    }
  }

  #cniEnv(command: string, rt: RuntimeConf | null): Record<string, string> {
    return {
      ...this.#env,
      ...(rt?.env ?? {}),
      CNI_COMMAND: command,
      CNI_CONTAINERID: rt?.containerId ?? "",
      CNI_NETNS: rt?.netns ?? "",
      CNI_IFNAME: rt?.ifName ?? "",
      CNI_ARGS: rt?.args ? formatCniArgs(rt.args) : "",
      CNI_PATH: this.binDirs.join(":"),
    };
  }

  #baseConf(
    list: NetworkConfigList,
    plugin: PluginConfig,
  ): Record<string, unknown> {
    return { ...plugin.conf, name: list.name, cniVersion: list.cniVersion };
  }

  /** The plugin's stdin: its config with name, version, runtimeConfig, prevResult. */
  #pluginConf(
    list: NetworkConfigList,
    plugin: PluginConfig,
    rt: RuntimeConf,
    prev: unknown,
  ): string {
    const conf = this.#baseConf(list, plugin);
    const runtimeConfig: Record<string, unknown> = {};
    for (const [cap, declared] of Object.entries(plugin.capabilities)) {
      if (declared && rt.capabilityArgs && cap in rt.capabilityArgs) {
        runtimeConfig[cap] = rt.capabilityArgs[cap];
      }
    }
    if (Object.keys(runtimeConfig).length) conf.runtimeConfig = runtimeConfig;
    if (prev !== undefined && prev !== null) conf.prevResult = prev;
    return JSON.stringify(conf);
  }
}

/** The IPAM type a plugin's config names (`ipam.type`), or null. */
export function ipamTypeOf(plugin: PluginConfig): string | null {
  const type = (plugin.conf.ipam as { type?: unknown } | undefined)?.type;
  return typeof type === "string" && type !== "" ? type : null;
}

/** `CNI_ARGS` text from pairs: `K1=V1;K2=V2`. */
export function formatCniArgs(args: readonly [string, string][]): string {
  return args.map(([k, v]) => {
    if (!k || /[=;]/.test(k)) {
      throw new CniInvalidArgumentError(
        "CNI_ARGS",
        `bad key ${JSON.stringify(k)}`,
      );
    }
    if (v.includes(";")) {
      throw new CniInvalidArgumentError(
        "CNI_ARGS",
        `value of ${k} contains ';': ${JSON.stringify(v)}`,
      );
    }
    return `${k}=${v}`;
  }).join(";");
}

function keyOf(list: NetworkConfigList, rt: RuntimeConf): AttachmentKey {
  return { network: list.name, containerId: rt.containerId, ifName: rt.ifName };
}

function checkRuntimeConf(rt: RuntimeConf, needNetns: boolean): void {
  if (!CONTAINER_ID_RE.test(rt.containerId)) {
    throw new CniInvalidArgumentError(
      "containerId",
      `${
        JSON.stringify(rt.containerId)
      } must start with a letter or digit and hold only letters, digits, '_', '.', '-'`,
    );
  }
  if (
    !rt.ifName || rt.ifName.length > IFNAME_MAX || /[/\s:]/.test(rt.ifName) ||
    rt.ifName === "." || rt.ifName === ".."
  ) {
    throw new CniInvalidArgumentError(
      "ifName",
      `${
        JSON.stringify(rt.ifName)
      } is not a valid interface name (1-${IFNAME_MAX} chars, no '/', ':' or spaces)`,
    );
  }
  if (needNetns && !rt.netns) {
    throw new CniInvalidArgumentError(
      "netns",
      "a network namespace path is required",
    );
  }
  if (rt.args) formatCniArgs(rt.args);
}
