/**
 * `vmnic add <vm> …`: makes the VM have NICs 0..N-1 (or the NIC at
 * `--index`); NICs that exist are returned as they are.
 *
 * @module
 */
import type { AddSpec, VmConfig } from "../../provider/types.ts";
import {
  validateSpec,
  validateVmConfig,
  validateVmId,
} from "../../provider/validate.ts";
import { int, str, strs, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { nicTable } from "../output.ts";

export default defineCommand({
  name: "add",
  usage: "vmnic add <vm> [--nics N] [--network NAME] [--cpu N] [--queues N] " +
    "[--queue-size N]\n       vmnic add <vm> --index I [--network NAME] " +
    "[--queues N] [--mac MAC] [--ip CIDR]...",
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
  },
  details: [
    "A retried add is harmless: NICs that exist are returned unchanged, and",
    "one that contradicts the request (another network, MAC, IPs or queue",
    "count) is a conflict (exit 2). Several addresses need the chain's",
    '"ips" capability.',
  ].join("\n"),
  parse(p) {
    const op = "add";
    const vmId = p.positionals[0];
    validateVmId(op, vmId);
    const vmCfg: VmConfig = {
      cpu: int(p, "cpu", 1, 256),
      queueSize: int(p, "queue-size", 1, 32768),
      network: str(p, "network"),
    };
    for (const k of Object.keys(vmCfg) as (keyof VmConfig)[]) {
      if (vmCfg[k] === undefined) delete vmCfg[k];
    }
    validateVmConfig(op, vmId, vmCfg);
    const nics = int(p, "nics", 1, 32);
    const index = int(p, "index", 0, 31);
    const mac = str(p, "mac");
    const ips = strs(p, "ip");
    const queues = int(p, "queues", 1, 256);
    if (index !== undefined && nics !== undefined) {
      throw new UsageError("add: --index names one NIC; drop --nics", op);
    }
    if ((mac !== undefined || ips.length) && index === undefined) {
      throw new UsageError("add: --mac and --ip need --index", op);
    }
    const one = (spec: AddSpec): AddSpec => {
      for (const k of Object.keys(spec) as (keyof AddSpec)[]) {
        if (spec[k] === undefined) delete spec[k];
      }
      return spec;
    };
    const specs: AddSpec[] = index !== undefined
      ? [one({ index, mac, ips: ips.length ? ips : undefined, queues })]
      : Array.from({ length: nics ?? 1 }, () => one({ queues }));
    for (const spec of specs) validateSpec(op, vmId, spec);
    return { vmId, vmCfg, specs };
  },
  run: (i, { provider }) => provider.add(i.vmId, i.vmCfg, ...i.specs),
  human: (nics) => nicTable(nics),
});
