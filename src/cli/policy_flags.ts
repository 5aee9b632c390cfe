/**
 * The policy and capability-arg fields of `add` and `policy`, from either
 * front end (docs/policy.md): command-line flags (`--rate 100mbit[:BURST]`,
 * `--rate-in`, `--rate-out`, `--egress-allow/--egress-deny CIDR[,PROTO[:PORT]]`
 * in the order given, `--isolate`, `--allow-spoofing`, `--port`,
 * `--cni-bandwidth`, `--dns-*`) and the API body's fields, checked before
 * anything is opened, and back into a body for the daemon.
 *
 * @module
 */
import type { PolicySpec } from "../provider/policy.ts";
import { parseEgressFlag, parseRate } from "../provider/policy.ts";
import {
  checkCapabilityArgs,
  parseCniBandwidth,
  parsePortFlag,
} from "../provider/capabilities.ts";
import type {
  CniBandwidth,
  CniDns,
  PortMapping,
} from "../provider/capabilities.ts";
import { InvalidInputError } from "../provider/errors.ts";
import { parseIP } from "../wiring/policy_spec.ts";
import type { AddSpec } from "../provider/types.ts";
import type { Parsed } from "./args.ts";
import { strs } from "./args.ts";
import type { JsonSchema, OptionSpec } from "./command.ts";
import { arr, bool, int, obj, oneOf, str } from "./schemas.ts";

/** The policy and capability args an add gives each new NIC. */
export interface NicExtras {
  /** Its policy fields. */
  policy?: PolicySpec;
  /** CNI `portMappings`. */
  portMappings?: PortMapping[];
  /** CNI `bandwidth`. */
  bandwidth?: CniBandwidth;
  /** CNI `dns`. */
  dns?: CniDns;
}

/** The policy flags `add` and `policy` share. */
export const POLICY_OPTIONS: Record<string, OptionSpec> = {
  rate: {
    type: "string",
    value: "RATE[:BURST]",
    help: "rate limit both ways on the TAP path, e.g. 100mbit or " +
      "100mbit:64kb (none: unlimited)",
  },
  "rate-in": {
    type: "string",
    value: "RATE[:BURST]",
    help: "rate limit toward the guest (overrides --rate)",
  },
  "rate-out": {
    type: "string",
    value: "RATE[:BURST]",
    help: "rate limit from the guest (overrides --rate)",
  },
  "egress-deny": {
    type: "string",
    multiple: true,
    value: "CIDR[,PROTO[:PORT]]",
    help: "deny the guest this destination (repeatable; rules apply in " +
      "the order given, with --egress-allow)",
  },
  "egress-allow": {
    type: "string",
    multiple: true,
    value: "CIDR[,PROTO[:PORT]]",
    help: "allow the guest this destination (repeatable, in order)",
  },
  isolate: {
    type: "boolean",
    help: "no traffic with other VMs of the network but the gateway",
  },
  "allow-spoofing": {
    type: "boolean",
    help: "turn anti-spoofing off (the guest may send from any MAC/IP)",
  },
};

/** The capability-arg flags of `add`. */
export const CAPABILITY_OPTIONS: Record<string, OptionSpec> = {
  port: {
    type: "string",
    multiple: true,
    value: "HOSTPORT:GUESTPORT[/tcp|udp]",
    help: "CNI portMappings for the portmap plugin (repeatable)",
  },
  "cni-bandwidth": {
    type: "string",
    value: "RATE[:BURST]",
    help: "CNI bandwidth for the bandwidth plugin, both ways (its own " +
      "shaping on the host side, beside --rate)",
  },
  "dns-server": {
    type: "string",
    multiple: true,
    value: "IP",
    help: "CNI dns.servers for plugins that take dns (repeatable)",
  },
  "dns-search": {
    type: "string",
    multiple: true,
    value: "DOMAIN",
    help: "CNI dns.searches (repeatable)",
  },
  "dns-option": {
    type: "string",
    multiple: true,
    value: "OPTION",
    help: "CNI dns.options (repeatable)",
  },
};

/** The policy fields from `add`'s or `policy`'s flags. */
export function policyFromFlags(
  op: string,
  object: string,
  p: Parsed,
): PolicySpec {
  const spec: PolicySpec = {};
  for (
    const [flag, key] of [["rate", "rate"], ["rate-in", "rateIn"], [
      "rate-out",
      "rateOut",
    ]] as const
  ) {
    const v = p.values[flag];
    if (typeof v === "string") {
      // Checked here, so a bad value is refused before anything opens.
      parseRate(op, object, `--${flag}`, v);
      spec[key] = v;
    }
  }
  const egress = (p.sequence ?? []).filter(([name]) =>
    name === "egress-allow" || name === "egress-deny"
  ).map(([name, text]) =>
    parseEgressFlag(
      op,
      object,
      `--${name}`,
      name === "egress-allow" ? "allow" : "deny",
      text,
    )
  );
  if (egress.length) spec.egress = egress;
  if (p.values.isolate === true) spec.isolate = true;
  if (p.values["allow-spoofing"] === true) spec.antiSpoofing = false;
  return spec;
}

/** The policy fields and capability args of `add`'s flags. */
export function extrasFromFlags(
  op: string,
  object: string,
  p: Parsed,
): NicExtras {
  const out: NicExtras = {};
  const policy = policyFromFlags(op, object, p);
  if (Object.keys(policy).length) out.policy = policy;
  const ports = strs(p, "port").map((t) =>
    parsePortFlag(op, object, "--port", t)
  );
  if (ports.length) out.portMappings = ports;
  const bw = p.values["cni-bandwidth"];
  if (typeof bw === "string") {
    const b = parseCniBandwidth(op, object, "--cni-bandwidth", bw);
    if (Object.keys(b).length) out.bandwidth = b;
  }
  const dns: CniDns = {};
  for (
    const [flag, key] of [["dns-server", "servers"], [
      "dns-search",
      "searches",
    ], ["dns-option", "options"]] as const
  ) {
    const v = strs(p, flag);
    if (flag === "dns-server") {
      for (const ip of v) {
        try {
          parseIP(ip);
        } catch (e) {
          throw new InvalidInputError(
            op,
            object,
            `--dns-server ${JSON.stringify(ip)}: ${
              (e as Error).message
            }; allowed: an IPv4 or IPv6 address`,
          );
        }
      }
    }
    if (v.length) dns[key] = v;
  }
  if (Object.keys(dns).length) out.dns = dns;
  checkCapabilityArgs(op, object, out, (f) => `--${flagOf(f)}`);
  return out;
}

function flagOf(field: string): string {
  return { portMappings: "port", bandwidth: "cni-bandwidth", dns: "dns-*" }[
    field
  ] ?? field;
}

/** The JSON Schema of a policy object in a request body. */
export const POLICY_SCHEMA: JsonSchema = obj({
  rate: { type: ["string", "null"] },
  rateIn: { type: ["string", "null"] },
  rateOut: { type: ["string", "null"] },
  antiSpoofing: bool,
  isolate: bool,
  egress: arr(
    obj({
      action: oneOf("allow", "deny"),
      cidr: str,
      protocol: oneOf("tcp", "udp", "icmp"),
      port: int,
    }, ["action", "cidr"]),
  ),
}, []);

/** The body fields `add` takes for the extras, and their schemas. */
export const EXTRA_BODY_SCHEMAS: Record<string, JsonSchema> = {
  policy: POLICY_SCHEMA,
  portMappings: arr(
    obj({
      hostPort: int,
      containerPort: int,
      protocol: oneOf("tcp", "udp"),
      hostIP: str,
    }, ["hostPort", "containerPort"]),
  ),
  bandwidth: obj({
    ingressRate: int,
    ingressBurst: int,
    egressRate: int,
    egressBurst: int,
  }, []),
  dns: obj({ servers: arr(str), searches: arr(str), options: arr(str) }, []),
};

/** The names of those body fields. */
export const EXTRA_BODY_FIELDS: readonly string[] = Object.keys(
  EXTRA_BODY_SCHEMAS,
);

/** The extras from an API body's fields (checked by the provider too). */
export function extrasFromBody(
  op: string,
  object: string,
  f: Record<string, unknown>,
): NicExtras {
  const out: NicExtras = {};
  if (f.policy !== undefined) {
    if (
      typeof f.policy !== "object" || f.policy === null ||
      Array.isArray(f.policy)
    ) {
      throw new InvalidInputError(
        op,
        object,
        `"policy" must be an object {rate, rateIn, rateOut, antiSpoofing, egress, isolate}`,
      );
    }
    out.policy = f.policy as PolicySpec;
  }
  const caps = checkCapabilityArgs(op, object, f);
  if (caps?.portMappings) out.portMappings = caps.portMappings;
  if (caps?.bandwidth) out.bandwidth = caps.bandwidth;
  if (caps?.dns) out.dns = caps.dns;
  return out;
}

/** Gives every NIC spec of an add the extras; refuses them for none. */
export function withExtras<I extends { specs: AddSpec[] }>(
  input: I,
  extras: NicExtras,
  bad: (msg: string) => Error,
): I {
  if (!Object.keys(extras).length) return input;
  if (!input.specs.length) {
    throw bad(
      "policy and capability args name the NICs they are for: give nics " +
        "or index",
    );
  }
  for (const spec of input.specs) Object.assign(spec, structuredClone(extras));
  return input;
}

/** The extras of a spec as body fields (what the CLI sends the daemon). */
export function extrasToBody(spec: AddSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (spec.policy !== undefined) out.policy = spec.policy;
  if (spec.portMappings !== undefined) out.portMappings = spec.portMappings;
  if (spec.bandwidth !== undefined) out.bandwidth = spec.bandwidth;
  if (spec.dns !== undefined) out.dns = spec.dns;
  return out;
}
