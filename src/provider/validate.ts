/**
 * Input rules (docs/cli.md, "Input"): checked before anything is touched,
 * each failure an {@linkcode InvalidInputError} saying what, where and what
 * is allowed.
 *
 * @module
 */
import { InvalidInputError } from "./errors.ts";
import { parseIP } from "../wiring/errors.ts";
import type { AddSpec, VmConfig } from "./types.ts";

/** VM ids: nothing that could escape the netns dir or a lock file name. */
export const VM_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
/** NIC indices are 0–31 (`eth31`/`tap31`). */
export const MAX_NIC_INDEX = 31;
/** Upper bound of TAP queue pairs (the kernel allows 256 per TAP). */
export const MAX_QUEUES = 256;

/** Whether `vmId` is a valid VM id (the rule {@linkcode validateVmId} enforces). */
export function isVmId(vmId: unknown): vmId is string {
  return typeof vmId === "string" && VM_ID_PATTERN.test(vmId) &&
    !vmId.includes("..");
}

/** Throws unless `vmId` is a valid VM id. */
export function validateVmId(
  op: string,
  vmId: unknown,
): asserts vmId is string {
  if (
    !isVmId(vmId)
  ) {
    throw new InvalidInputError(
      op,
      String(vmId),
      `invalid VM id ${JSON.stringify(vmId)}: use 1–63 characters ` +
        `[A-Za-z0-9_.-], starting with a letter or digit, without ".."`,
    );
  }
}

/** Throws unless `index` is an integer 0–31. */
export function validateIndex(
  op: string,
  vmId: string,
  index: unknown,
): asserts index is number {
  if (
    typeof index !== "number" || !Number.isInteger(index) || index < 0 ||
    index > MAX_NIC_INDEX
  ) {
    throw new InvalidInputError(
      op,
      `${vmId}/${index}`,
      `invalid NIC index ${JSON.stringify(index)}: allowed 0–${MAX_NIC_INDEX}`,
    );
  }
}

/** Normalises a unicast MAC to lower case, or throws. */
export function normalizeMac(op: string, vmId: string, mac: string): string {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) {
    throw new InvalidInputError(
      op,
      vmId,
      `invalid MAC ${
        JSON.stringify(mac)
      }: expected six hex pairs like 0a:58:0a:4d:00:05`,
    );
  }
  const first = parseInt(mac.slice(0, 2), 16);
  if (first & 1) {
    throw new InvalidInputError(
      op,
      vmId,
      `MAC ${mac} is multicast: a NIC needs a unicast MAC (even first octet)`,
    );
  }
  if (/^(00:){5}00$/.test(mac)) {
    throw new InvalidInputError(
      op,
      vmId,
      `MAC ${mac} is all zeros`,
    );
  }
  return mac.toLowerCase();
}

/** Parses `10.0.0.5`, `10.0.0.5/24`, `fd00::5/64`; throws on anything else. */
export function parseIpArg(
  op: string,
  vmId: string,
  ip: string,
): { address: string; prefix?: number; version: 4 | 6 } {
  const [address, prefixText, ...rest] = ip.split("/");
  const version = ipVersion(address);
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? undefined : Number(prefixText);
  if (
    version === 0 || rest.length > 0 ||
    (prefix !== undefined && (!/^\d{1,3}$/.test(prefixText) || prefix > max))
  ) {
    throw new InvalidInputError(
      op,
      vmId,
      `invalid IP ${
        JSON.stringify(ip)
      }: expected an IPv4 or IPv6 address, optionally with /prefix`,
    );
  }
  return { address, prefix, version: version as 4 | 6 };
}

/** Largest virtio queue size (the virtio spec's limit for split rings). */
const MAX_QUEUE_SIZE = 32768;

/** Checks a VM config: positive integers where numbers are given. */
export function validateVmConfig(
  op: string,
  vmId: string,
  cfg: VmConfig,
): void {
  positiveInt(op, vmId, "cpu", cfg.cpu, MAX_QUEUES);
  positiveInt(op, vmId, "queueSize", cfg.queueSize, MAX_QUEUE_SIZE);
  // virtio split rings are power-of-two sized; hypervisors refuse the rest.
  if (
    cfg.queueSize !== undefined && (cfg.queueSize & (cfg.queueSize - 1)) !== 0
  ) {
    throw new InvalidInputError(
      op,
      vmId,
      `invalid queueSize ${cfg.queueSize}: allowed a power of two, 1–${MAX_QUEUE_SIZE}`,
    );
  }
  if (cfg.network !== undefined) validateNetworkName(op, vmId, cfg.network);
}

/** Checks one add spec (index, queues, MAC, IPs, network). */
export function validateSpec(op: string, vmId: string, spec: AddSpec): void {
  if (typeof spec !== "object" || spec === null) {
    throw new InvalidInputError(op, vmId, "a NIC spec must be an object");
  }
  if (spec.index !== undefined) validateIndex(op, vmId, spec.index);
  positiveInt(op, vmId, "queues", spec.queues, MAX_QUEUES);
  if (spec.mac !== undefined) normalizeMac(op, vmId, spec.mac);
  if (spec.ips !== undefined && !Array.isArray(spec.ips)) {
    throw new InvalidInputError(op, vmId, "ips must be a list of addresses");
  }
  const seen = new Set<string>();
  for (const ip of spec.ips ?? []) {
    const { address } = parseIpArg(op, vmId, ip);
    if (seen.has(address)) {
      throw new InvalidInputError(op, vmId, `IP ${address} given twice`);
    }
    seen.add(address);
  }
  if (spec.network !== undefined) validateNetworkName(op, vmId, spec.network);
}

/**
 * The NIC index each spec stands for: its own, or its position among the
 * specs. Two specs for one index are refused.
 */
export function specIndices(
  op: string,
  vmId: string,
  specs: readonly AddSpec[],
): number[] {
  const out = specs.map((s, i) => s.index ?? i);
  const seen = new Set<number>();
  for (const i of out) {
    validateIndex(op, vmId, i);
    if (seen.has(i)) {
      throw new InvalidInputError(op, vmId, `NIC index ${i} given twice`);
    }
    seen.add(i);
  }
  return out;
}

/** Throws unless `name` can be a network (conflist) name. */
export function validateNetworkName(
  op: string,
  vmId: string,
  name: unknown,
): void {
  if (
    typeof name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name)
  ) {
    throw new InvalidInputError(
      op,
      vmId,
      `invalid network name ${
        JSON.stringify(name)
      }: use 1–128 of [A-Za-z0-9_.-], starting with a letter or digit`,
    );
  }
}

function positiveInt(
  op: string,
  vmId: string,
  what: string,
  v: unknown,
  max: number,
): void {
  if (v === undefined) return;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max) {
    throw new InvalidInputError(
      op,
      vmId,
      `invalid ${what} ${JSON.stringify(v)}: allowed 1–${max}`,
    );
  }
}

/** 4 or 6 for a valid IPv4 or IPv6 address (the kernel layer's parser), else 0. */
function ipVersion(address: string): 0 | 4 | 6 {
  try {
    return parseIP(address).family;
  } catch {
    return 0;
  }
}
