/**
 * host-local IPAM (containernetworking/plugins, plugins/ipam/host-local)
 * in memory, for the fake plugins: leases per network and data dir, keyed
 * by container id and interface name; one address per range set,
 * round-robin from the last one handed out; the gateway never handed out;
 * requested addresses (`runtimeConfig.ips`, `args.cni.ips`, `CNI_ARGS IP=`)
 * honoured or refused, and with host-local's own error texts.
 *
 * @module
 */
import { formatIP, parseCidr, parseIP } from "../../src/kernel/ipaddr.ts";

/** host-local's default `dataDir`. */
export const DEFAULT_IPAM_DATA_DIR = "/var/lib/cni/networks";

/** Bits in an IPv4 / IPv6 address. */
const IPV4_BITS = 32;
const IPV6_BITS = 128;
/** IPv4 subnets smaller than this (/31, /32) leave nothing to hand out. */
const IPV4_MAX_USABLE_PREFIX = 30;

/** One range of a range set (`ipam.ranges[i][j]`). */
export interface IpamRange {
  /** CIDR; host bits must be zero. */
  subnet: string;
  /** First address handed out (default: network + 1). */
  rangeStart?: string;
  /** Last address handed out (default: last in subnet; IPv4 less broadcast). */
  rangeEnd?: string;
  /** Gateway (default: network + 1); never handed out. */
  gateway?: string;
}

/** host-local's config, as it reads it from the plugin's stdin `ipam`. */
export interface IpamConfig {
  /** `host-local`. */
  type?: string;
  /** Range sets: one address is handed out from each. */
  ranges?: IpamRange[][];
  /** The old single-range form. */
  subnet?: string;
  /** With `subnet`. */
  rangeStart?: string;
  /** With `subnet`. */
  rangeEnd?: string;
  /** With `subnet`. */
  gateway?: string;
  /** Routes copied into the result. */
  routes?: { dst: string; gw?: string }[];
  /** Where leases live (one dir per network). */
  dataDir?: string;
}

/** One address handed out. */
export interface IpamAllocation {
  /** `10.0.0.2/24`. */
  address: string;
  /** The range's gateway. */
  gateway: string;
  /** 4 or 6. */
  version: 4 | 6;
}

/** A lease as tests see it. */
export interface Lease {
  /** The network (config `name`). */
  network: string;
  /** The address, without prefix. */
  address: string;
  /** CNI_CONTAINERID of the holder. */
  containerId: string;
  /** CNI_IFNAME of the holder. */
  ifName: string;
}

/** An error host-local would print (the bridge plugin passes it on, code 999). */
export class IpamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IpamError";
  }
}

interface Range {
  family: 4 | 6;
  prefix: number;
  network: bigint;
  start: bigint;
  end: bigint;
  gateway: bigint;
}

interface Held {
  containerId: string;
  ifName: string;
  ip: bigint;
  family: 4 | 6;
}

interface Store {
  network: string;
  /** {@linkcode leaseKey} -> holder. */
  leases: Map<string, Held>;
  /** Range set index -> last address handed out. */
  last: Map<number, bigint>;
}

/** The leases of every network, in memory. */
export class HostLocalIpam {
  readonly #stores = new Map<string, Store>();

  /**
   * ADD: one address per range set for `containerId`/`ifName`, taking the
   * requested addresses where they fall. All or nothing.
   */
  allocate(
    network: string,
    conf: IpamConfig,
    containerId: string,
    ifName: string,
    requested: string[] = [],
  ): IpamAllocation[] {
    const sets = rangeSets(conf);
    const store = this.#store(network, conf);
    const wanted = new Map<
      string,
      { text: string; ip: bigint; family: 4 | 6 }
    >();
    for (const text of requested) {
      const slash = text.indexOf("/");
      const addr = parseIP(slash < 0 ? text : text.slice(0, slash));
      const ip = toBig(addr.bytes);
      wanted.set(`${addr.family}:${ip}`, {
        text: formatIP(addr.bytes),
        ip,
        family: addr.family,
      });
    }
    const out: IpamAllocation[] = [];
    const taken: string[] = [];
    const release = () => {
      for (const key of taken) store.leases.delete(key);
    };
    for (const [idx, set] of sets.entries()) {
      let req: bigint | undefined;
      for (const [key, w] of wanted) {
        if (set.some((r) => r.family === w.family && contains(r, w.ip))) {
          req = w.ip;
          wanted.delete(key);
          break;
        }
      }
      let got: { ip: bigint; range: Range };
      try {
        got = req !== undefined
          ? reserveRequested(store, set, req, containerId, ifName)
          : reserveNext(store, idx, set, containerId, ifName);
      } catch (e) {
        release();
        throw new IpamError(
          `failed to allocate for range ${idx}: ${(e as Error).message}`,
        );
      }
      taken.push(leaseKey(got.range.family, got.ip));
      out.push({
        address: `${text(got.ip, got.range.family)}/${got.range.prefix}`,
        gateway: text(got.range.gateway, got.range.family),
        version: got.range.family,
      });
    }
    if (wanted.size) {
      release();
      throw new IpamError(
        `failed to allocate all requested IPs: ${
          [...wanted.values()].map((w) => w.text).join(" ")
        }`,
      );
    }
    return out;
  }

  /** DEL: releases every lease of `containerId`/`ifName`; idempotent. */
  release(
    network: string,
    conf: IpamConfig,
    containerId: string,
    ifName: string,
  ): number {
    const store = this.#store(network, conf);
    let n = 0;
    for (const [key, l] of store.leases) {
      if (l.containerId === containerId && l.ifName === ifName) {
        store.leases.delete(key);
        n++;
      }
    }
    return n;
  }

  /** CHECK: the addresses `containerId`/`ifName` holds (none: host-local fails). */
  held(
    network: string,
    conf: IpamConfig,
    containerId: string,
    ifName: string,
  ): string[] {
    const store = this.#store(network, conf);
    return [...store.leases.values()]
      .filter((l) => l.containerId === containerId && l.ifName === ifName)
      .map((l) => text(l.ip, l.family));
  }

  /** GC (CNI 1.1): releases every lease not held by a valid attachment. */
  gc(
    network: string,
    conf: IpamConfig,
    valid: { containerId: string; ifName: string }[],
  ): number {
    const keep = new Set(valid.map((v) => `${v.containerId}\0${v.ifName}`));
    const store = this.#store(network, conf);
    let n = 0;
    for (const [key, l] of store.leases) {
      if (!keep.has(`${l.containerId}\0${l.ifName}`)) {
        store.leases.delete(key);
        n++;
      }
    }
    return n;
  }

  /** Every lease (of one network), sorted by network then address. */
  leases(network?: string): Lease[] {
    const out: Lease[] = [];
    for (const store of this.#stores.values()) {
      if (network !== undefined && store.network !== network) continue;
      for (const l of store.leases.values()) {
        out.push({
          network: store.network,
          address: text(l.ip, l.family),
          containerId: l.containerId,
          ifName: l.ifName,
        });
      }
    }
    return out.sort((a, b) =>
      a.network.localeCompare(b.network) || a.address.localeCompare(b.address)
    );
  }

  #store(network: string, conf: IpamConfig): Store {
    const key = `${conf.dataDir ?? DEFAULT_IPAM_DATA_DIR}\0${network}`;
    let store = this.#stores.get(key);
    if (!store) {
      store = { network, leases: new Map(), last: new Map() };
      this.#stores.set(key, store);
    }
    return store;
  }
}

/** The range sets of a config, canonicalized as host-local does. */
function rangeSets(conf: IpamConfig): Range[][] {
  const raw: IpamRange[][] = conf.ranges?.length
    ? conf.ranges
    : conf.subnet
    ? [[{
      subnet: conf.subnet,
      rangeStart: conf.rangeStart,
      rangeEnd: conf.rangeEnd,
      gateway: conf.gateway,
    }]]
    : [];
  if (!raw.length) throw new IpamError("no IP ranges specified");
  return raw.map((set) => {
    if (!set.length) throw new IpamError("no IP ranges specified");
    return set.map(canonicalize);
  });
}

function canonicalize(r: IpamRange): Range {
  const c = parseCidr(r.subnet);
  const bits = c.family === 4 ? IPV4_BITS : IPV6_BITS;
  const host = (BigInt(1) << BigInt(bits - c.prefix)) - BigInt(1);
  const ip = toBig(c.bytes);
  const network = ip & ~host;
  if (ip !== network) {
    throw new IpamError(
      `Network has host bits set. For a subnet mask of length ${c.prefix} ` +
        `the network address is ${text(network, c.family)}`,
    );
  }
  if (c.family === 4 && c.prefix > IPV4_MAX_USABLE_PREFIX) {
    throw new IpamError(`Network ${r.subnet} too small to allocate from`);
  }
  const last = network | host;
  const bound = (s: string | undefined, dflt: bigint, what: string) => {
    if (s === undefined) return dflt;
    const v = toBig(parseIP(s).bytes);
    if (v < network || v > last) {
      throw new IpamError(`${what} ${s} not in network ${r.subnet}`);
    }
    return v;
  };
  // IPv4 leaves out the broadcast address; IPv6 has none.
  const end = c.family === 4 ? last - BigInt(1) : last;
  return {
    family: c.family,
    prefix: c.prefix,
    network,
    start: bound(r.rangeStart, network + BigInt(1), "RangeStart"),
    end: bound(r.rangeEnd, end, "RangeEnd"),
    gateway: bound(r.gateway, network + BigInt(1), "gateway"),
  };
}

function contains(r: Range, ip: bigint): boolean {
  return ip >= r.start && ip <= r.end;
}

/** Leases are per family: 10.0.0.2 and ::a00:2 are the same number. */
function leaseKey(family: 4 | 6, ip: bigint): string {
  return `${family}:${ip}`;
}

/** A requested address: refused when it is the gateway or taken. */
function reserveRequested(
  store: Store,
  set: Range[],
  ip: bigint,
  containerId: string,
  ifName: string,
): { ip: bigint; range: Range } {
  const range = set.find((r) => contains(r, ip))!;
  if (ip === range.gateway) {
    throw new Error(
      `requested ip ${text(ip, range.family)} is subnet's gateway`,
    );
  }
  const key = leaseKey(range.family, ip);
  if (store.leases.has(key)) {
    throw new Error(
      `requested IP address ${
        text(ip, range.family)
      } is not available in range set ${setText(set)}`,
    );
  }
  store.leases.set(key, { containerId, ifName, ip, family: range.family });
  return { ip, range };
}

/**
 * The next free address after the last one handed out in this set,
 * wrapping; refused when the attachment holds one in it already.
 */
function reserveNext(
  store: Store,
  setIdx: number,
  set: Range[],
  containerId: string,
  ifName: string,
): { ip: bigint; range: Range } {
  for (const l of store.leases.values()) {
    if (
      l.containerId === containerId && l.ifName === ifName &&
      set.some((r) => contains(r, l.ip))
    ) {
      throw new Error(
        `${
          text(l.ip, l.family)
        } has been allocated to ${containerId}, duplicate allocation is not allowed`,
      );
    }
  }
  // Start after the last one handed out (a freed address is not reused at
  // once), to the end of the set, then wrap round from its start.
  const last = store.last.get(setIdx);
  const at = last === undefined ? -1 : set.findIndex((r) => contains(r, last));
  const spans: [Range, bigint, bigint][] = [];
  for (const [i, r] of set.entries()) {
    if (i > at) spans.push([r, r.start, r.end]);
    else if (i === at) spans.push([r, last! + BigInt(1), r.end]);
  }
  for (const [i, r] of set.entries()) {
    if (i < at) spans.push([r, r.start, r.end]);
    else if (i === at) spans.push([r, r.start, last!]);
  }
  for (const [r, from, to] of spans) {
    for (let ip = from; ip <= to; ip++) {
      const key = leaseKey(r.family, ip);
      if (ip === r.gateway || store.leases.has(key)) continue;
      store.leases.set(key, { containerId, ifName, ip, family: r.family });
      store.last.set(setIdx, ip);
      return { ip, range: r };
    }
  }
  throw new Error(`no IP addresses available in range set: ${setText(set)}`);
}

function setText(set: Range[]): string {
  return set.map((r) => `${text(r.start, r.family)}-${text(r.end, r.family)}`)
    .join(",");
}

function toBig(bytes: Uint8Array): bigint {
  let n = BigInt(0);
  for (const b of bytes) n = (n << BigInt(8)) | BigInt(b);
  return n;
}

function text(n: bigint, family: 4 | 6): string {
  const len = family === 4 ? IPV4_BITS / 8 : IPV6_BITS / 8;
  const b = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    b[i] = Number(n & BigInt(0xff));
    n >>= BigInt(8);
  }
  return formatIP(b);
}
