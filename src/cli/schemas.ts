/**
 * JSON Schemas (2020-12) of what the commands print with `--json` and the
 * API answers (docs/cli.md, docs/api.md), for the OpenAPI document and the
 * tests that hold output to it. Plain data: loading it costs nothing.
 *
 * @module
 */
import type { JsonSchema } from "./command.ts";

/** A string. */
export const str: JsonSchema = { type: "string" };
/** An integer. */
export const int: JsonSchema = { type: "integer" };
/** A boolean. */
export const bool: JsonSchema = { type: "boolean" };

/** An array of `items`. */
export function arr(items: JsonSchema): JsonSchema {
  return { type: "array", items };
}

/** An object: `required` names the properties always present. */
export function obj(
  properties: Record<string, JsonSchema>,
  required: string[] = Object.keys(properties),
): JsonSchema {
  return { type: "object", properties, required, additionalProperties: false };
}

/** A string of one of `values`. */
export function oneOf(...values: string[]): JsonSchema {
  return { type: "string", enum: values };
}

/** A VM id. */
export const vmId: JsonSchema = {
  type: "string",
  pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
};

/** A NIC's state (docs/state-machine.md). */
export const nicState = oneOf(
  "adding",
  "active",
  "quiesced",
  "deleting",
  "failed",
);

/** One IP of a NIC. */
export const ipConfig = obj({
  address: str,
  prefix: int,
  gateway: str,
  version: { type: "integer", enum: [4, 6] },
}, ["address", "prefix", "version"]);

/** A route of a NIC (the CNI result's, or a clone NIC's guest's). */
const routeConfig = obj({ dst: str, gw: str }, ["dst"]);

/** A clone NIC's guest identity (docs/clones.md). */
export const guestIdentity = obj({
  mac: str,
  ips: arr(ipConfig),
  routes: arr(routeConfig),
  cloneOf: str,
}, ["mac", "ips", "routes"]);

/** A rate limit of one direction, or null: unlimited. */
export const rateLimit: JsonSchema = {
  type: ["object", "null"],
  properties: { bitsPerSecond: int, burstBytes: int },
  required: ["bitsPerSecond", "burstBytes"],
  additionalProperties: false,
};

/** An egress rule as asked for. */
export const egressRule = obj({
  action: oneOf("allow", "deny"),
  cidr: str,
  protocol: oneOf("tcp", "udp", "icmp"),
  port: int,
}, ["action", "cidr"]);

/** A NIC's policy in effect (docs/policy.md). */
export const nicPolicy = obj({
  rateIn: rateLimit,
  rateOut: rateLimit,
  antiSpoofing: bool,
  egress: arr(obj({
    action: oneOf("allow", "deny"),
    cidr: str,
    protocol: oneOf("tcp", "udp", "icmp"),
    port: int,
    source: oneOf("call", "network", "default"),
  }, ["action", "cidr", "source"])),
  isolate: bool,
});

/** A policy as asked for (the call's fields, rates parsed). */
export const askedPolicy = obj({
  rate: rateLimit,
  rateIn: rateLimit,
  rateOut: rateLimit,
  antiSpoofing: bool,
  egress: arr(egressRule),
  isolate: bool,
}, []);

/** CNI capability args recorded with a NIC. */
export const capabilityArgs = obj({
  portMappings: arr(obj({
    hostPort: int,
    containerPort: int,
    protocol: oneOf("tcp", "udp"),
    hostIP: str,
  }, ["hostPort", "containerPort", "protocol"])),
  bandwidth: obj({
    ingressRate: int,
    ingressBurst: int,
    egressRate: int,
    egressBurst: int,
  }, []),
  dns: obj({ servers: arr(str), searches: arr(str), options: arr(str) }, []),
}, []);

/** `policy`'s result. */
export const policyResult = obj({
  vmId,
  index: int,
  changed: bool,
  actions: arr(str),
  asked: askedPolicy,
  policy: nicPolicy,
});

/** A NIC config: what `add`, `list`, `inspect` give. */
export const nicConfig = obj({
  id: str,
  vmId,
  index: int,
  ifName: str,
  tap: str,
  mac: str,
  network: str,
  netnsPath: str,
  numQueues: int,
  queueSize: int,
  mtu: int,
  ips: arr(ipConfig),
  routes: arr(routeConfig),
  dns: {
    type: "object",
    properties: {
      nameservers: arr(str),
      domain: str,
      search: arr(str),
      options: arr(str),
    },
  },
  policy: nicPolicy,
  capabilityArgs,
  state: nicState,
  error: str,
  guest: guestIdentity,
  createdAt: str,
}, [
  "id",
  "vmId",
  "index",
  "ifName",
  "tap",
  "network",
  "netnsPath",
  "numQueues",
  "queueSize",
  "ips",
  "routes",
  "dns",
  "state",
  "createdAt",
]);

/** A list of NIC configs. */
export const nicList = arr(nicConfig);

/** What `vms` lists. */
export const vmInfo = obj({
  vmId,
  netnsPath: str,
  netns: bool,
  network: str,
  quiesced: bool,
  deleting: bool,
  nics: arr(obj({ index: int, state: nicState })),
  createdAt: str,
}, ["vmId", "netnsPath", "netns", "quiesced", "deleting", "nics", "createdAt"]);

/** `remove`'s result. */
export const removeResult = obj({
  vmId,
  removed: arr(int),
  absent: arr(int),
  warnings: arr(str),
});

/** `delete`'s result. */
export const deleteResult = obj({
  deleted: arr(str),
  errors: arr(obj({ vmId: str, error: str })),
  warnings: arr(obj({ vmId: str, warning: str })),
});

/** `verify`'s result. */
export const verifyResult = obj({
  vmId,
  ok: bool,
  netnsPath: str,
  netns: bool,
  quiesced: bool,
  nics: arr(obj({
    index: int,
    tap: str,
    ifName: str,
    state: nicState,
    tapPresent: bool,
    vethPresent: bool,
    wired: bool,
    policy: oneOf("ok", "mismatch", "none"),
    macOk: bool,
    vethUp: bool,
    strayAddresses: arr(str),
    host: obj(
      { present: bool, name: str, master: str, bridge: str },
      ["present"],
    ),
    check: oneOf("ok", "failed", "skipped"),
    translation: obj({
      rules: bool,
      routes: bool,
      forwarding: bool,
      proxyArp: bool,
    }),
  }, [
    "index",
    "tap",
    "ifName",
    "state",
    "tapPresent",
    "vethPresent",
    "wired",
    "policy",
    "macOk",
    "vethUp",
    "strayAddresses",
    "host",
    "check",
  ])),
  problems: arr(str),
});

/** `recover`'s result. */
export const recoverResult = obj({
  vmId,
  nics: nicList,
  repaired: arr(obj({ index: int, actions: arr(str) })),
  rebuilt: arr(int),
  problems: arr(obj({ index: int, error: str })),
  warnings: arr(str),
});

/** `quiesce`'s and `unquiesce`'s result. */
export const quiesceResult = obj({
  vmId,
  state: oneOf("quiesced", "running"),
  nics: arr(str),
});

/** `guest-config`'s result. */
export const guestConfigResult = obj({
  vmId,
  format: str,
  files: arr(obj({ name: str, content: str })),
});

/** `hv-args`' result. */
export const hvArgsResult = obj({
  hypervisor: oneOf("qemu", "cloud-hypervisor", "firecracker"),
  vmId,
  netnsPath: str,
  launch: obj({ nsenter: arr(str), note: str }),
  args: arr(str),
  networkInterfaces: arr(
    obj({ iface_id: str, host_dev_name: str, guest_mac: str }),
  ),
  notes: arr(str),
}, ["hypervisor", "vmId", "netnsPath", "launch", "args", "notes"]);

/** `gc`'s result. */
export const gcResult = obj({
  dryRun: bool,
  module: str,
  candidates: arr(str),
  collected: arr(str),
  skipped: arr(obj({ id: str, reason: str })),
  errors: arr(obj({ id: str, error: str })),
  warnings: arr(obj({ id: str, warning: str })),
});

/** `networks`' result. */
export const networksResult = obj({
  networks: arr(obj({
    name: str,
    source: str,
    embedded: bool,
    isDefault: bool,
    cniVersion: str,
    plugins: arr(str),
    subnets: arr(str),
    gateways: arr(str),
    mtu: int,
    chain: arr(obj({ type: str, capabilities: arr(str), ipam: str }, [
      "type",
      "capabilities",
    ])),
    status: oneOf("ok", "not-ready", "skipped"),
    statusError: str,
  }, [
    "name",
    "source",
    "embedded",
    "isDefault",
    "cniVersion",
    "plugins",
    "subnets",
    "gateways",
    "chain",
  ])),
  errors: arr(obj({ source: str, error: str })),
});

/** `hooks`' result. */
export const hooksResult = arr(obj({
  name: str,
  kind: oneOf("ts", "exec"),
  path: str,
  events: arr(str),
  timeoutMs: int,
  idle: bool,
}, ["name", "kind", "events", "timeoutMs"]));

/** `prepare`'s result. */
export const prepareResult = obj({ vmId, netnsPath: str });

/** Every failure, on stderr or as an API error body. */
export const errorBody = obj({
  error: obj({
    type: str,
    message: str,
    op: str,
    object: str,
    reason: str,
    traceId: str,
  }, ["type", "message"]),
});

/** One phase of an event. */
export const phaseTiming = obj({
  name: str,
  ms: { type: "number" },
  count: int,
});

/** An event of the log (docs/events.md). */
export const eventRecord = obj({
  id: int,
  time: str,
  op: str,
  vmId: { type: ["string", "null"] },
  index: { type: ["integer", "null"] },
  outcome: oneOf("ok", "failed"),
  error: { type: ["string", "null"] },
  durationMs: { type: "number" },
  phases: arr(phaseTiming),
  traceId: str,
  traceparent: str,
});
