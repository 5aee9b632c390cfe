/**
 * CNI results: the typed 1.0 form the runtime hands out, the conversion of
 * older results (0.1.0-0.2.0 `ip4`/`ip6`, 0.3.x/0.4.0 with a `version` per IP)
 * into it, and back to a list's version for `prevResult`.
 *
 * @module
 */
import { CniResultError } from "./errors.ts";
import { compareCniVersions, isCniVersion, versionAtLeast } from "./version.ts";

/** An interface a plugin created or configured. */
export interface CniInterface {
  /** Interface name, e.g. `eth0` or the host-side veth. */
  name: string;
  /** Hardware address, when the interface has one. */
  mac?: string;
  /** The netns path for interfaces inside the container; absent on the host. */
  sandbox?: string;
  /** MTU, when the plugin reports it. */
  mtu?: number;
  /** Fields of later spec versions, kept as returned. */
  [extra: string]: unknown;
}

/** An IP address assigned by the plugins. */
export interface CniIpConfig {
  /** Address with prefix length, e.g. `"10.88.0.5/16"` or `"fd00::5/64"`. */
  address: string;
  /** Default gateway for this address, if any. */
  gateway?: string;
  /** Index into `interfaces` of the interface holding the address. */
  interface?: number;
  /** Fields of later spec versions, kept as returned. */
  [extra: string]: unknown;
}

/** A route the plugins set up in the container. */
export interface CniRoute {
  /** Destination, CIDR notation. */
  dst: string;
  /** Next hop; absent means the default gateway. */
  gw?: string;
  /** Fields of 1.1 (`mtu`, `table`, ...), kept as returned. */
  [extra: string]: unknown;
}

/** DNS settings a plugin suggests. */
export interface CniDns {
  /** Name server addresses. */
  nameservers?: string[];
  /** Local domain. */
  domain?: string;
  /** Search domains. */
  search?: string[];
  /** Resolver options. */
  options?: string[];
}

/** A CNI result in 1.0 form (arrays always present, `dns` always an object). */
export interface CniResult {
  /** `"1.0.0"` for results converted from older versions, else as returned. */
  cniVersion: string;
  /** Interfaces created or configured, host side and container side. */
  interfaces: CniInterface[];
  /** Addresses assigned, IPv4 and IPv6. */
  ips: CniIpConfig[];
  /** Routes set up in the container. */
  routes: CniRoute[];
  /** DNS settings suggested by the plugins. */
  dns: CniDns;
}

// ------------------------------------------------------------ checks
//
// A few composable checks in place of a schema library (loading one cost
// every CLI process ~45 ms of start-up). Each check reports problems into
// `issues` with their path and returns the value as parsed: objects are
// copied, their known keys first, in the order given, then the unknown
// keys as they were (kept, but never a `__proto__` key, which would set the
// copy's prototype); absent optional keys stay absent.

type Path = readonly (string | number)[];

interface Issue {
  readonly path: Path;
  readonly message: string;
}

type Check = (v: unknown, path: Path, issues: Issue[]) => unknown;

/** A key of an object check: its check, and whether it may be absent. */
interface Field {
  readonly check: Check;
  readonly optional: boolean;
}

const req = (check: Check): Field => ({ check, optional: false });
const opt = (check: Check): Field => ({ check, optional: true });

/** The JSON kind of a value, for messages: never the value itself. */
function kindOf(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

function wrongType(path: Path, expected: string, v: unknown): Issue {
  return {
    path,
    message: v === undefined
      ? `missing (expected ${expected})`
      : `expected ${expected}, got ${kindOf(v)}`,
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const string: Check = (v, path, issues) => {
  if (typeof v !== "string") issues.push(wrongType(path, "a string", v));
  return v;
};

/** A string matching `re`; `message` says what it must be. */
const matching = (re: RegExp, message: string): Check => (v, path, issues) => {
  if (typeof v !== "string") issues.push(wrongType(path, "a string", v));
  else if (!re.test(v)) issues.push({ path, message });
  return v;
};

const number: Check = (v, path, issues) => {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    issues.push(wrongType(path, "a number", v));
  }
  return v;
};

/** An integer (within the exactly representable range) that is >= 0. */
const index: Check = (v, path, issues) => {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    issues.push(wrongType(path, "a number", v));
  } else if (!Number.isInteger(v)) {
    issues.push({ path, message: "expected a whole number" });
  } else if (!Number.isSafeInteger(v) || v < 0) {
    issues.push({
      path,
      message: `expected a whole number from 0 to ${Number.MAX_SAFE_INTEGER}`,
    });
  }
  return v;
};

/** One of `values`, exactly. */
const oneOf = (...values: string[]): Check => (v, path, issues) => {
  if (!values.includes(v as string)) {
    issues.push({
      path,
      message: `expected one of ${values.map((x) => `"${x}"`).join(", ")}`,
    });
  }
  return v;
};

const arrayOf = (element: Check): Check => (v, path, issues) => {
  if (!Array.isArray(v)) {
    issues.push(wrongType(path, "a list", v));
    return v;
  }
  const out: unknown[] = [];
  for (let i = 0; i < v.length; i++) {
    out.push(element(v[i], [...path, i], issues));
  }
  return out;
};

/** An object with these keys checked; any other key is kept as it is. */
const looseObject = (fields: Record<string, Field>): Check => {
  const known = new Set(Object.keys(fields));
  return (v, path, issues) => {
    if (!isObject(v)) {
      issues.push(wrongType(path, "an object", v));
      return v;
    }
    const out: Record<string, unknown> = {};
    for (const [key, { check, optional }] of Object.entries(fields)) {
      const present = key in v;
      if (optional && v[key] === undefined) {
        if (present) out[key] = undefined;
        continue;
      }
      const parsed = check(v[key], [...path, key], issues);
      if (present) out[key] = parsed;
    }
    for (const key in v) {
      if (!known.has(key) && key !== "__proto__") out[key] = v[key];
    }
    return out;
  };
};

// ------------------------------------------------------------ shapes

const cidr = matching(/^[0-9a-fA-F:.]+\/\d{1,3}$/, "not an address/prefix");
const ipAddr = matching(/^[0-9a-fA-F:.]+$/, "not an IP address");

const dnsCheck = looseObject({
  nameservers: opt(arrayOf(string)),
  domain: opt(string),
  search: opt(arrayOf(string)),
  options: opt(arrayOf(string)),
});

const routeCheck = looseObject({ dst: req(cidr), gw: opt(ipAddr) });

const interfaceCheck = looseObject({
  name: req(string),
  mac: opt(string),
  sandbox: opt(string),
  mtu: opt(number),
});

const ipCheck = looseObject({
  address: req(cidr),
  gateway: opt(ipAddr),
  interface: opt(index),
  version: opt(oneOf("4", "6")), // 0.3.x/0.4.0 only
});

/** A 0.3.0-or-later result, as parsed. */
interface CurrentResult {
  interfaces?: CniInterface[];
  ips?: (CniIpConfig & { version?: string })[];
  routes?: CniRoute[];
  dns?: CniDns;
}

const currentCheck = looseObject({
  cniVersion: req(string),
  interfaces: opt(arrayOf(interfaceCheck)),
  ips: opt(arrayOf(ipCheck)),
  routes: opt(arrayOf(routeCheck)),
  dns: opt(dnsCheck),
});

/** A 0.1.0/0.2.0 `ip4`/`ip6` entry, as parsed. */
interface LegacyIp {
  ip: string;
  gateway?: string;
  routes?: CniRoute[];
}

/** A 0.1.0/0.2.0 result, as parsed. */
interface LegacyResult {
  ip4?: LegacyIp;
  ip6?: LegacyIp;
  dns?: CniDns;
}

const legacyIpCheck = looseObject({
  ip: req(cidr),
  gateway: opt(ipAddr),
  routes: opt(arrayOf(routeCheck)),
});

const legacyCheck = looseObject({
  cniVersion: req(string),
  ip4: opt(legacyIpCheck),
  ip6: opt(legacyIpCheck),
  dns: opt(dnsCheck),
});

/** Runs `check` on `raw`: the parsed value, or a CniResultError naming the problems. */
function parse<T>(check: Check, raw: unknown, source: string): T {
  const found: Issue[] = [];
  const parsed = check(raw, [], found);
  if (found.length) throw new CniResultError(source, issues(found));
  return parsed as T;
}

/**
 * Validates a result of any supported version and returns it in 1.0 form.
 * `source` names where it came from, for the error message.
 */
export function toCniResult(raw: unknown, source: string): CniResult {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniResultError(source, "not a JSON object");
  }
  const version = (raw as { cniVersion?: unknown }).cniVersion;
  if (typeof version !== "string" || !isCniVersion(version)) {
    throw new CniResultError(source, "missing or malformed 'cniVersion'");
  }
  if (!versionAtLeast(version, "0.3.0")) return fromLegacy(raw, source);
  const r = parse<CurrentResult>(currentCheck, raw, source);
  const ips = (r.ips ?? []).map((ip) => {
    const { version: _dropped, ...rest } = ip;
    return rest as CniIpConfig;
  });
  const interfaces = (r.interfaces ?? []) as CniInterface[];
  for (const ip of ips) {
    if (ip.interface !== undefined && ip.interface >= interfaces.length) {
      throw new CniResultError(
        source,
        `ip ${ip.address} names interface ${ip.interface}, but there are ${interfaces.length}`,
      );
    }
  }
  return {
    cniVersion: versionAtLeast(version, "1.0.0") ? version : "1.0.0",
    interfaces,
    ips,
    routes: (r.routes ?? []) as CniRoute[],
    dns: (r.dns ?? {}) as CniDns,
  };
}

function fromLegacy(raw: object, source: string): CniResult {
  const r = parse<LegacyResult>(legacyCheck, raw, source);
  const ips: CniIpConfig[] = [];
  const routes: CniRoute[] = [];
  for (const ip of [r.ip4, r.ip6]) {
    if (!ip) continue;
    ips.push(
      ip.gateway ? { address: ip.ip, gateway: ip.gateway } : { address: ip.ip },
    );
    routes.push(...(ip.routes ?? []) as CniRoute[]);
  }
  return {
    cniVersion: "1.0.0",
    interfaces: [],
    ips,
    routes,
    dns: (r.dns ?? {}) as CniDns,
  };
}

/**
 * Expresses a 1.0-form result in the format of `cniVersion` (0.3.0 and
 * later: the versions in which a result can be a `prevResult`).
 */
export function resultForVersion(
  result: CniResult,
  cniVersion: string,
): Record<string, unknown> {
  if (compareCniVersions(cniVersion, "0.3.0") < 0) {
    throw new CniResultError(
      "conversion",
      `a result cannot be given to a plugin as CNI ${cniVersion} (prevResult exists from 0.3.0)`,
    );
  }
  if (versionAtLeast(cniVersion, "1.0.0")) return { ...result, cniVersion };
  return {
    ...result,
    cniVersion,
    ips: result.ips.map((ip) => ({
      ...ip,
      version: ipVersionOf(ip.address) === 6 ? "6" : "4",
    })),
  };
}

/** An address split out of CIDR notation. */
export interface ParsedCidr {
  /** The address without prefix. */
  address: string;
  /** The prefix length. */
  prefix: number;
  /** 4 or 6. */
  version: 4 | 6;
}

/** Splits `"10.88.0.5/16"` into address, prefix length and IP version. */
export function parseCidr(cidrText: string): ParsedCidr {
  const slash = cidrText.lastIndexOf("/");
  const address = slash < 0 ? cidrText : cidrText.slice(0, slash);
  const version = ipVersionOf(address);
  const prefix = slash < 0
    ? (version === 6 ? 128 : 32)
    : Number(cidrText.slice(slash + 1));
  if (
    !Number.isInteger(prefix) || prefix < 0 ||
    prefix > (version === 6 ? 128 : 32)
  ) {
    throw new RangeError(`bad prefix length in ${JSON.stringify(cidrText)}`);
  }
  return { address, prefix, version };
}

function ipVersionOf(address: string): 4 | 6 {
  return address.includes(":") ? 6 : 4;
}

/** The first five issues, each as `path: message` (`ips.0.address: ...`). */
function issues(found: readonly Issue[]): string {
  return found.slice(0, 5).map((i) =>
    `${i.path.map(String).join(".") || "(top)"}: ${i.message}`
  ).join("; ");
}
