/**
 * An in-memory {@linkcode Kernel} (src/wiring/kernel.ts), so the provider's
 * state machine and the wiring run without root: named netns by path plus
 * vmnic's own ("host") netns, each with the rtnetlink model of
 * fake_rtnl.ts behind a {@linkcode NetlinkConn}, TAP creation, and netns
 * lifetime as the kernel has it (a deleted netns lives on while a scope is
 * inside it; when it goes, its devices go, a veth's host end with them).
 *
 * For tests: views of links, addresses, qdiscs and filters; changes "by
 * hand" (what an operator or a CNI plugin does, outside vmnic: neither
 * logged nor subject to failure rules); failure injection
 * ({@linkcode FakeKernel.failNext}); a log of every step vmnic asked for.
 *
 * @example
 * ```ts ignore
 * const kernel = new FakeKernel();
 * const { path } = kernel.ensureNetns("vm1", "/run/fake-netns");
 * kernel.createVethPair({ netns: path, name: "eth0", hostName: "veth1" });
 * kernel.inNetns(path, (s) => plumbNic(s, { veth: "eth0", tap: "tap0", queues: 1 }));
 * ```
 *
 * @module
 */
import {
  DEFAULT_NETNS_DIR,
  InvalidArgumentError,
  type Kernel,
  KernelError,
  netnsPath,
  type NetnsScope,
  type TapOptions,
} from "../../src/wiring/kernel.ts";
import type { RequestContext } from "../../src/netlink/conn.ts";
import { parseMac } from "../../src/netlink/codec.ts";
import { IfAddr } from "../../src/netlink/constants.ts";
import { validateIfName } from "../../src/kernel/ifname.ts";
import { parseCidr } from "../../src/kernel/ipaddr.ts";
import { Errno } from "../../src/sys/errno.ts";
import {
  CHANGING_OPS,
  type FakeAddrView,
  type FakeFilterView,
  type FakeKernelOp,
  type FakeLinkView,
  FakeNetlinkConn,
  type KernelCall,
  KernelRefusal,
  type RtnlNamespace,
  RtnlWorld,
} from "./fake_rtnl.ts";

export type {
  FakeAddrView,
  FakeFilterView,
  FakeKernelOp,
  FakeLinkView,
  FakeMirredView,
  KernelCall,
  LinkKind,
  TapInfo,
} from "./fake_rtnl.ts";
export { FakeUnsupportedError } from "./fake_rtnl.ts";

/** The label of vmnic's own netns (where `inHost` works) in views and rules. */
export const HOST_NETNS = "host";

/**
 * The default netns dir as spelled where /var/run is a link to /run (every
 * current distribution): the real releaseNetnsDir goes by the real path, so
 * it keeps this one's mount too.
 */
const DEFAULT_NETNS_DIR_REAL = "/run/netns";

/** Largest uid/gid a TAP owner can have (they are 32-bit). */
const MAX_ID = 2 ** 32;

/**
 * A kernel step to fail. Every given field must match; without `op` only
 * steps that change something match (never the reads a caller makes to
 * decide what to do).
 */
export interface FailureRule {
  /** The netns: its path, or {@linkcode HOST_NETNS}. */
  netns?: string;
  /** The step. */
  op?: FakeKernelOp;
  /**
   * The object: the device for link, address and tc steps (the device the
   * address or qdisc is on), the TAP for `createTap`, the netns name for
   * `ensureNetns` / `deleteNetns`.
   */
  name?: string;
  /** The errno to fail with. */
  errno: number;
  /** How many matching steps fail (default 1). */
  times?: number;
  /** How many matching steps succeed first (default 0): fail the Nth. */
  skip?: number;
}

/** What {@linkcode FakeKernel.createVethPair} makes. */
export interface VethPairOptions {
  /** The container end's netns (path, or {@linkcode HOST_NETNS}). */
  netns: string;
  /** The container end's name. */
  name: string;
  /** The host end's name (in the host netns). */
  hostName: string;
  /** MTU of both ends (1500 otherwise). */
  mtu?: number;
  /** MAC of the container end. */
  mac?: string;
  /** MAC of the host end. */
  hostMac?: string;
}

/** An entry of a netns dir: a mounted netns, or a leftover empty file. */
type DirEntry = { ns: RtnlNamespace } | "stale";

/** What a netns dir check answers (`netnsDirPropagates`). */
export type PropagationAnswer = { ok: boolean; reason?: string };

/** The in-memory kernel. */
export class FakeKernel implements Kernel {
  /** Every step vmnic asked for, in order. */
  readonly log: KernelCall[] = [];
  readonly #world: RtnlWorld;
  readonly #host: RtnlNamespace;
  /** netns dir -> name -> entry. */
  readonly #dirs = new Map<string, Map<string, DirEntry>>();
  /** Open scopes per namespace: a deleted netns lives while one is open. */
  readonly #refs = new Map<RtnlNamespace, number>();
  /** Custom dirs made shared mounts by ensureNetns, until released. */
  readonly #sharedDirs = new Set<string>();
  #rules: (FailureRule & { times: number; skip: number })[] = [];
  #propagates: (dir: string) => PropagationAnswer = () => ({ ok: true });

  constructor() {
    this.#world = new RtnlWorld({
      step: (ns, op, object, ctx) => this.#step(ns.label, op, object, ctx),
    });
    this.#host = this.#world.create(HOST_NETNS);
  }

  // ------------------------------------------------------------- Kernel

  /** As the real one: creates unless mounted, replacing a leftover file. */
  ensureNetns(name: string, dir: string): { path: string; created: boolean } {
    const path = netnsPath(name, dir);
    const entries = this.#dir(dir, true);
    const entry = entries.get(name);
    if (entry && entry !== "stale") return { path, created: false };
    this.#step(path, "ensureNetns", name, {
      op: "create netns",
      object: name,
    });
    entries.set(name, { ns: this.#world.create(path) });
    if (!isDefaultDir(dir)) this.#sharedDirs.add(normalizeDir(dir));
    return { path, created: true };
  }

  /** As the real one: true when a netns or a leftover file was removed. */
  deleteNetns(name: string, dir: string): boolean {
    const path = netnsPath(name, dir);
    const entries = this.#dir(dir, false);
    const entry = entries?.get(name);
    if (!entries || !entry) return false;
    this.#step(path, "deleteNetns", name, {
      op: "delete netns",
      object: name,
    });
    entries.delete(name);
    if (entry !== "stale") this.#release(entry.ns);
    return true;
  }

  /** As the real one: the same namespace under a new name, the old one gone. */
  renameNetns(from: string, to: string, dir: string): void {
    const src = netnsPath(from, dir);
    const dst = netnsPath(to, dir);
    const entries = this.#dir(dir, true);
    const entry = entries.get(from);
    if (!entry || entry === "stale") {
      throw new KernelError("rename netns", from, Errno.ENOENT);
    }
    if (entries.has(to)) {
      throw new KernelError("rename netns", to, Errno.EEXIST);
    }
    this.#step(src, "renameNetns", to, {
      op: "rename netns",
      object: `${from} -> ${to}`,
    });
    entries.set(to, entry);
    entries.delete(from);
    entry.ns.label = dst;
  }

  /** True when a netns is mounted at `dir/name`. */
  netnsExists(name: string, dir: string): boolean {
    const entry = this.#dir(dir, false)?.get(name);
    return entry !== undefined && entry !== "stale";
  }

  /** Sorted names in `dir` with a netns; with `stale`, leftovers too. */
  listNetns(dir: string, opts: { stale?: boolean } = {}): string[] {
    const entries = this.#dir(dir, false);
    if (!entries) return [];
    return [...entries]
      .filter(([, e]) => opts.stale || e !== "stale")
      .map(([name]) => name)
      .sort();
  }

  /** What {@linkcode setDirPropagates} said (default ok). */
  netnsDirPropagates(dir: string): PropagationAnswer {
    return this.#propagates(dir);
  }

  /** Drops the shared mount of a custom dir once it holds nothing. */
  releaseNetnsDir(dir: string): void {
    const key = normalizeDir(dir);
    if (isDefaultDir(key)) return;
    this.log.push({ netns: HOST_NETNS, op: "releaseNetnsDir", object: key });
    if (!this.#dirs.get(key)?.size) this.#sharedDirs.delete(key);
  }

  /**
   * Runs `fn` inside the netns at `path`: ENOENT when nothing is there,
   * EINVAL for a leftover file (setns refuses it), and an Error when `fn`
   * returns a promise, as the real one does.
   */
  inNetns<T>(path: string, fn: (scope: NetnsScope) => T): T {
    const { dir, name } = splitPath(path);
    const entry = this.#dir(dir, false)?.get(name);
    if (!entry) throw new KernelError("enter netns", path, Errno.ENOENT);
    if (entry === "stale") {
      throw new KernelError("enter netns", path, Errno.EINVAL);
    }
    return this.#enter(entry.ns, path, fn);
  }

  /** Runs `fn` in the host netns. */
  inHost<T>(fn: (scope: NetnsScope) => T): T {
    return this.#enter(this.#host, HOST_NETNS, fn);
  }

  // ------------------------------------------------------ test controls

  /** Makes the next matching step(s) fail with `rule.errno`. */
  failNext(rule: FailureRule): void {
    this.#rules.push({ ...rule, times: rule.times ?? 1, skip: rule.skip ?? 0 });
  }

  /** Drops every pending failure rule. */
  clearFailures(): void {
    this.#rules = [];
  }

  /** How many failure rules still wait for their step. */
  get pendingFailures(): number {
    return this.#rules.length;
  }

  /** How many logged steps match (all when no filter is given). */
  count(
    filter: { op?: FakeKernelOp; netns?: string; name?: string } = {},
  ): number {
    return this.log.filter((c) =>
      (filter.op === undefined || c.op === filter.op) &&
      (filter.netns === undefined || c.netns === filter.netns) &&
      (filter.name === undefined || c.object === filter.name)
    ).length;
  }

  /** Sets what `netnsDirPropagates` answers. */
  setDirPropagates(
    answer: PropagationAnswer | ((dir: string) => PropagationAnswer),
  ): void {
    this.#propagates = typeof answer === "function" ? answer : () => answer;
  }

  /** Leaves an empty file `dir/name`, as a netns lost with its mount would. */
  addStaleFile(dir: string, name: string): void {
    const entries = this.#dir(dir, true);
    if (entries.has(name)) {
      throw new Error(`fake kernel: ${dir}/${name} exists already`);
    }
    netnsPath(name, dir);
    entries.set(name, "stale");
  }

  /** Custom netns dirs still a shared mount (made so by `ensureNetns`). */
  sharedDirs(): string[] {
    return [...this.#sharedDirs].sort();
  }

  /** Paths of the mounted netns, sorted. */
  netnsPaths(): string[] {
    const out: string[] = [];
    for (const [dir, entries] of this.#dirs) {
      for (const [name, e] of entries) {
        if (e !== "stale") out.push(joinPath(dir, name));
      }
    }
    return out.sort();
  }

  /** Scopes open right now (`inNetns`/`inHost` still running). */
  get openScopes(): number {
    let n = 0;
    for (const v of this.#refs.values()) n += v;
    return n;
  }

  // --------------------------------------------------------------- views

  /** Whether `netns` (a path or {@linkcode HOST_NETNS}) is a live netns. */
  hasNetns(netns: string): boolean {
    return this.#find(netns) !== undefined;
  }

  /** The links of a netns. */
  links(netns: string = HOST_NETNS): FakeLinkView[] {
    return this.#ns(netns).linkViews();
  }

  /** One link, or null. */
  link(netns: string, name: string): FakeLinkView | null {
    const ns = this.#ns(netns);
    const l = ns.byName(name);
    return l ? ns.linkView(l) : null;
  }

  /** The addresses of a netns, or of one device in it. */
  addrs(netns: string, dev?: string): FakeAddrView[] {
    const ns = this.#ns(netns);
    if (dev === undefined) return ns.addrViews();
    const l = ns.byName(dev);
    return l ? ns.addrViews(l) : [];
  }

  /** The ingress filter nodes of a device (none when it is absent). */
  filters(netns: string, dev: string): FakeFilterView[] {
    const ns = this.#ns(netns);
    const l = ns.byName(dev);
    return l ? ns.filterViews(l) : [];
  }

  // ------------------------------------------------------------ by hand

  /** Creates a bridge (down), as `ip link add … type bridge`. */
  createBridge(
    netns: string,
    name: string,
    opts: { mtu?: number } = {},
  ): FakeLinkView {
    return this.#byHand(
      netns,
      "create bridge",
      name,
      (ns) =>
        ns.linkView(ns.createLink({ name, kind: "bridge", mtu: opts.mtu })),
    );
  }

  /**
   * A veth pair between `opts.netns` and the host netns, both ends down:
   * what the bridge plugin makes. EEXIST when either name is taken.
   */
  createVethPair(opts: VethPairOptions): { index: number; hostIndex: number } {
    return this.#byHand(opts.netns, "create veth", opts.name, (ns) => {
      const { link, peer } = ns.createVeth(opts.name, opts.hostName, {
        peerNs: this.#host,
        mtu: opts.mtu,
        ...(opts.mac ? { mac: parseMac(opts.mac) } : {}),
        ...(opts.hostMac ? { peerMac: parseMac(opts.hostMac) } : {}),
      });
      return { index: link.index, hostIndex: peer.index };
    });
  }

  /** Sets a link up or down. ENODEV when absent. */
  setLinkUp(netns: string, name: string, up = true): void {
    this.#byHand(netns, up ? "set link up" : "set link down", name, (ns) => {
      ns.setUp(ns.requireLink(name), up);
    });
  }

  /** Puts a link on a bridge (null: off it). */
  setMaster(netns: string, name: string, master: string | null): void {
    this.#byHand(netns, "set master", name, (ns) => {
      const index = master === null ? 0 : ns.requireLink(master).index;
      ns.setMaster(ns.requireLink(name), index);
    });
  }

  /** Sets a link's MAC. */
  setLinkMac(netns: string, name: string, mac: string): void {
    this.#byHand(netns, "set mac", name, (ns) => {
      ns.setMac(ns.requireLink(name), parseMac(mac));
    });
  }

  /** Adds `cidr` to a device. EEXIST when it has it. */
  addAddress(netns: string, dev: string, cidr: string): void {
    const c = parseCidr(cidr);
    this.#byHand(netns, "add address", `${cidr} on ${dev}`, (ns) => {
      ns.addAddr(ns.requireLink(dev), {
        local: c.bytes,
        prefix: c.prefix,
        scope: IfAddr.RT_SCOPE_UNIVERSE,
      });
    });
  }

  /** Deletes a link (a veth's peer goes with it); false when absent. */
  deleteLink(netns: string, name: string): boolean {
    return this.#byHand(netns, "delete link", name, (ns) => {
      const l = ns.byName(name);
      if (!l) return false;
      ns.removeLink(l);
      return true;
    });
  }

  /** Deletes a device's ingress qdisc and its filters; false when none. */
  deleteIngressQdisc(netns: string, dev: string): boolean {
    return this.#byHand(
      netns,
      "delete ingress qdisc",
      dev,
      (ns) => ns.dropIngress(ns.requireLink(dev)),
    );
  }

  // ------------------------------------------------------------- private

  /** Logs a step and fails it when a rule says so. */
  #step(
    netns: string,
    op: FakeKernelOp,
    object: string,
    ctx: RequestContext,
  ): KernelCall {
    const call: KernelCall = { netns, op, object };
    this.log.push(call);
    const rule = this.#rules.find((r) =>
      (r.op === undefined ? CHANGING_OPS.has(op) : r.op === op) &&
      (r.netns === undefined || r.netns === netns) &&
      (r.name === undefined || r.name === object)
    );
    if (!rule) return call;
    if (rule.skip > 0) {
      rule.skip--;
      return call;
    }
    if (--rule.times <= 0) this.#rules = this.#rules.filter((r) => r !== rule);
    call.errno = rule.errno;
    call.injected = true;
    throw new KernelError(
      ctx.op,
      ctx.object,
      rule.errno,
      "injected by FakeKernel.failNext",
    );
  }

  #enter<T>(
    ns: RtnlNamespace,
    label: string,
    fn: (scope: NetnsScope) => T,
  ): T {
    this.#refs.set(ns, (this.#refs.get(ns) ?? 0) + 1);
    const conn = new FakeNetlinkConn(ns);
    let result: T;
    try {
      result = fn({
        conn,
        createTap: (opts) => this.#createTap(ns, opts),
      });
    } finally {
      conn.close();
      const left = this.#refs.get(ns)! - 1;
      if (left) this.#refs.set(ns, left);
      else {
        this.#refs.delete(ns);
        if (ns !== this.#host && !this.#mounted(ns)) this.#destroy(ns);
      }
    }
    if (isThenable(result)) {
      Promise.resolve(result).catch(() => {});
      throw new Error(
        `inNetns(${label}): the callback returned a promise; only ` +
          `synchronous work is allowed while switched into a netns`,
      );
    }
    return result;
  }

  /** As kernel/tuntap.ts: EBUSY when the name is taken (IFF_TUN_EXCL). */
  #createTap(ns: RtnlNamespace, opts: TapOptions): void {
    const { name } = opts;
    validateIfName(name);
    for (const key of ["owner", "group"] as const) {
      const id = opts[key];
      if (
        id !== undefined && !(Number.isInteger(id) && id >= 0 && id < MAX_ID)
      ) {
        throw new InvalidArgumentError("create tap", name, `bad ${key} ${id}`);
      }
    }
    const ctx = { op: "create tap", object: name };
    const call = this.#step(ns.label, "createTap", name, ctx);
    if (ns.byName(name)) {
      call.errno = Errno.EBUSY;
      throw new KernelError(ctx.op, name, Errno.EBUSY, "TUNSETIFF");
    }
    ns.createLink({
      name,
      kind: "tun",
      tap: {
        multiQueue: opts.multiQueue ?? false,
        vnetHdr: opts.vnetHdr ?? true,
        ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
        ...(opts.group !== undefined ? { group: opts.group } : {}),
      },
    });
  }

  /** Unmounted: gone once no scope is inside it. */
  #release(ns: RtnlNamespace): void {
    if (!this.#refs.get(ns)) this.#destroy(ns);
  }

  #destroy(ns: RtnlNamespace): void {
    ns.destroy();
    this.#world.settle();
  }

  #mounted(ns: RtnlNamespace): boolean {
    for (const entries of this.#dirs.values()) {
      for (const e of entries.values()) {
        if (e !== "stale" && e.ns === ns) return true;
      }
    }
    return false;
  }

  #dir(dir: string, create: true): Map<string, DirEntry>;
  #dir(dir: string, create: false): Map<string, DirEntry> | undefined;
  #dir(dir: string, create: boolean): Map<string, DirEntry> | undefined {
    const key = normalizeDir(dir);
    let entries = this.#dirs.get(key);
    if (!entries && create) {
      entries = new Map();
      this.#dirs.set(key, entries);
    }
    return entries;
  }

  #find(netns: string): RtnlNamespace | undefined {
    if (netns === HOST_NETNS) return this.#host;
    const { dir, name } = splitPath(netns);
    const entry = this.#dir(dir, false)?.get(name);
    return entry && entry !== "stale" ? entry.ns : undefined;
  }

  #ns(netns: string): RtnlNamespace {
    const ns = this.#find(netns);
    if (!ns) throw new Error(`fake kernel: no netns ${netns}`);
    return ns;
  }

  /**
   * Runs a change made outside vmnic: a refusal becomes a KernelError
   * naming `op`; ENOENT when the netns is not there.
   */
  #byHand<T>(
    netns: string,
    op: string,
    object: string,
    fn: (ns: RtnlNamespace) => T,
  ): T {
    const ns = this.#find(netns);
    if (!ns) throw new KernelError(op, netns, Errno.ENOENT);
    try {
      return fn(ns);
    } catch (e) {
      if (e instanceof KernelRefusal) throw e.toKernelError(op, object);
      throw e;
    } finally {
      this.#world.settle();
    }
  }
}

/** A dir without trailing slashes (`/` stays `/`). */
function normalizeDir(dir: string): string {
  const d = dir.replace(/\/+$/, "");
  return d === "" ? "/" : d;
}

/** The default netns dir, however it is spelled. */
function isDefaultDir(dir: string): boolean {
  const d = normalizeDir(dir);
  return d === DEFAULT_NETNS_DIR || d === DEFAULT_NETNS_DIR_REAL;
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

function splitPath(path: string): { dir: string; name: string } {
  const cut = path.lastIndexOf("/");
  return cut < 0
    ? { dir: ".", name: path }
    : { dir: normalizeDir(path.slice(0, cut)), name: path.slice(cut + 1) };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}
