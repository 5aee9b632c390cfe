/**
 * Clone NICs (docs/clones.md): a VM restored from another's snapshot keeps
 * that VM's guest identity (MAC, IP, gateway) on its TAP while the network
 * sees it at its own CNI address. This module resolves the identity an add
 * asks for (`cloneOf`, or given per NIC), before anything changes, and
 * turns a record into what the routed data path needs.
 *
 * @module
 */
import type { CniResult } from "../cni/result.ts";
import type {
  GuestRecord,
  IpRecord,
  NicRecord,
  VmRecord,
} from "../store/types.ts";
import type { ClonePathSpec } from "../wiring/clone_path.ts";
import type { ProviderContext } from "./context.ts";
import {
  ConflictError,
  InvalidInputError,
  NotFoundError,
  OperationError,
} from "./errors.ts";
import { isSlot } from "./pool.ts";
import type {
  AddSpec,
  GuestIdentity,
  GuestSpec,
  IpConfig,
  NicConfig,
  RouteConfig,
} from "./types.ts";
import { normalizeMac, parseIpArg } from "./validate.ts";

/** The VM a clone is made from: its record and its NICs by index. */
export interface CloneSource {
  /** Its id. */
  vmId: string;
  /** Its record. */
  vm: VmRecord;
  /** Its NICs, by index. */
  nics: Map<number, NicRecord>;
}

/**
 * The VM `cloneOf` names, with its NICs. Throws
 * {@linkcode NotFoundError} when this install has no such VM (or it has no
 * NIC), before anything changes.
 */
export function cloneSource(
  ctx: ProviderContext,
  op: string,
  vmId: string,
  cloneOf: string,
): CloneSource {
  const vm = ctx.store.getVm(cloneOf);
  if (!vm || isSlot(vm) || vm.deleting) {
    throw new NotFoundError(
      op,
      vmId,
      `--clone-of ${cloneOf}: no VM ${cloneOf} in the records ` +
        `(\`vmnic vms\` lists the VMs a clone can be made of)`,
    );
  }
  const nics = new Map(
    ctx.store.listNics({ vmId: cloneOf }).map((n) => [n.index, n]),
  );
  if (!nics.size) {
    throw new NotFoundError(
      op,
      vmId,
      `--clone-of ${cloneOf}: VM ${cloneOf} has no NICs to take the ` +
        `identity of`,
    );
  }
  return { vmId: cloneOf, vm, nics };
}

/** The specs of a clone add without specs: one per NIC of the source. */
export function sourceSpecs(src: CloneSource): AddSpec[] {
  return [...src.nics.keys()].sort((a, b) => a - b).map((index) => ({
    index,
  }));
}

/**
 * The guest identity of NIC `index` of a clone: the source NIC's (its
 * guest's, when it is a clone itself), with what the spec gives checked
 * against it; or the spec's alone without a source. Null for a NIC that
 * is no clone. Throws before anything changes: {@linkcode NotFoundError}
 * for a source without that NIC, {@linkcode ConflictError} for a given
 * field that contradicts the source, `InvalidInputError` for an identity
 * that is incomplete or cannot be translated (IPv6).
 */
export function resolveGuest(
  op: string,
  vmId: string,
  index: number,
  spec: AddSpec,
  src: CloneSource | null,
): GuestRecord | null {
  const object = `${vmId}/${index}`;
  const given = spec.guest;
  if (!src) {
    return given === undefined ? null : explicitGuest(op, object, given);
  }
  const nic = src.nics.get(index);
  if (!nic) {
    throw new NotFoundError(
      op,
      object,
      `--clone-of ${src.vmId}: VM ${src.vmId} has no NIC ${index} (it has ` +
        `${[...src.nics.keys()].sort((a, b) => a - b).join(", ")})`,
    );
  }
  const from = guestOfSource(op, object, nic);
  if (given) checkAgainstSource(op, object, given, from, src.vmId);
  return { ...from, cloneOf: src.vmId };
}

/** The identity the source NIC's guest has. */
function guestOfSource(
  op: string,
  object: string,
  nic: NicRecord,
): GuestRecord {
  if (nic.guest) {
    const { cloneOf: _, ...rest } = nic.guest;
    return rest;
  }
  const where = `NIC ${nic.index} of VM ${nic.vmId}`;
  if (nic.state !== "active" && nic.state !== "quiesced") {
    throw new ConflictError(
      op,
      object,
      `${where} is ${nic.state}: only a live NIC's identity can be cloned`,
    );
  }
  const v6 = nic.ips.filter((ip) => ip.version === 6);
  const v4 = nic.ips.filter((ip) => ip.version === 4);
  if (v6.length || v4.length !== 1) {
    throw new ConflictError(
      op,
      object,
      `${where} has ${
        nic.ips.map((ip) => ip.address).join(", ") || "no IP"
      }: clone NICs translate exactly one IPv4 address`,
    );
  }
  return {
    mac: nic.mac,
    ips: v4.map((ip) => ({ ...ip })),
    routes: routesOf(nic).filter((r) => !r.dst.includes(":")),
  };
}

function explicitGuest(
  op: string,
  object: string,
  g: GuestSpec,
): GuestRecord {
  const missing = [
    ...(g.mac === undefined ? ["--guest-mac"] : []),
    ...(g.ip === undefined ? ["--guest-ip"] : []),
  ];
  if (missing.length) {
    throw new InvalidInputError(
      op,
      object,
      `a clone NIC's guest identity needs ${missing.join(" and ")} ` +
        `(or --clone-of a VM to take it from)`,
    );
  }
  const ip = parseIpArg(op, object, g.ip!);
  const ipRec: IpRecord = {
    address: ip.address,
    prefix: ip.prefix!,
    ...(g.gateway ? { gateway: g.gateway } : {}),
    version: 4,
  };
  return {
    mac: normalizeMac(op, object, g.mac!),
    ips: [ipRec],
    routes: g.gateway ? [{ dst: "0.0.0.0/0", gw: g.gateway }] : [],
  };
}

function checkAgainstSource(
  op: string,
  object: string,
  g: GuestSpec,
  from: GuestRecord,
  srcVm: string,
): void {
  const clash = (what: string, want: string, got: string) => {
    throw new ConflictError(
      op,
      object,
      `--guest-${what} ${want} contradicts --clone-of ${srcVm}, whose ` +
        `guest has ${got}: give one or the other, or the same`,
    );
  };
  const [ip] = from.ips;
  if (g.mac !== undefined && normalizeMac(op, object, g.mac) !== from.mac) {
    clash("mac", g.mac, from.mac);
  }
  if (g.ip !== undefined) {
    const p = parseIpArg(op, object, g.ip);
    if (p.address !== ip.address || p.prefix !== ip.prefix) {
      clash("ip", g.ip, `${ip.address}/${ip.prefix}`);
    }
  }
  if (g.gateway !== undefined && g.gateway !== ip.gateway) {
    clash("gateway", g.gateway, ip.gateway ?? "no gateway");
  }
}

/**
 * A retried add of an existing NIC: the guest identity it asks for must be
 * the one recorded (a clone NIC stays one, a plain NIC never becomes one).
 */
export function checkSameGuest(
  op: string,
  object: string,
  have: NicRecord,
  want: GuestRecord | null,
): void {
  if (want === null) return;
  const got = have.guest ?? null;
  if (!got) {
    throw new ConflictError(
      op,
      object,
      `NIC ${have.index} exists as a plain NIC (its guest uses MAC ` +
        `${have.mac || "none yet"}), not as a clone NIC: remove it first ` +
        `to add it anew`,
    );
  }
  const key = (g: GuestRecord) =>
    JSON.stringify([
      g.mac,
      g.ips.map((ip) => [ip.address, ip.prefix, ip.gateway]),
    ]);
  if (key(got) !== key(want)) {
    throw new ConflictError(
      op,
      object,
      `NIC ${have.index} exists with guest identity ${describe(got)}, not ` +
        `${describe(want)}: remove it first to add it anew`,
    );
  }
}

function describe(g: GuestRecord): string {
  const [ip] = g.ips;
  return `${g.mac} ${ip ? `${ip.address}/${ip.prefix}` : "no IP"}` +
    (ip?.gateway ? ` via ${ip.gateway}` : "");
}

/** The routes a record's CNI result gives its interface (as `toNicConfig`). */
function routesOf(rec: NicRecord): { dst: string; gw?: string }[] {
  const result = rec.cniResult as CniResult | null;
  return (result?.routes ?? []).map((r) => ({
    dst: r.dst,
    ...(r.gw ? { gw: r.gw } : {}),
  }));
}

/**
 * What the routed path of a clone NIC joins, from its record (after CNI
 * ADD). Throws {@linkcode OperationError} when the network gave it no IPv4
 * address, or the guest's own.
 */
export function clonePathSpec(
  rec: NicRecord,
  opts: { down?: boolean; op?: string } = {},
): ClonePathSpec {
  const op = opts.op ?? "add";
  const object = `${rec.vmId}/${rec.index}`;
  const guest = rec.guest?.ips.find((ip) => ip.version === 4);
  if (!guest) {
    throw new OperationError(op, object, "the clone NIC has no guest IPv4");
  }
  const net = rec.ips.find((ip) => ip.version === 4);
  if (!net) {
    throw new OperationError(
      op,
      object,
      `network ${rec.network} gave the clone NIC no IPv4 address to ` +
        `translate ${guest.address} to`,
    );
  }
  if (net.address === guest.address) {
    throw new OperationError(
      op,
      object,
      `network ${rec.network} gave the clone NIC ${net.address}, its ` +
        `guest's own address: nothing to translate (the VM it was cloned ` +
        `from let it go); add it as a plain NIC instead`,
    );
  }
  return {
    veth: rec.ifName,
    tap: rec.tap,
    index: rec.index,
    queues: rec.numQueues,
    ...(rec.mac ? { mac: rec.mac } : {}),
    guest: { address: guest.address, prefix: guest.prefix },
    net: { address: net.address, prefix: net.prefix },
    routes: routesOf(rec)
      .filter((r) => !r.dst.includes(":"))
      .map((r) => ({
        dst: r.dst,
        ...(r.gw ?? net.gateway ? { gw: r.gw ?? net.gateway } : {}),
      })),
    ...(opts.down ? { down: true } : {}),
  };
}

/** A record's guest identity as the public NIC config shows it. */
export function toGuestIdentity(g: GuestRecord): GuestIdentity {
  return {
    mac: g.mac,
    ips: g.ips as IpConfig[],
    routes: g.routes as RouteConfig[],
    ...(g.cloneOf ? { cloneOf: g.cloneOf } : {}),
  };
}

/**
 * The NIC as its guest sees it: a clone NIC's guest identity in place of
 * the network's MAC, IPs and routes (what `hv-args` and `guest-config`
 * hand the guest). A plain NIC is returned as it is.
 */
export function guestView(nic: NicConfig): NicConfig {
  if (!nic.guest) return nic;
  return {
    ...nic,
    mac: nic.guest.mac,
    ips: nic.guest.ips,
    routes: nic.guest.routes,
  };
}
