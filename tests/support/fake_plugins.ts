/**
 * Fake CNI plugins behind {@linkcode PluginExec} (src/cni/exec.ts), working
 * on a {@linkcode FakeKernel}: so `CniRuntime` and the provider run their
 * chains without binaries or root.
 *
 * - `bridge` with `host-local` IPAM, as Debian's containernetworking-plugins
 *   behave for what vmnic relies on: ADD makes the bridge (host netns), a
 *   veth whose container end is CNI_IFNAME in CNI_NETNS and whose host end
 *   is on the bridge, leases an address and puts it on the container end,
 *   and answers with interfaces (bridge, host veth, container veth), ips,
 *   routes and dns; DEL removes the container veth (its host end with it)
 *   and releases the lease, idempotently; CHECK looks at the lease, the
 *   bridge, both veth ends and the prevResult's addresses.
 * - `noop`: passes prevResult through (any other installed type does too).
 * - `fail`: refuses the commands its config's `failOn` lists (default ADD)
 *   with `errorCode` / `errorMsg`.
 *
 * The skel layer's checks come first, with its error codes: required env
 * (4), config decoding (6), a cniVersion the plugin does not speak (1).
 *
 * For tests: {@linkcode FakePlugins.failNext} (a CNI error, a crash, a
 * timeout, garbage on stdout; before or after the plugin did its work),
 * {@linkcode FakePlugins.calls}, {@linkcode FakePlugins.leases}.
 *
 * @module
 */
import {
  CniExecError,
  CniPluginError,
  CniPluginNotFoundError,
} from "../../src/cni/errors.ts";
import {
  assertPluginType,
  type PluginExec,
  type PluginExecRequest,
} from "../../src/cni/exec.ts";
import { compareCniVersions, versionAtLeast } from "../../src/cni/version.ts";
import { IfAddr } from "../../src/netlink/constants.ts";
import { Errno } from "../../src/sys/errno.ts";
import { isErrno, KernelError } from "../../src/sys/errors.ts";
import { type FakeKernel, HOST_NETNS } from "./fake_kernel.ts";
import {
  HostLocalIpam,
  type IpamAllocation,
  type IpamConfig,
  IpamError,
  type Lease,
} from "./fake_ipam.ts";

export type { Lease } from "./fake_ipam.ts";

/** CNI error codes (SPEC.md, "Error"; 999 is the skel's catch-all). */
export const CniErrorCode = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODING_FAILURE: 6,
  INVALID_NETWORK_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  INTERNAL: 999,
} as const;

/** What the fake plugins report to VERSION unless told otherwise. */
export const DEFAULT_SUPPORTED_VERSIONS: readonly string[] = [
  "0.3.0",
  "0.3.1",
  "0.4.0",
  "1.0.0",
];

/** The plugin types installed unless told otherwise. */
export const FAKE_PLUGIN_TYPES: readonly string[] = [
  "bridge",
  "host-local",
  "noop",
  "fail",
];

/** The bridge plugin's default bridge. */
export const DEFAULT_BRIDGE = "cni0";
/** The bridge plugin's default MTU. */
const DEFAULT_MTU = 1500;
/** Hex digits of the random part of a host veth name (`veth` + 4 bytes). */
const HOST_VETH_HEX = 8;
/** Multiplier spreading counter values over host veth names (Knuth). */
const NAME_SPREAD = 0x9e3779b1;
/** The exit status of a Go plugin that panics. */
const PANIC_EXIT = 2;
/** The `fail` plugin's defaults. */
const FAIL_DEFAULT_COMMANDS = ["ADD"];
const FAIL_DEFAULT_MSG = "fake plugin failure";

/** How an injected failure shows. */
export type FakePluginFailure =
  | "plugin-error"
  | "crash"
  | "timeout"
  | "garbage";

/**
 * A plugin call to fail. Given fields must match; without `command` every
 * command but VERSION matches.
 */
export interface PluginFailureRule {
  /** The plugin type. */
  type?: string;
  /** The CNI command. */
  command?: string;
  /**
   * `plugin-error` (a CNI error object: CniPluginError, default), `crash`
   * (a panic: exit 2, nothing on stdout), `timeout` (killed at once, not
   * after the runtime's timeout), `garbage` (stdout is not JSON).
   */
  error?: FakePluginFailure;
  /** How many matching calls fail (default 1). */
  times?: number;
  /**
   * Fail after the plugin did its work (a timeout once the veth and the
   * lease exist), instead of before it.
   */
  afterEffect?: boolean;
  /** CNI error code of a `plugin-error` (default 999). */
  code?: number;
  /** Its message. */
  msg?: string;
}

/** One plugin call, as {@linkcode FakePlugins.calls} keeps it. */
export interface PluginCall {
  /** Plugin type. */
  type: string;
  /** CNI command. */
  command: string;
  /** CNI_CONTAINERID. */
  containerId: string;
  /** CNI_IFNAME. */
  ifName: string;
  /** CNI_NETNS. */
  netns: string;
  /** It succeeded. */
  ok: boolean;
  /** Why not. */
  error?: string;
  /**
   * bridge DEL: the global addresses the container veth had when it was
   * deleted (what the real plugin's ipMasq teardown works from).
   */
  containerAddrs?: string[];
}

/** Options of {@linkcode FakePlugins}. */
export interface FakePluginsOptions {
  /** Installed plugin types (default {@linkcode FAKE_PLUGIN_TYPES}). */
  types?: readonly string[];
  /** VERSION's supportedVersions (default {@linkcode DEFAULT_SUPPORTED_VERSIONS}). */
  supportedVersions?: readonly string[];
}

/** The plugin config fields the fakes read. */
interface PluginConf {
  cniVersion: string;
  name: string;
  type?: string;
  bridge?: string;
  mtu?: number;
  isGateway?: boolean;
  ipMasq?: boolean;
  ipam?: IpamConfig;
  runtimeConfig?: { ips?: string[]; mac?: string };
  args?: { cni?: { ips?: string[] } };
  prevResult?: Result;
  failOn?: string[];
  errorCode?: number;
  errorMsg?: string;
  "cni.dev/valid-attachments"?: { containerID: string; ifname: string }[];
}

/** A CNI result as the fakes write and read it. */
interface Result {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number }[];
  routes?: { dst: string; gw?: string }[];
  dns?: Record<string, unknown>;
}

/** The CNI_* variables, read once. */
interface Env {
  command: string;
  containerId: string;
  netns: string;
  ifName: string;
  args: string;
  path: string;
}

/** A plugin's own refusal: becomes a CniPluginError (exit 1). */
class PluginFailure extends Error {
  constructor(readonly code: number, msg: string, readonly details?: string) {
    super(msg);
  }
}

function fail(code: number, msg: string, details?: string): never {
  throw new PluginFailure(code, msg, details);
}

/** Fake plugins over a fake kernel. */
export class FakePlugins implements PluginExec {
  /** Every call, in order (VERSION included). */
  readonly calls: PluginCall[] = [];
  /** host-local's leases. */
  readonly ipam: HostLocalIpam = new HostLocalIpam();
  readonly #kernel: FakeKernel;
  readonly #installed: Set<string>;
  #versions: readonly string[];
  readonly #versionsByType = new Map<string, readonly string[]>();
  #rules: (PluginFailureRule & { times: number })[] = [];
  /** Bumped when VERSION answers change: a "replaced binary". */
  #generation = 0;
  #vethCounter = 0;

  constructor(kernel: FakeKernel, opts: FakePluginsOptions = {}) {
    this.#kernel = kernel;
    this.#installed = new Set(opts.types ?? FAKE_PLUGIN_TYPES);
    this.#versions = [
      ...(opts.supportedVersions ?? DEFAULT_SUPPORTED_VERSIONS),
    ];
  }

  // ---------------------------------------------------------- PluginExec

  /** `dir/type` in the first non-empty dir when `type` is installed. */
  find(type: string, dirs: readonly string[]): Promise<string> {
    assertPluginType(type);
    const dir = dirs.find((d) => d);
    if (!this.#installed.has(type) || dir === undefined) {
      return Promise.reject(new CniPluginNotFoundError(type, dirs));
    }
    return Promise.resolve(`${dir.replace(/\/+$/, "")}/${type}`);
  }

  /** Stable per path until the VERSION answers change. */
  identity(path: string): Promise<string | null> {
    return Promise.resolve(`fake:${path}#${this.#generation}`);
  }

  /** Runs one command of one fake plugin. */
  async exec(req: PluginExecRequest): Promise<unknown> {
    const env = readEnv(req.env, req.command);
    const call: PluginCall = {
      type: req.pluginType,
      command: req.command,
      containerId: env.containerId,
      ifName: env.ifName,
      netns: env.netns,
      ok: false,
    };
    this.calls.push(call);
    await Promise.resolve(); // a plugin answers asynchronously
    try {
      const out = this.#run(req, env, call);
      call.ok = true;
      return out;
    } catch (e) {
      call.error = e instanceof Error ? e.message : String(e);
      throw e;
    }
  }

  // ------------------------------------------------------- test controls

  /** Makes the next matching call(s) fail. */
  failNext(rule: PluginFailureRule = {}): void {
    this.#rules.push({ ...rule, times: rule.times ?? 1 });
  }

  /** Drops every pending failure rule. */
  clearFailures(): void {
    this.#rules = [];
  }

  /** The leases host-local holds (of one network). */
  leases(network?: string): Lease[] {
    return this.ipam.leases(network);
  }

  /** Makes `type` findable (an unknown type behaves as `noop`). */
  install(type: string): void {
    this.#installed.add(type);
  }

  /** Makes `type` not found. */
  uninstall(type: string): void {
    this.#installed.delete(type);
  }

  /** Changes what VERSION reports (of one type, or of all). */
  setSupportedVersions(versions: readonly string[], type?: string): void {
    if (type === undefined) this.#versions = [...versions];
    else this.#versionsByType.set(type, [...versions]);
    this.#generation++;
  }

  /** The calls of one command (and type). */
  callsOf(command: string, type?: string): PluginCall[] {
    return this.calls.filter((c) =>
      c.command === command && (type === undefined || c.type === type)
    );
  }

  // ------------------------------------------------------------- running

  #run(req: PluginExecRequest, env: Env, call: PluginCall): unknown {
    const what = { plugin: req.pluginType, command: req.command };
    if (!this.#installed.has(req.pluginType)) {
      throw new CniExecError({
        ...what,
        kind: "spawn",
        detail: `cannot start ${req.path}: No such file or directory`,
      });
    }
    const rule = this.#takeRule(req.pluginType, req.command);
    if (rule && !rule.afterEffect) throw injected(rule, req);
    let out: unknown;
    try {
      out = this.#dispatch(req, env, call);
    } catch (e) {
      if (e instanceof PluginFailure) {
        throw new CniPluginError({
          ...what,
          code: e.code,
          msg: e.message,
          details: e.details,
          exitCode: 1,
          stderr: "",
        });
      }
      throw e;
    }
    if (rule) throw injected(rule, req);
    return out;
  }

  #takeRule(
    type: string,
    command: string,
  ): PluginFailureRule | undefined {
    const rule = this.#rules.find((r) =>
      (r.type === undefined || r.type === type) &&
      (r.command === undefined ? command !== "VERSION" : r.command === command)
    );
    if (rule && --rule.times <= 0) {
      this.#rules = this.#rules.filter((r) => r !== rule);
    }
    return rule;
  }

  #supported(type: string): readonly string[] {
    return this.#versionsByType.get(type) ?? this.#versions;
  }

  /** The skel layer (env, config, version), then the plugin. */
  #dispatch(req: PluginExecRequest, env: Env, call: PluginCall): unknown {
    const supported = this.#supported(req.pluginType);
    if (req.command === "VERSION") {
      const current = [...supported].sort(compareCniVersions).at(-1) ??
        "1.0.0";
      return { cniVersion: current, supportedVersions: [...supported] };
    }
    checkEnv(env);
    const conf = parseConf(req.stdin);
    if (!supported.includes(conf.cniVersion)) {
      fail(
        CniErrorCode.INCOMPATIBLE_VERSION,
        "incompatible CNI versions",
        `config is "${conf.cniVersion}", plugin supports ${
          JSON.stringify(supported)
        }`,
      );
    }
    if (
      (env.command === "STATUS" || env.command === "GC") &&
      !versionAtLeast(conf.cniVersion, "1.1.0")
    ) {
      fail(
        CniErrorCode.INCOMPATIBLE_VERSION,
        `config version does not allow ${env.command}`,
      );
    }
    switch (req.pluginType) {
      case "bridge":
        return this.#bridge(conf, env, call);
      case "fail":
        if ((conf.failOn ?? FAIL_DEFAULT_COMMANDS).includes(env.command)) {
          fail(
            conf.errorCode ?? CniErrorCode.INTERNAL,
            conf.errorMsg ?? FAIL_DEFAULT_MSG,
          );
        }
        return passThrough(conf, env);
      default:
        return passThrough(conf, env);
    }
  }

  #bridge(conf: PluginConf, env: Env, call: PluginCall): unknown {
    switch (env.command) {
      case "ADD":
        return this.#bridgeAdd(conf, env);
      case "DEL":
        this.#bridgeDel(conf, env, call);
        return null;
      case "CHECK":
        this.#bridgeCheck(conf, env);
        return null;
      case "GC":
        if (isHostLocal(conf)) {
          this.ipam.gc(
            conf.name,
            conf.ipam!,
            (conf["cni.dev/valid-attachments"] ?? []).map((a) => ({
              containerId: a.containerID,
              ifName: a.ifname,
            })),
          );
        }
        return null;
      default: // STATUS
        return null;
    }
  }

  #bridgeAdd(conf: PluginConf, env: Env): object {
    const k = this.#kernel;
    const args = parseCniArgs(env.args);
    checkArgs(args, ["MAC"]);
    const br = conf.bridge ?? DEFAULT_BRIDGE;
    if (!k.hasNetns(env.netns)) {
      fail(
        CniErrorCode.INTERNAL,
        `failed to open netns "${env.netns}": failed to Statfs ` +
          `"${env.netns}": no such file or directory`,
      );
    }
    const bridge = k.link(HOST_NETNS, br);
    if (bridge && bridge.kind !== "bridge") {
      fail(
        CniErrorCode.INTERNAL,
        `failed to create bridge "${br}": "${br}" already exists but is not a bridge`,
      );
    }
    kernelStep(() => {
      if (!bridge) k.createBridge(HOST_NETNS, br, { mtu: conf.mtu });
      k.setLinkUp(HOST_NETNS, br);
    });
    if (k.link(env.netns, env.ifName)) {
      fail(
        CniErrorCode.INTERNAL,
        `container veth name provided (${env.ifName}) already exists`,
      );
    }
    const hostName = this.#hostVethName();
    const mac = conf.runtimeConfig?.mac ?? args.get("MAC");
    kernelStep(() => {
      k.createVethPair({
        netns: env.netns,
        name: env.ifName,
        hostName,
        mtu: conf.mtu ?? DEFAULT_MTU,
        ...(mac ? { mac } : {}),
      });
      k.setLinkUp(env.netns, env.ifName);
      k.setLinkUp(HOST_NETNS, hostName);
      k.setMaster(HOST_NETNS, hostName, br);
    });
    let allocs: IpamAllocation[] = [];
    if (conf.ipam?.type) {
      allocs = this.#ipamAdd(conf, env, args);
      kernelStep(() => {
        for (const a of allocs) k.addAddress(env.netns, env.ifName, a.address);
        if (conf.isGateway) {
          for (const a of allocs) {
            const prefix = a.address.slice(a.address.indexOf("/"));
            try {
              k.addAddress(HOST_NETNS, br, `${a.gateway}${prefix}`);
            } catch (e) {
              if (!isErrno(e, Errno.EEXIST)) throw e;
            }
          }
        }
      });
    }
    const macOf = (netns: string, name: string) => k.link(netns, name)?.mac;
    return formatResult(conf.cniVersion, {
      cniVersion: conf.cniVersion,
      interfaces: [
        { name: br, mac: macOf(HOST_NETNS, br) },
        { name: hostName, mac: macOf(HOST_NETNS, hostName) },
        {
          name: env.ifName,
          mac: macOf(env.netns, env.ifName),
          sandbox: env.netns,
        },
      ],
      ips: allocs.map((a) => ({
        address: a.address,
        gateway: a.gateway,
        interface: 2,
      })),
      routes: conf.ipam?.routes ?? [],
      dns: {},
    });
  }

  /** host-local ADD, with the addresses asked for in its three ways. */
  #ipamAdd(
    conf: PluginConf,
    env: Env,
    args: Map<string, string>,
  ): IpamAllocation[] {
    requireHostLocal(conf, env);
    checkArgs(args, ["IP"]);
    const requested = [
      ...(args.get("IP")?.split(",").map((s) => s.trim()).filter(Boolean) ??
        []),
      ...(conf.args?.cni?.ips ?? []),
      ...(conf.runtimeConfig?.ips ?? []),
    ];
    try {
      return this.ipam.allocate(
        conf.name,
        conf.ipam!,
        env.containerId,
        env.ifName,
        requested,
      );
    } catch (e) {
      if (e instanceof IpamError) fail(CniErrorCode.INTERNAL, e.message);
      throw e;
    }
  }

  /** As the real one: the container veth first, then the lease. */
  #bridgeDel(conf: PluginConf, env: Env, call: PluginCall): void {
    const k = this.#kernel;
    if (env.netns && k.hasNetns(env.netns) && k.link(env.netns, env.ifName)) {
      call.containerAddrs = k.addrs(env.netns, env.ifName)
        .filter((a) => a.scope === IfAddr.RT_SCOPE_UNIVERSE)
        .map((a) => a.cidr);
      k.deleteLink(env.netns, env.ifName);
    }
    if (conf.ipam?.type) {
      requireHostLocal(conf, env);
      this.ipam.release(conf.name, conf.ipam, env.containerId, env.ifName);
    }
  }

  /** cmdCheck of the bridge plugin, with host-local's CHECK first. */
  #bridgeCheck(conf: PluginConf, env: Env): void {
    const k = this.#kernel;
    const prev = conf.prevResult ??
      fail(CniErrorCode.INTERNAL, "Required prevResult missing");
    if (conf.ipam?.type) {
      requireHostLocal(conf, env);
      if (
        !this.ipam.held(conf.name, conf.ipam, env.containerId, env.ifName)
          .length
      ) {
        fail(
          CniErrorCode.INTERNAL,
          `host-local: Failed to find address added by container ${env.containerId}`,
        );
      }
    }
    if (!k.hasNetns(env.netns)) {
      fail(CniErrorCode.INTERNAL, `failed to open netns "${env.netns}"`);
    }
    const br = conf.bridge ?? DEFAULT_BRIDGE;
    const interfaces = prev.interfaces ?? [];
    const cont = interfaces.find((i) =>
      i.name === env.ifName && i.sandbox === env.netns
    );
    const bridge = k.link(HOST_NETNS, br);
    if (!bridge) {
      fail(
        CniErrorCode.INTERNAL,
        `CNI created bridge ${br} in host namespace was not found`,
      );
    }
    if (bridge.kind !== "bridge") {
      fail(
        CniErrorCode.INTERNAL,
        `Error: Container interface ${br} not of type bridge`,
      );
    }
    if (!cont) {
      fail(
        CniErrorCode.INTERNAL,
        `CNI created interface in container ${env.ifName} not found`,
      );
    }
    const link = k.link(env.netns, env.ifName) ??
      fail(
        CniErrorCode.INTERNAL,
        `Container Interface name in prevResult: ${env.ifName} not found`,
      );
    if (link.kind !== "veth") {
      fail(
        CniErrorCode.INTERNAL,
        `Error: Container interface ${link.name} not of type veth`,
      );
    }
    if (cont.mac && cont.mac !== link.mac) {
      fail(
        CniErrorCode.INTERNAL,
        `Interface ${cont.name} Mac ${cont.mac} doesn't match container Mac: ${link.mac}`,
      );
    }
    let vethFound = false;
    for (const intf of interfaces) {
      if (intf.name === br || intf.name === env.ifName || intf.sandbox) {
        continue;
      }
      const host = k.link(HOST_NETNS, intf.name) ??
        fail(
          CniErrorCode.INTERNAL,
          `Error: Host Interface name in prevResult: ${intf.name} not found`,
        );
      if (host.kind !== "veth") {
        fail(
          CniErrorCode.INTERNAL,
          `Error: Container interface ${host.name} not of type veth/p2p`,
        );
      }
      if (host.master !== bridge.index || host.peer?.index !== link.index) {
        continue;
      }
      if (intf.mac && intf.mac !== host.mac) {
        fail(
          CniErrorCode.INTERNAL,
          `Interface ${intf.name} Mac ${intf.mac} doesn't match: ${host.mac}`,
        );
      }
      vethFound = true;
      break;
    }
    if (!vethFound) {
      fail(
        CniErrorCode.INTERNAL,
        `CNI veth created for bridge ${br} was not found`,
      );
    }
    const have = new Set(k.addrs(env.netns, env.ifName).map((a) => a.cidr));
    const contIdx = interfaces.indexOf(cont);
    for (const ip of prev.ips ?? []) {
      if (ip.interface !== undefined && ip.interface !== contIdx) continue;
      if (!have.has(ip.address)) {
        fail(
          CniErrorCode.INTERNAL,
          `Failed to match addr ${ip.address} on interface ${env.ifName}`,
        );
      }
    }
  }

  /** `veth` + 8 hex digits, as the bridge plugin names the host end. */
  #hostVethName(): string {
    for (;;) {
      const n = Math.imul(++this.#vethCounter, NAME_SPREAD) >>> 0;
      const name = `veth${n.toString(16).padStart(HOST_VETH_HEX, "0")}`;
      if (!this.#kernel.link(HOST_NETNS, name)) return name;
    }
  }
}

// ------------------------------------------------------------------ helpers

/** The CNI_* variables of a request. */
function readEnv(env: Record<string, string>, command: string): Env {
  return {
    command: env.CNI_COMMAND ?? command,
    containerId: env.CNI_CONTAINERID ?? "",
    netns: env.CNI_NETNS ?? "",
    ifName: env.CNI_IFNAME ?? "",
    args: env.CNI_ARGS ?? "",
    path: env.CNI_PATH ?? "",
  };
}

/** skel's getCmdArgsFromEnv: the variables each command needs. */
function checkEnv(env: Env): void {
  const needs: Record<string, (keyof Env)[]> = {
    ADD: ["containerId", "netns", "ifName", "path"],
    CHECK: ["containerId", "netns", "ifName", "path"],
    DEL: ["containerId", "ifName", "path"],
    STATUS: [],
    GC: [],
  };
  const names: Record<string, string> = {
    containerId: "CNI_CONTAINERID",
    netns: "CNI_NETNS",
    ifName: "CNI_IFNAME",
    path: "CNI_PATH",
  };
  const need = needs[env.command] ??
    fail(CniErrorCode.INVALID_ENV, `unknown CNI_COMMAND: ${env.command}`);
  const missing = need.filter((k) => !env[k]).map((k) => names[k]);
  if (missing.length) {
    fail(
      CniErrorCode.INVALID_ENV,
      `required env variables [${missing.join(",")}] missing`,
    );
  }
}

function parseConf(stdin: string): PluginConf {
  let obj: unknown;
  try {
    obj = JSON.parse(stdin);
  } catch (e) {
    fail(
      CniErrorCode.DECODING_FAILURE,
      "error reading network config",
      (e as Error).message,
    );
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    fail(CniErrorCode.DECODING_FAILURE, "network config is not an object");
  }
  const conf = obj as Partial<PluginConf>;
  return {
    ...conf,
    cniVersion: conf.cniVersion ?? "0.1.0",
    name: conf.name ?? "",
  };
}

/** `K1=V1;K2=V2`, as types.LoadArgs splits it. */
function parseCniArgs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!text) return out;
  for (const pair of text.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0) fail(CniErrorCode.INTERNAL, `ARGS: invalid pair "${pair}"`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/** types.LoadArgs: keys the plugin does not know fail unless IgnoreUnknown. */
function checkArgs(args: Map<string, string>, known: string[]): void {
  if (/^(1|true)$/i.test(args.get("IgnoreUnknown") ?? "")) return;
  const unknown = [...args.keys()].filter((k) =>
    k !== "IgnoreUnknown" && !known.includes(k)
  );
  if (unknown.length) {
    fail(
      CniErrorCode.INTERNAL,
      `ARGS: unknown args [${unknown.map((k) => JSON.stringify(k)).join(" ")}]`,
    );
  }
}

function isHostLocal(conf: PluginConf): boolean {
  return conf.ipam?.type === "host-local";
}

/** The IPAM plugin is exec'd from CNI_PATH: only host-local is there. */
function requireHostLocal(conf: PluginConf, env: Env): void {
  if (!isHostLocal(conf)) {
    fail(
      CniErrorCode.INTERNAL,
      `failed to find plugin "${conf.ipam?.type}" in path [${
        env.path.split(":").join(" ")
      }]`,
    );
  }
}

/** A kernel refusal inside a plugin: its error text, code 999. */
function kernelStep(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) fail(CniErrorCode.INTERNAL, e.message);
    throw e;
  }
}

/** ADD passes prevResult on (an empty result when first); the rest print nothing. */
function passThrough(conf: PluginConf, env: Env): unknown {
  if (env.command !== "ADD") return null;
  return conf.prevResult ?? formatResult(conf.cniVersion, {
    cniVersion: conf.cniVersion,
    interfaces: [],
    ips: [],
    routes: [],
    dns: {},
  });
}

/** A 1.0-shaped result in the config's version (0.3.x/0.4.0 add `version`). */
function formatResult(version: string, r: Result): Result | object {
  if (versionAtLeast(version, "1.0.0")) return r;
  if (versionAtLeast(version, "0.3.0")) {
    return {
      ...r,
      ips: (r.ips ?? []).map((ip) => ({
        ...ip,
        version: ip.address.includes(":") ? "6" : "4",
      })),
    };
  }
  const v4 = (r.ips ?? []).find((ip) => !ip.address.includes(":"));
  const v6 = (r.ips ?? []).find((ip) => ip.address.includes(":"));
  const legacy = (ip: typeof v4) =>
    ip && {
      ip: ip.address,
      ...(ip.gateway ? { gateway: ip.gateway } : {}),
      routes: r.routes ?? [],
    };
  return {
    cniVersion: version,
    ...(v4 ? { ip4: legacy(v4) } : {}),
    ...(v6 ? { ip6: legacy(v6) } : {}),
    dns: r.dns ?? {},
  };
}

/** The error an injected failure shows as. */
function injected(rule: PluginFailureRule, req: PluginExecRequest): Error {
  const what = { plugin: req.pluginType, command: req.command };
  switch (rule.error ?? "plugin-error") {
    case "plugin-error":
      return new CniPluginError({
        ...what,
        code: rule.code ?? CniErrorCode.INTERNAL,
        msg: rule.msg ?? "injected failure",
        exitCode: 1,
        stderr: "",
      });
    case "crash":
      return new CniExecError({
        ...what,
        kind: "no-output",
        detail:
          `exited with status ${PANIC_EXIT} and no error message on stdout`,
        exitCode: PANIC_EXIT,
        stderr: "panic: injected crash",
      });
    case "timeout":
      return new CniExecError({
        ...what,
        kind: "timeout",
        detail: `timed out after ${req.timeoutMs} ms and was killed`,
        signal: "SIGKILL",
      });
    case "garbage":
      return new CniExecError({
        ...what,
        kind: "invalid-output",
        detail: `printed output that is not JSON: "\\u0000\\u0007garbage"`,
        exitCode: 0,
      });
  }
}
