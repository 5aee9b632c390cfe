/**
 * CNI capability args a NIC's add may give (docs/policy.md, "CNI
 * capability args"): `portMappings` (the portmap plugin's), `bandwidth`
 * (the bandwidth plugin's own shaping on the host side, beside vmnic's TAP
 * rates) and `dns`. The runtime hands each plugin only those it declares
 * in its `capabilities`; they are recorded with the NIC, so DEL and CHECK
 * get them again. `mac` and `ips` go their own way (records.ts).
 *
 * @module
 */
import { parseIP } from "../wiring/policy_spec.ts";
import { InvalidInputError } from "./errors.ts";
import { parseRate } from "./policy.ts";

/** One port mapping (CNI conventions, `portMappings`). */
export interface PortMapping {
  /** Port on the host. */
  hostPort: number;
  /** Port in the guest. */
  containerPort: number;
  /** `tcp` or `udp`. */
  protocol: "tcp" | "udp";
  /** Only this host address (default: all). */
  hostIP?: string;
}

/** The bandwidth plugin's knob (CNI conventions, `bandwidth`): bits/s and bits. */
export interface CniBandwidth {
  /** Toward the guest, bits/s. */
  ingressRate?: number;
  /** Its burst, bits. */
  ingressBurst?: number;
  /** From the guest, bits/s. */
  egressRate?: number;
  /** Its burst, bits. */
  egressBurst?: number;
}

/** DNS settings for plugins that take them (CNI conventions, `dns`). */
export interface CniDns {
  /** Name servers. */
  servers?: string[];
  /** Search domains. */
  searches?: string[];
  /** resolv.conf options. */
  options?: string[];
}

/** The capability args vmnic passes on, as recorded with a NIC. */
export interface CapabilityArgs {
  /** For the portmap plugin. */
  portMappings?: PortMapping[];
  /** For the bandwidth plugin. */
  bandwidth?: CniBandwidth;
  /** For plugins that declare `dns`. */
  dns?: CniDns;
}

/** Most port mappings one NIC may have. */
export const MAX_PORT_MAPPINGS = 64;

const PORT_HELP =
  "allowed: HOSTPORT:GUESTPORT[/tcp|udp], ports 1-65535, e.g. 8080:80 or 5353:53/udp";

/** A port mapping from `--port HOSTPORT:GUESTPORT[/tcp|udp]`. */
export function parsePortFlag(
  op: string,
  object: string,
  where: string,
  text: string,
): PortMapping {
  const m = /^(\d+):(\d+)(?:\/([a-zA-Z]+))?$/.exec(text.trim());
  if (!m) {
    throw new InvalidInputError(
      op,
      object,
      `${where} ${
        JSON.stringify(text)
      }: not HOSTPORT:GUESTPORT[/PROTO]; ${PORT_HELP}`,
    );
  }
  return checkPortMapping(op, object, `${where} ${JSON.stringify(text)}`, {
    hostPort: Number(m[1]),
    containerPort: Number(m[2]),
    protocol: (m[3] ?? "tcp").toLowerCase(),
  });
}

function checkPortMapping(
  op: string,
  object: string,
  where: string,
  v: unknown,
): PortMapping {
  const bad = (why: string): never => {
    throw new InvalidInputError(op, object, `${where}: ${why}; ${PORT_HELP}`);
  };
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    return bad(
      "a port mapping is {hostPort, containerPort, protocol, hostIP?}",
    );
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!["hostPort", "containerPort", "protocol", "hostIP"].includes(k)) {
      bad(`unknown field ${JSON.stringify(k)}`);
    }
  }
  const port = (k: string) => {
    const p = o[k];
    if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535) {
      bad(`${k} ${JSON.stringify(p)} is not a port 1-65535`);
    }
    return p as number;
  };
  const protocol = o.protocol ?? "tcp";
  if (protocol !== "tcp" && protocol !== "udp") {
    bad(`protocol ${JSON.stringify(protocol)}: tcp or udp`);
  }
  let hostIP: string | undefined;
  if (o.hostIP !== undefined) {
    try {
      if (typeof o.hostIP !== "string") throw new Error("not a string");
      parseIP(o.hostIP);
      hostIP = o.hostIP;
    } catch (e) {
      bad(`hostIP ${JSON.stringify(o.hostIP)}: ${(e as Error).message}`);
    }
  }
  return {
    hostPort: port("hostPort"),
    containerPort: port("containerPort"),
    protocol: protocol as "tcp" | "udp",
    ...(hostIP ? { hostIP } : {}),
  };
}

/** The bandwidth plugin's knob from `RATE[:BURST]` (both directions). */
export function parseCniBandwidth(
  op: string,
  object: string,
  where: string,
  text: string,
): CniBandwidth {
  const r = parseRate(op, object, where, text);
  if (!r) return {};
  return {
    ingressRate: r.bitsPerSecond,
    ingressBurst: r.burstBytes * 8,
    egressRate: r.bitsPerSecond,
    egressBurst: r.burstBytes * 8,
  };
}

/**
 * Checks what the library or the API gives (`portMappings`, `bandwidth`,
 * `dns` of an add spec); the args to record, or undefined for none.
 */
export function checkCapabilityArgs(
  op: string,
  object: string,
  v: { portMappings?: unknown; bandwidth?: unknown; dns?: unknown },
  where: (field: string) => string = (f) => f,
): CapabilityArgs | undefined {
  const out: CapabilityArgs = {};
  if (v.portMappings !== undefined) {
    if (!Array.isArray(v.portMappings)) {
      throw new InvalidInputError(
        op,
        object,
        `${where("portMappings")}: a list; ${PORT_HELP}`,
      );
    }
    if (v.portMappings.length > MAX_PORT_MAPPINGS) {
      throw new InvalidInputError(
        op,
        object,
        `${where("portMappings")}: at most ${MAX_PORT_MAPPINGS}`,
      );
    }
    const maps = v.portMappings.map((m, i) =>
      checkPortMapping(op, object, `${where("portMappings")}[${i}]`, m)
    );
    const seen = new Set<string>();
    for (const m of maps) {
      const key = `${m.hostIP ?? "*"}:${m.hostPort}/${m.protocol}`;
      if (seen.has(key)) {
        throw new InvalidInputError(
          op,
          object,
          `${where("portMappings")}: host port ${key} mapped twice`,
        );
      }
      seen.add(key);
    }
    if (maps.length) out.portMappings = maps;
  }
  if (v.bandwidth !== undefined) {
    const b = v.bandwidth as Record<string, unknown>;
    if (typeof b !== "object" || b === null || Array.isArray(b)) {
      throw new InvalidInputError(
        op,
        object,
        `${
          where("bandwidth")
        }: {ingressRate, ingressBurst, egressRate, egressBurst} in bits/s and bits`,
      );
    }
    const bw: CniBandwidth = {};
    for (const [k, val] of Object.entries(b)) {
      if (
        !["ingressRate", "ingressBurst", "egressRate", "egressBurst"].includes(
          k,
        )
      ) {
        throw new InvalidInputError(
          op,
          object,
          `${where("bandwidth")}.${k}: unknown field; allowed: ingressRate, ` +
            `ingressBurst, egressRate, egressBurst`,
        );
      }
      if (
        typeof val !== "number" || !Number.isInteger(val) || val < 1 ||
        val > Number.MAX_SAFE_INTEGER
      ) {
        throw new InvalidInputError(
          op,
          object,
          `${where("bandwidth")}.${k}: ${
            JSON.stringify(val)
          } is not a positive integer`,
        );
      }
      bw[k as keyof CniBandwidth] = val;
    }
    for (const dir of ["ingress", "egress"] as const) {
      if (
        (bw[`${dir}Rate`] === undefined) !==
          (bw[`${dir}Burst`] === undefined)
      ) {
        throw new InvalidInputError(
          op,
          object,
          `${where("bandwidth")}: ${dir}Rate and ${dir}Burst go together ` +
            `(the bandwidth plugin needs both)`,
        );
      }
    }
    if (Object.keys(bw).length) out.bandwidth = bw;
  }
  if (v.dns !== undefined) {
    const d = v.dns as Record<string, unknown>;
    if (typeof d !== "object" || d === null || Array.isArray(d)) {
      throw new InvalidInputError(
        op,
        object,
        `${where("dns")}: {servers, searches, options}`,
      );
    }
    const dns: CniDns = {};
    for (const [k, val] of Object.entries(d)) {
      if (!["servers", "searches", "options"].includes(k)) {
        throw new InvalidInputError(
          op,
          object,
          `${
            where("dns")
          }.${k}: unknown field; allowed: servers, searches, options`,
        );
      }
      if (!Array.isArray(val) || !val.every((x) => typeof x === "string")) {
        throw new InvalidInputError(
          op,
          object,
          `${where("dns")}.${k}: a list of strings`,
        );
      }
      if (k === "servers") {
        for (const s of val as string[]) {
          try {
            parseIP(s);
          } catch (e) {
            throw new InvalidInputError(
              op,
              object,
              `${where("dns")}.servers: ${JSON.stringify(s)}: ${
                (e as Error).message
              }`,
            );
          }
        }
      }
      if ((val as string[]).length) {
        dns[k as keyof CniDns] = [...(val as string[])];
      }
    }
    if (Object.keys(dns).length) out.dns = dns;
  }
  return Object.keys(out).length ? out : undefined;
}
