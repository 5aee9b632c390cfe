/**
 * `vmnic add <vm> …` / `POST /v1/vms/{vm}/nics`: makes the VM have NICs
 * 0..N-1 (or the NIC at `index`); NICs that exist are returned as they are.
 *
 * @module
 */
import type { AddSpec, GuestSpec, VmConfig } from "../../provider/types.ts";
import { InvalidInputError } from "../../provider/errors.ts";
import {
  validateSpec,
  validateVmConfig,
  validateVmId,
} from "../../provider/validate.ts";
import { int, str, strs, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import {
  bodyFields,
  intField,
  onlyQuery,
  strField,
  strsField,
} from "../http_input.ts";
import { nicTable } from "../output.ts";
import {
  CAPABILITY_OPTIONS,
  EXTRA_BODY_FIELDS,
  EXTRA_BODY_SCHEMAS,
  extrasFromBody,
  extrasFromFlags,
  extrasToBody,
  POLICY_OPTIONS,
  withExtras,
} from "../policy_flags.ts";
import { arr, int as intS, nicList, obj, str as strS } from "../schemas.ts";

/** What `add` is asked, from either front end. */
interface AddFields {
  nics?: number;
  index?: number;
  network?: string;
  cpu?: number;
  queues?: number;
  queueSize?: number;
  mac?: string;
  ips?: string[];
  cloneOf?: string;
  guestMac?: string;
  guestIp?: string;
  guestGateway?: string;
}

interface AddInput {
  vmId: string;
  vmCfg: VmConfig;
  specs: AddSpec[];
}

const BODY_FIELDS = [
  "nics",
  "index",
  "network",
  "cpu",
  "queues",
  "queueSize",
  "mac",
  "ips",
  "cloneOf",
  "guestMac",
  "guestIp",
  "guestGateway",
] as const;

/** The fields as the provider's arguments, with every rule checked. */
function toInput(
  vmId: string,
  f: AddFields,
  bad: (msg: string) => Error,
): AddInput {
  const op = "add";
  validateVmId(op, vmId);
  const vmCfg: VmConfig = {};
  if (f.cpu !== undefined) vmCfg.cpu = f.cpu;
  if (f.queueSize !== undefined) vmCfg.queueSize = f.queueSize;
  if (f.network !== undefined) vmCfg.network = f.network;
  if (f.cloneOf !== undefined) vmCfg.cloneOf = f.cloneOf;
  validateVmConfig(op, vmId, vmCfg);
  if (f.index !== undefined && f.nics !== undefined) {
    throw bad("index names one NIC: give nics or index, not both");
  }
  if ((f.mac !== undefined || f.ips?.length) && f.index === undefined) {
    throw bad("mac and ips need index");
  }
  const guest: GuestSpec = {};
  if (f.guestMac !== undefined) guest.mac = f.guestMac;
  if (f.guestIp !== undefined) guest.ip = f.guestIp;
  if (f.guestGateway !== undefined) guest.gateway = f.guestGateway;
  const guestGiven = Object.keys(guest).length > 0;
  if (guestGiven && f.index === undefined) {
    throw bad("guestMac, guestIp and guestGateway need index");
  }
  if (guestGiven && f.cloneOf === undefined) {
    const missing = [
      ...(guest.mac === undefined ? ["guestMac"] : []),
      ...(guest.ip === undefined ? ["guestIp"] : []),
    ];
    if (missing.length) {
      throw bad(
        `a clone NIC's guest identity needs ${
          missing.join(" and ")
        } (or cloneOf a VM to take it from)`,
      );
    }
  }
  const one = (spec: AddSpec): AddSpec => {
    for (const k of Object.keys(spec) as (keyof AddSpec)[]) {
      if (spec[k] === undefined) delete spec[k];
    }
    return spec;
  };
  const specs: AddSpec[] = f.index !== undefined
    ? [one({
      index: f.index,
      mac: f.mac,
      ips: f.ips?.length ? f.ips : undefined,
      queues: f.queues,
      guest: guestGiven ? guest : undefined,
    })]
    : f.cloneOf !== undefined && f.nics === undefined
    // A clone without --nics: every NIC of the VM it was cloned from.
    ? []
    : Array.from({ length: f.nics ?? 1 }, () => one({ queues: f.queues }));
  for (const spec of specs) validateSpec(op, vmId, spec);
  return { vmId, vmCfg, specs };
}

export default defineCommand({
  name: "add",
  usage: "vmnic add <vm> [--nics N] [--network NAME] [--cpu N] [--queues N] " +
    "[--queue-size N]\n       vmnic add <vm> --index I [--network NAME] " +
    "[--queues N] [--mac MAC] [--ip CIDR]... [policy flags]\n" +
    "       vmnic add <clone> --clone-of <vm> [--nics N | --index I] …\n" +
    "       vmnic add <clone> --index I --guest-mac MAC --guest-ip CIDR " +
    "[--guest-gateway IP] …",
  positionals: [1, 1],
  options: {
    nics: {
      type: "string",
      value: "N",
      help: "the VM has NICs 0..N-1 afterwards (default 1)",
    },
    index: {
      type: "string",
      value: "I",
      help: "the VM has NIC I afterwards (hot-add), 0-31",
    },
    network: {
      type: "string",
      value: "NAME",
      help: "network (conflist name); default: the VM's, else the default",
    },
    cpu: {
      type: "string",
      value: "N",
      help: "vCPUs: one TAP queue pair per vCPU (default 1)",
    },
    queues: {
      type: "string",
      value: "N",
      help: "queue pairs per TAP, overriding --cpu",
    },
    "queue-size": {
      type: "string",
      value: "N",
      help: "virtio queue size to record (default 256)",
    },
    mac: {
      type: "string",
      value: "MAC",
      help: "give the NIC this MAC (with --index)",
    },
    ip: {
      type: "string",
      multiple: true,
      value: "CIDR",
      help: "ask IPAM for this address (repeatable, with --index)",
    },
    ...POLICY_OPTIONS,
    ...CAPABILITY_OPTIONS,
    "clone-of": {
      type: "string",
      value: "VM",
      help: "a clone of VM (restored from its snapshot): each NIC's guest " +
        "keeps VM's NIC's MAC, IP and gateway; the network sees the " +
        "clone's own address",
    },
    "guest-mac": {
      type: "string",
      value: "MAC",
      help: "the clone NIC's guest MAC (with --index)",
    },
    "guest-ip": {
      type: "string",
      value: "CIDR",
      help: "the clone NIC's guest IPv4 address/prefix (with --index)",
    },
    "guest-gateway": {
      type: "string",
      value: "IP",
      help: "the clone NIC's guest gateway (with --index)",
    },
  },
  details: [
    "A retried add is harmless: NICs that exist are returned unchanged, and",
    "one that contradicts the request (another network, MAC, IPs or queue",
    "count) is a conflict (exit 2). Several addresses need the chain's",
    '"ips" capability.',
    "",
    "A clone NIC (--clone-of, or --guest-*) gets its own netns, CNI",
    "attachment and IP; its TAP presents the guest identity, and the VM's",
    "netns translates between the two with nftables (docs/clones.md).",
    "--clone-of an unknown VM is not found (exit 3); a --guest-* value",
    "that contradicts it is a conflict (exit 2).",
  ].join("\n"),
  parse(p) {
    const ips = strs(p, "ip");
    const usage = (msg: string) => new UsageError(`add: ${msg}`, "add");
    const extras = extrasFromFlags("add", p.positionals[0], p);
    return withExtras(
      toInput(
        p.positionals[0],
        {
          nics: int(p, "nics", 1, 32),
          index: int(p, "index", 0, 31),
          network: str(p, "network"),
          cpu: int(p, "cpu", 1, 256),
          queues: int(p, "queues", 1, 256),
          queueSize: int(p, "queue-size", 1, 32768),
          mac: str(p, "mac"),
          ips: ips.length ? ips : undefined,
          cloneOf: str(p, "clone-of"),
          guestMac: str(p, "guest-mac"),
          guestIp: str(p, "guest-ip"),
          guestGateway: str(p, "guest-gateway"),
        },
        (msg) =>
          new UsageError(
            `add: ${
              msg.replace(/\b(nics|index|mac|ips)\b/g, "--$1")
                .replace(/\bcloneOf\b/g, "--clone-of")
                .replace(
                  /\bguest(Mac|Ip|Gateway)\b/g,
                  (_, w: string) => `--guest-${w.toLowerCase()}`,
                )
            }`,
            "add",
          ),
      ),
      extras,
      usage,
    );
  },
  run: (i, { provider }) => provider.add(i.vmId, i.vmCfg, ...i.specs),
  human: (nics) => nicTable(nics),
  http: {
    method: "POST",
    path: "/v1/vms/{vm}/nics",
    body: obj({
      nics: intS,
      index: intS,
      network: strS,
      cpu: intS,
      queues: intS,
      queueSize: intS,
      mac: strS,
      ips: arr(strS),
      ...EXTRA_BODY_SCHEMAS,
      cloneOf: strS,
      guestMac: strS,
      guestIp: strS,
      guestGateway: strS,
    }, []),
    response: nicList,
    input({ params, query, body }) {
      const op = "add";
      onlyQuery(op, params.vm, query, []);
      const f = bodyFields(op, params.vm, body, [
        ...BODY_FIELDS,
        ...EXTRA_BODY_FIELDS,
      ]);
      const bad = (msg: string) => new InvalidInputError(op, params.vm, msg);
      return withExtras(
        toInput(params.vm, {
          nics: intField(op, params.vm, f, "nics", 1, 32),
          index: intField(op, params.vm, f, "index", 0, 31),
          network: strField(op, params.vm, f, "network"),
          cpu: intField(op, params.vm, f, "cpu", 1, 256),
          queues: intField(op, params.vm, f, "queues", 1, 256),
          queueSize: intField(op, params.vm, f, "queueSize", 1, 32768),
          mac: strField(op, params.vm, f, "mac"),
          ips: strsField(op, params.vm, f, "ips"),
          cloneOf: strField(op, params.vm, f, "cloneOf"),
          guestMac: strField(op, params.vm, f, "guestMac"),
          guestIp: strField(op, params.vm, f, "guestIp"),
          guestGateway: strField(op, params.vm, f, "guestGateway"),
        }, bad),
        extrasFromBody(op, params.vm, f),
        bad,
      );
    },
    request(i) {
      const body: AddFields = {};
      if (i.vmCfg.cpu !== undefined) body.cpu = i.vmCfg.cpu;
      if (i.vmCfg.queueSize !== undefined) body.queueSize = i.vmCfg.queueSize;
      if (i.vmCfg.network !== undefined) body.network = i.vmCfg.network;
      if (i.vmCfg.cloneOf !== undefined) body.cloneOf = i.vmCfg.cloneOf;
      const [first] = i.specs;
      // A clone without specs takes every NIC of its source: no nics.
      if (!first) return { params: { vm: i.vmId }, query: {}, body };
      if (first.index !== undefined) {
        body.index = first.index;
        if (first.mac !== undefined) body.mac = first.mac;
        if (first.ips !== undefined) body.ips = [...first.ips];
        if (first.guest?.mac !== undefined) body.guestMac = first.guest.mac;
        if (first.guest?.ip !== undefined) body.guestIp = first.guest.ip;
        if (first.guest?.gateway !== undefined) {
          body.guestGateway = first.guest.gateway;
        }
      } else body.nics = i.specs.length;
      if (first.queues !== undefined) body.queues = first.queues;
      Object.assign(body, extrasToBody(first));
      return { params: { vm: i.vmId }, query: {}, body };
    },
  },
});
