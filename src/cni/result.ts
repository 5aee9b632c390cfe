/**
 * CNI results: the typed 1.0 form the runtime hands out, the conversion of
 * older results (0.1.0-0.2.0 `ip4`/`ip6`, 0.3.x/0.4.0 with a `version` per IP)
 * into it, and back to a list's version for `prevResult`.
 *
 * @module
 */
import { z } from "zod";
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

const cidr = z.string().regex(
  /^[0-9a-fA-F:.]+\/\d{1,3}$/,
  "not an address/prefix",
);
const ipAddr = z.string().regex(/^[0-9a-fA-F:.]+$/, "not an IP address");

const dnsSchema = z.looseObject({
  nameservers: z.array(z.string()).optional(),
  domain: z.string().optional(),
  search: z.array(z.string()).optional(),
  options: z.array(z.string()).optional(),
});

const routeSchema = z.looseObject({ dst: cidr, gw: ipAddr.optional() });

const interfaceSchema = z.looseObject({
  name: z.string(),
  mac: z.string().optional(),
  sandbox: z.string().optional(),
  mtu: z.number().optional(),
});

const ipSchema = z.looseObject({
  address: cidr,
  gateway: ipAddr.optional(),
  interface: z.number().int().nonnegative().optional(),
  version: z.enum(["4", "6"]).optional(), // 0.3.x/0.4.0 only
});

const currentSchema = z.looseObject({
  cniVersion: z.string(),
  interfaces: z.array(interfaceSchema).optional(),
  ips: z.array(ipSchema).optional(),
  routes: z.array(routeSchema).optional(),
  dns: dnsSchema.optional(),
});

const legacyIpSchema = z.looseObject({
  ip: cidr,
  gateway: ipAddr.optional(),
  routes: z.array(routeSchema).optional(),
});

const legacySchema = z.looseObject({
  cniVersion: z.string(),
  ip4: legacyIpSchema.optional(),
  ip6: legacyIpSchema.optional(),
  dns: dnsSchema.optional(),
});

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
  const parsed = currentSchema.safeParse(raw);
  if (!parsed.success) throw new CniResultError(source, issues(parsed.error));
  const r = parsed.data;
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
  const parsed = legacySchema.safeParse(raw);
  if (!parsed.success) throw new CniResultError(source, issues(parsed.error));
  const r = parsed.data;
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

function issues(error: z.ZodError): string {
  return error.issues.slice(0, 5).map((i) =>
    `${i.path.map(String).join(".") || "(top)"}: ${i.message}`
  ).join("; ");
}
