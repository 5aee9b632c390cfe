/**
 * Input rules (docs/cli.md, "Input"): checked before anything is touched,
 * each failure an {@linkcode InvalidInputError} saying what, where and what
 * is allowed.
 *
 * @module
 */
import { InvalidInputError } from "./errors.ts";
import { parseIP } from "../wiring/errors.ts";
import type { AddSpec, GuestSpec, VmConfig } from "./types.ts";

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
  if (cfg.cloneOf !== undefined) {
    validateVmId(op, cfg.cloneOf);
    if (cfg.cloneOf === vmId) {
      throw new InvalidInputError(
        op,
        vmId,
        "a VM cannot be a clone of itself: cloneOf names the VM whose " +
          "snapshot this one was restored from",
      );
    }
  }
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
  if (spec.guest !== undefined) validateGuestSpec(op, vmId, spec.guest);
}

/**
 * Checks a clone NIC's explicit guest identity: a unicast MAC, an IPv4
 * address with its prefix, a gateway inside that subnet (not the address
 * itself). Which fields must be there depends on `cloneOf`: the provider
 * says.
 */
export function validateGuestSpec(
  op: string,
  vmId: string,
  guest: GuestSpec,
): void {
  if (typeof guest !== "object" || guest === null) {
    throw new InvalidInputError(op, vmId, "guest must be an object");
  }
  for (const k of Object.keys(guest)) {
    if (!GUEST_FIELDS.includes(k)) {
      throw new InvalidInputError(
        op,
        vmId,
        `unknown guest field ${JSON.stringify(k)}: allowed ${
          GUEST_FIELDS.join(", ")
        }`,
      );
    }
  }
  if (guest.mac !== undefined) {
    if (typeof guest.mac !== "string") {
      throw new InvalidInputError(op, vmId, "guest mac must be a string");
    }
    normalizeMac(op, vmId, guest.mac);
  }
  const ip = guest.ip === undefined
    ? undefined
    : guestIpv4(op, vmId, "ip", guest.ip);
  if (ip && ip.prefix === undefined) {
    throw new InvalidInputError(
      op,
      vmId,
      `guest IP ${guest.ip} has no prefix: give it as the guest has it, ` +
        `e.g. ${guest.ip}/24`,
    );
  }
  if (guest.gateway === undefined) return;
  const gw = guestIpv4(op, vmId, "gateway", guest.gateway);
  if (gw.prefix !== undefined) {
    throw new InvalidInputError(
      op,
      vmId,
      `guest gateway ${guest.gateway}: an address, without a prefix`,
    );
  }
  if (!ip) return;
  if (gw.address === ip.address) {
    throw new InvalidInputError(
      op,
      vmId,
      `guest gateway ${gw.address} is the guest's own address`,
    );
  }
  if (!sameSubnet(ip.address, gw.address, ip.prefix!)) {
    throw new InvalidInputError(
      op,
      vmId,
      `guest gateway ${gw.address} is outside the guest's subnet ` +
        `(${guest.ip}): a gateway must be on-link`,
    );
  }
}

/** The fields of a {@linkcode GuestSpec}. */
const GUEST_FIELDS = ["mac", "ip", "gateway"];

function guestIpv4(
  op: string,
  vmId: string,
  what: string,
  text: unknown,
): { address: string; prefix?: number } {
  if (typeof text !== "string") {
    throw new InvalidInputError(op, vmId, `guest ${what} must be a string`);
  }
  const ip = parseIpArg(op, vmId, text);
  if (ip.version !== 4) {
    throw new InvalidInputError(
      op,
      vmId,
      `guest ${what} ${text} is IPv6: clone NICs translate IPv4 only`,
    );
  }
  return ip;
}

/** Whether two IPv4 addresses share the first `prefix` bits. */
export function sameSubnet(a: string, b: string, prefix: number): boolean {
  const bits = (x: string) =>
    x.split(".").reduce((n, o) => (n << 8 | Number(o)) >>> 0, 0);
  const mask = prefix === 0 ? 0 : (~0 << (IPV4_BITS - prefix)) >>> 0;
  return ((bits(a) & mask) >>> 0) === ((bits(b) & mask) >>> 0);
}

/** Bits in an IPv4 address. */
const IPV4_BITS = 32;

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
