/**
 * A NIC's policy (docs/policy.md): rate limits per direction,
 * anti-spoofing, ordered egress rules and isolation, from the add call (or
 * `vmnic policy`), then the network's defaults in the policy file, then the
 * built-in defaults. What is asked for is checked here before anything
 * changes (bad input says what, where and what is allowed); what is in
 * effect is recorded with the NIC and handed to the wiring as a
 * {@linkcode TapPolicy}.
 *
 * @module
 */
import { parseConfList } from "../cni/config.ts";
import type { NicRecord } from "../store/types.ts";
import { surelyAbsent } from "../sys/files.ts";
import {
  type EgressMatch,
  isolationOf,
  OPEN_POLICY,
  parseCidr,
  type TapPolicy,
  type TbfOptions,
} from "../wiring/policy_spec.ts";
import { InvalidInputError } from "./errors.ts";

/** Where the policy file is unless a setting says otherwise. */
export const DEFAULT_POLICY_FILE = "/etc/vmnic/policy.json";

/** The protocols an egress rule may name. */
export const EGRESS_PROTOCOLS = ["tcp", "udp", "icmp"] as const;
/** A protocol an egress rule may name (`icmp` is ICMPv6 toward IPv6). */
export type EgressProtocol = (typeof EGRESS_PROTOCOLS)[number];

/** A rate limit of one direction. */
export interface RateLimit {
  /** Bits per second. */
  bitsPerSecond: number;
  /** What may pass at once, in bytes (default: 10 ms of the rate, ≥ 16 KiB). */
  burstBytes: number;
}

/** One egress rule: what the guest may (not) send where. */
export interface EgressRule {
  /** `allow` or `deny`. */
  action: "allow" | "deny";
  /** Destination, `10.0.0.0/8` or `fd00::/8` (no host bits). */
  cidr: string;
  /** Only this protocol. */
  protocol?: EgressProtocol;
  /** Only this destination port (needs `tcp` or `udp`). */
  port?: number;
}

/**
 * The policy fields of an add call or of a change (`vmnic policy`): each
 * one given overrides the network's default and the built-in one.
 */
export interface PolicySpec {
  /** Both directions: `"100mbit"`, `"100mbit:64kb"`, or null for none. */
  rate?: string | RateLimit | null;
  /** Toward the guest (host → guest); overrides `rate`. */
  rateIn?: string | RateLimit | null;
  /** From the guest (guest → host); overrides `rate`. */
  rateOut?: string | RateLimit | null;
  /** Only the NIC's MAC and addresses as sources (default true). */
  antiSpoofing?: boolean;
  /** Egress rules, first match wins, before the network's and the built-in ones. */
  egress?: readonly EgressRule[];
  /** No traffic with other addresses of the NIC's subnets but the gateway (default false). */
  isolate?: boolean;
}

/** Where an egress rule in effect comes from. */
export type RuleSource = "call" | "network" | "default";

/** A NIC's policy in effect (`policy` of `inspect` and `list`). */
export interface NicPolicy {
  /** Toward the guest, or null: unlimited. */
  rateIn: RateLimit | null;
  /** From the guest, or null: unlimited. */
  rateOut: RateLimit | null;
  /** Only the NIC's MAC and addresses as sources. */
  antiSpoofing: boolean;
  /** Egress rules in order (first match wins; none matching: allowed). */
  egress: (EgressRule & { source: RuleSource })[];
  /** Isolated from the other addresses of its subnets but the gateway. */
  isolate: boolean;
}

/** A spec with its rates parsed: what is recorded as asked for. */
export interface NormalizedSpec {
  /** Both directions; null: none. */
  rate?: RateLimit | null;
  /** Toward the guest; null: none. */
  rateIn?: RateLimit | null;
  /** From the guest; null: none. */
  rateOut?: RateLimit | null;
  /** Only the NIC's MAC and addresses as sources. */
  antiSpoofing?: boolean;
  /** Egress rules, first match wins. */
  egress?: EgressRule[];
  /** Isolated within its subnets but the gateway. */
  isolate?: boolean;
}

/** What a NIC's record keeps (`policy_json`). */
export interface PolicyRecord {
  /** What the add call (and later changes) asked for. */
  spec: NormalizedSpec;
  /** What is in effect. */
  effective: NicPolicy;
}

/** The built-in egress rules: the link-local metadata address is denied. */
export const BUILTIN_EGRESS: readonly EgressRule[] = Object.freeze([
  Object.freeze({ action: "deny", cidr: "169.254.169.254/32" } as const),
]);

/** Anti-spoofing is on unless turned off. */
export const DEFAULT_ANTI_SPOOFING = true;

/** Most egress rules one source may give. */
export const MAX_EGRESS_RULES = 256;

const BIT_UNITS: Record<string, number> = {
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
  tbps: 8e12,
};
const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};
/** Slowest rate: one byte a second. */
export const MIN_RATE_BPS = 8;
/** Fastest rate: 10 Tbit/s. */
export const MAX_RATE_BPS = 10e12;
/** Smallest burst: a full Ethernet frame and some. */
export const MIN_BURST_BYTES = 2048;
/** Largest burst (tbf keeps it in 32 bits). */
export const MAX_BURST_BYTES = 2 ** 32 - 1;
/** Default burst: this long at the rate, at least {@linkcode DEFAULT_MIN_BURST}. */
const DEFAULT_BURST_MS = 10;
const DEFAULT_MIN_BURST = 16 * 1024;
/** How long a frame may wait for tokens (the tbf queue's size). */
const QUEUE_LATENCY_MS = 50;

const RATE_HELP =
  "allowed: NUMBER with a unit of bit, kbit, mbit, gbit, tbit (bits/s) or " +
  "bps, kbps, mbps, gbps, tbps (bytes/s), then optionally :BURST in bytes " +
  "(b, k/kb/kib, m/mb/mib, g/gb/gib), e.g. 100mbit or 100mbit:64kb; or none";

/**
 * A rate as text: `100mbit`, `1.5gbit:256kb`, `none` (null). Throws
 * {@linkcode InvalidInputError} naming `where` and what is allowed.
 */
export function parseRate(
  op: string,
  object: string,
  where: string,
  text: string,
): RateLimit | null {
  const t = text.trim().toLowerCase();
  if (t === "none") return null;
  const bad = (why: string): never => {
    throw new InvalidInputError(
      op,
      object,
      `${where} ${JSON.stringify(text)}: ${why}; ${RATE_HELP}`,
    );
  };
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)(?::(\d+(?:\.\d+)?)\s*([a-z]*))?$/
    .exec(t);
  if (!m) return bad("not RATE[:BURST]");
  const unit = BIT_UNITS[m[2]];
  if (unit === undefined) {
    return bad(m[2] ? `unknown unit ${JSON.stringify(m[2])}` : "no unit");
  }
  const bps = Math.round(Number(m[1]) * unit);
  let burst: number | undefined;
  if (m[3] !== undefined) {
    const bunit = BYTE_UNITS[m[4]];
    if (bunit === undefined) {
      return bad(`unknown burst unit ${JSON.stringify(m[4])}`);
    }
    burst = Math.round(Number(m[3]) * bunit);
  }
  return checkRate(op, object, where, {
    bitsPerSecond: bps,
    burstBytes: burst,
  });
}

/** Checks a rate's range; fills in the default burst. */
function checkRate(
  op: string,
  object: string,
  where: string,
  r: { bitsPerSecond: unknown; burstBytes?: unknown },
): RateLimit {
  const bad = (why: string): never => {
    throw new InvalidInputError(op, object, `${where}: ${why}`);
  };
  const bps = r.bitsPerSecond;
  if (
    typeof bps !== "number" || !Number.isFinite(bps) || bps < MIN_RATE_BPS ||
    bps > MAX_RATE_BPS
  ) {
    bad(
      `rate ${JSON.stringify(bps)} out of range: ${MIN_RATE_BPS} bit/s ` +
        `(one byte a second) to 10tbit`,
    );
  }
  let burst = r.burstBytes;
  if (burst === undefined) {
    burst = Math.max(
      DEFAULT_MIN_BURST,
      Math.round((bps as number) / 8 * DEFAULT_BURST_MS / 1000),
    );
  }
  if (
    typeof burst !== "number" || !Number.isInteger(burst) ||
    burst < MIN_BURST_BYTES || burst > MAX_BURST_BYTES
  ) {
    bad(
      `burst ${JSON.stringify(burst)} out of range: ${MIN_BURST_BYTES} bytes ` +
        `(2k) to 4g`,
    );
  }
  return {
    bitsPerSecond: Math.floor(bps as number),
    burstBytes: burst as number,
  };
}

/** A rate as tc writes it: `100mbit`, `1.5gbit`, `64kbit`. */
export function rateText(r: RateLimit): string {
  const units: [number, string][] = [
    [1e12, "tbit"],
    [1e9, "gbit"],
    [1e6, "mbit"],
    [1e3, "kbit"],
  ];
  for (const [n, u] of units) {
    if (r.bitsPerSecond >= n) {
      return `${+(r.bitsPerSecond / n).toFixed(3)}${u}`;
    }
  }
  return `${r.bitsPerSecond}bit`;
}

/** The tbf of a rate: bytes a second, the burst, and a queue of 50 ms. */
export function tbfOf(r: RateLimit): TbfOptions {
  const rate = Math.max(1, Math.floor(r.bitsPerSecond / 8));
  return {
    rate,
    burst: r.burstBytes,
    limit: Math.min(
      MAX_BURST_BYTES,
      r.burstBytes + Math.ceil(rate * QUEUE_LATENCY_MS / 1000),
    ),
  };
}

const EGRESS_HELP = "allowed: CIDR[,PROTO[:PORT]] with PROTO tcp, udp or " +
  "icmp and PORT 1-65535 (tcp and udp), e.g. 10.0.0.0/8, 10.1.2.3/32,tcp:22, " +
  "fd00::/8,udp:53";

/**
 * An egress rule from a flag's text: `CIDR[,PROTO[:PORT]]`
 * (`--egress-deny 10.0.0.0/8,tcp:22`).
 */
export function parseEgressFlag(
  op: string,
  object: string,
  where: string,
  action: "allow" | "deny",
  text: string,
): EgressRule {
  const m = /^([^,]+)(?:,([a-zA-Z0-9]+)(?::(\d+))?)?$/.exec(text.trim());
  if (!m) {
    throw new InvalidInputError(
      op,
      object,
      `${where} ${
        JSON.stringify(text)
      }: not CIDR[,PROTO[:PORT]]; ${EGRESS_HELP}`,
    );
  }
  return checkRule(op, object, `${where} ${JSON.stringify(text)}`, {
    action,
    cidr: m[1],
    ...(m[2] !== undefined ? { protocol: m[2].toLowerCase() } : {}),
    ...(m[3] !== undefined ? { port: Number(m[3]) } : {}),
  });
}

/** Checks one rule (from any source); returns it normalized. */
export function checkRule(
  op: string,
  object: string,
  where: string,
  r: unknown,
): EgressRule {
  const bad = (why: string): never => {
    throw new InvalidInputError(op, object, `${where}: ${why}; ${EGRESS_HELP}`);
  };
  if (typeof r !== "object" || r === null || Array.isArray(r)) {
    return bad("an egress rule is an object {action, cidr, protocol?, port?}");
  }
  const o = r as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!["action", "cidr", "protocol", "port"].includes(k)) {
      bad(`unknown field ${JSON.stringify(k)} (action, cidr, protocol, port)`);
    }
  }
  if (o.action !== "allow" && o.action !== "deny") {
    bad(`action ${JSON.stringify(o.action)}: allow or deny`);
  }
  if (typeof o.cidr !== "string") return bad("cidr must be a string");
  const cidr = canonicalCidr(o.cidr, (why) => bad(why));
  let protocol: EgressProtocol | undefined;
  if (o.protocol !== undefined) {
    if (!(EGRESS_PROTOCOLS as readonly unknown[]).includes(o.protocol)) {
      bad(`protocol ${JSON.stringify(o.protocol)}: tcp, udp or icmp`);
    }
    protocol = o.protocol as EgressProtocol;
  }
  let port: number | undefined;
  if (o.port !== undefined) {
    if (
      typeof o.port !== "number" || !Number.isInteger(o.port) || o.port < 1 ||
      o.port > 65535
    ) {
      bad(`port ${JSON.stringify(o.port)}: 1-65535`);
    }
    if (protocol !== "tcp" && protocol !== "udp") {
      bad(`port ${o.port} needs protocol tcp or udp`);
    }
    port = o.port as number;
  }
  return {
    action: o.action as "allow" | "deny",
    cidr,
    ...(protocol ? { protocol } : {}),
    ...(port !== undefined ? { port } : {}),
  };
}

/** `10.0.0.0/8` as given, or a bare address as a host route; no host bits. */
function canonicalCidr(text: string, bad: (why: string) => never): string {
  let c;
  try {
    c = parseCidr(text.trim());
  } catch (e) {
    return bad(`cidr ${JSON.stringify(text)}: ${(e as Error).message}`);
  }
  for (let i = 0; i < c.bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, c.prefix - i * 8));
    const mask = keep ? (0xff << (8 - keep)) & 0xff : 0;
    if (c.bytes[i] & ~mask & 0xff) {
      bad(
        `cidr ${JSON.stringify(text)} has bits set past its /${c.prefix} ` +
          `prefix (did you mean the network, or /${
            c.family === 4 ? 32 : 128
          }?)`,
      );
    }
  }
  const addr = text.trim().split("/")[0].toLowerCase();
  return `${addr}/${c.prefix}`;
}

/** Rules of one source that contradict each other or repeat. */
function checkRuleSet(
  op: string,
  object: string,
  where: string,
  rules: EgressRule[],
): void {
  if (rules.length > MAX_EGRESS_RULES) {
    throw new InvalidInputError(
      op,
      object,
      `${where}: ${rules.length} egress rules, at most ${MAX_EGRESS_RULES}`,
    );
  }
  const seen = new Map<string, EgressRule>();
  for (const r of rules) {
    const key = `${r.cidr} ${r.protocol ?? "*"} ${r.port ?? "*"}`;
    const prev = seen.get(key);
    if (prev) {
      throw new InvalidInputError(
        op,
        object,
        prev.action === r.action
          ? `${where}: egress rule ${r.action} ${key} given twice`
          : `${where}: conflicting egress rules: ${prev.action} and ` +
            `${r.action} of the same destination (${key}); the first would ` +
            `always win: keep one`,
      );
    }
    seen.set(key, r);
  }
}

/**
 * Checks a spec from the library, the API or the policy file: unknown
 * fields, types, rates and rules. `where(field)` names a field for the
 * message (`--rate`, `rate`, `policy.json: networks.n1.rate`).
 */
export function normalizeSpec(
  op: string,
  object: string,
  spec: unknown,
  where: (field: string) => string,
): NormalizedSpec {
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    throw new InvalidInputError(
      op,
      object,
      `${where("")}: a policy is an object {rate, rateIn, rateOut, ` +
        `antiSpoofing, egress, isolate}`,
    );
  }
  const s = spec as Record<string, unknown>;
  const out: NormalizedSpec = {};
  for (const [k, v] of Object.entries(s)) {
    if (v === undefined) continue;
    switch (k) {
      case "rate":
      case "rateIn":
      case "rateOut":
        out[k] = v === null
          ? null
          : typeof v === "string"
          ? parseRate(op, object, where(k), v)
          : typeof v === "object" && !Array.isArray(v)
          ? checkRate(op, object, where(k), v as RateLimit)
          : (() => {
            throw new InvalidInputError(
              op,
              object,
              `${where(k)}: ${JSON.stringify(v)}; ${RATE_HELP}`,
            );
          })();
        break;
      case "antiSpoofing":
      case "isolate":
        if (typeof v !== "boolean") {
          throw new InvalidInputError(
            op,
            object,
            `${where(k)}: ${JSON.stringify(v)}; allowed: true or false`,
          );
        }
        out[k] = v;
        break;
      case "egress": {
        if (!Array.isArray(v)) {
          throw new InvalidInputError(
            op,
            object,
            `${where(k)}: a list of rules; ${EGRESS_HELP}`,
          );
        }
        const rules = v.map((r, i) =>
          checkRule(op, object, `${where(k)}[${i}]`, r)
        );
        checkRuleSet(op, object, where(k), rules);
        out.egress = rules;
        break;
      }
      default:
        throw new InvalidInputError(
          op,
          object,
          `${where(k)}: unknown policy field; allowed: rate, rateIn, ` +
            `rateOut, antiSpoofing, egress, isolate`,
        );
    }
  }
  return out;
}

/** Whether a spec asks for anything. */
export function hasPolicyFields(spec: NormalizedSpec | undefined): boolean {
  return !!spec && Object.keys(spec).length > 0;
}

/**
 * The policy in effect: each field from the call, else the network's
 * default, else the built-in one; egress rules are the call's, then the
 * network's, then the built-in ones (first match wins).
 */
export function resolvePolicy(
  call: NormalizedSpec = {},
  network: NormalizedSpec = {},
): NicPolicy {
  const pick = <T>(...vals: (T | undefined)[]): T | undefined =>
    vals.find((v) => v !== undefined);
  return {
    rateIn: pick(call.rateIn, call.rate, network.rateIn, network.rate) ?? null,
    rateOut: pick(call.rateOut, call.rate, network.rateOut, network.rate) ??
      null,
    antiSpoofing: pick(call.antiSpoofing, network.antiSpoofing) ??
      DEFAULT_ANTI_SPOOFING,
    egress: [
      ...(call.egress ?? []).map((r) => ({ ...r, source: "call" as const })),
      ...(network.egress ?? []).map((r) => ({
        ...r,
        source: "network" as const,
      })),
      ...BUILTIN_EGRESS.map((r) => ({ ...r, source: "default" as const })),
    ],
    isolate: pick(call.isolate, network.isolate) ?? false,
  };
}

/**
 * A change of a NIC's asked-for policy: the fields given replace those
 * asked for before (`egress` replaces the whole list; null clears a rate
 * back to the network's or built-in default when `unset` names it).
 */
export function mergeSpec(
  before: NormalizedSpec,
  change: NormalizedSpec,
  unset: readonly (keyof NormalizedSpec)[] = [],
): NormalizedSpec {
  const out: NormalizedSpec = { ...before };
  for (const k of unset) delete out[k];
  for (const [k, v] of Object.entries(change)) {
    if (v !== undefined) {
      (out as Record<string, unknown>)[k] = v;
    }
  }
  // A direction given alone keeps the other from an earlier `rate`.
  if (change.rate !== undefined) {
    delete out.rateIn;
    delete out.rateOut;
    if (change.rateIn !== undefined) out.rateIn = change.rateIn;
    if (change.rateOut !== undefined) out.rateOut = change.rateOut;
  }
  return out;
}

// -------------------------------------------------------------- the file

/** The policy file: per-network defaults (docs/policy.md). */
export interface PolicyFile {
  /** Its path. */
  path: string;
  /** Defaults by network name; `*` for networks without their own. */
  networks: Record<string, NormalizedSpec>;
}

/**
 * Reads and checks the policy file. A missing file is no defaults; a file
 * that does not parse or holds a bad value is refused, naming the file,
 * the field and what is allowed. A blocking read: it is small, and read
 * before every add, where an async op costs more than the read.
 */
export function loadPolicyFile(op: string, path: string): PolicyFile {
  // Most hosts have none: asked without a failed read's exception.
  if (surelyAbsent(path)) return { path, networks: {} };
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { path, networks: {} };
    throw new InvalidInputError(
      op,
      path,
      `policy file ${path} cannot be read: ${(e as Error).message}`,
    );
  }
  return parsePolicyFile(op, path, text);
}

/** The policy file's text, checked (see {@linkcode loadPolicyFile}). */
export function parsePolicyFile(
  op: string,
  path: string,
  text: string,
): PolicyFile {
  const where = (field: string) => `policy file ${path}: ${field}`;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InvalidInputError(
      op,
      path,
      `${where("")} is not JSON (${(e as Error).message}); expected ` +
        `{"networks": {"NAME or *": {rate, rateIn, rateOut, antiSpoofing, ` +
        `egress, isolate}}}`,
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new InvalidInputError(
      op,
      path,
      `${where("top level")}: expected {"networks": {…}}`,
    );
  }
  const top = json as Record<string, unknown>;
  for (const k of Object.keys(top)) {
    if (k !== "networks") {
      throw new InvalidInputError(
        op,
        path,
        `${where(k)}: unknown field; allowed: networks`,
      );
    }
  }
  const nets = top.networks ?? {};
  if (typeof nets !== "object" || nets === null || Array.isArray(nets)) {
    throw new InvalidInputError(
      op,
      path,
      `${where("networks")}: an object of network name (or *) to policy`,
    );
  }
  const networks: Record<string, NormalizedSpec> = {};
  for (const [name, spec] of Object.entries(nets)) {
    networks[name] = normalizeSpec(
      op,
      path,
      spec,
      (f) => where(`networks.${name}${f ? `.${f}` : ""}`),
    );
  }
  return { path, networks };
}

/** The defaults of `network` in the file (its own, else `*`). */
export function networkDefaults(
  file: PolicyFile,
  network: string,
): NormalizedSpec {
  return file.networks[network] ?? file.networks["*"] ?? {};
}

// -------------------------------------------------------- NIC and wiring

/** The policy a record keeps, or null (a NIC made before policies). */
export function policyOf(rec: NicRecord): PolicyRecord | null {
  const p = rec.policy as PolicyRecord | null | undefined;
  return p && typeof p === "object" && "effective" in p ? p : null;
}

/** Whether the conflist's IPAM hands out addresses by DHCP. */
function usesDhcp(cniConfig: string): boolean {
  try {
    return parseConfList(cniConfig, "record").plugins.some((p) =>
      (p.conf.ipam as { type?: unknown } | undefined)?.type === "dhcp"
    );
  } catch {
    return false;
  }
}

/**
 * What the wiring applies for a NIC: its policy in effect with its MAC,
 * addresses, subnets and gateways. A NIC without a recorded policy gets
 * none (plain redirects), except the DHCP rules on a `dhcp` network. The MAC is the record's, or the veth's when the
 * record has none yet (an add in progress).
 */
export function tapPolicyOf(rec: NicRecord): TapPolicy | undefined {
  const p = policyOf(rec);
  // A clone NIC's routed path (docs/clones.md) has no redirects to filter.
  if (rec.guest) return undefined;
  if (!p) {
    // Plain redirects, but the dhcp daemon's replies must still stay in
    // the netns (docs/datapath.md, "DHCP").
    return usesDhcp(rec.cniConfig) ? { ...OPEN_POLICY, dhcp: true } : undefined;
  }
  const e = p.effective;
  return {
    ...(rec.mac ? { mac: rec.mac } : {}),
    ipv4: rec.ips.filter((ip) => ip.version === 4).map((ip) => ip.address),
    ipv6: rec.ips.filter((ip) => ip.version === 6).map((ip) => ip.address),
    antiSpoofing: e.antiSpoofing,
    dhcp: usesDhcp(rec.cniConfig),
    egress: e.egress.map((r): EgressMatch => ({
      action: r.action,
      cidr: r.cidr,
      ...(r.protocol ? { protocol: r.protocol } : {}),
      ...(r.port !== undefined ? { port: r.port } : {}),
    })),
    isolate: e.isolate ? isolationOf(rec.ips) : null,
    rateIn: e.rateIn ? tbfOf(e.rateIn) : null,
    rateOut: e.rateOut ? tbfOf(e.rateOut) : null,
  };
}

/** A policy in a few words, for tables: `anti-spoofing, in 100mbit, 2 rules`. */
export function policySummary(p: NicPolicy | undefined): string {
  if (!p) return "-";
  const parts: string[] = [];
  if (p.antiSpoofing) parts.push("anti-spoofing");
  if (p.isolate) parts.push("isolated");
  if (p.rateIn) parts.push(`in ${rateText(p.rateIn)}`);
  if (p.rateOut) parts.push(`out ${rateText(p.rateOut)}`);
  const rules = p.egress.length;
  parts.push(`${rules} egress rule${rules === 1 ? "" : "s"}`);
  return parts.join(", ");
}
