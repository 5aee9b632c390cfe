/**
 * Mapping between what the provider handles: a spec's recovery request as
 * CNI args, a CNI result as the NIC's IPs, a stored record as the public NIC
 * config (docs/cli.md's JSON) and as a hook context.
 *
 * @module
 */
import { type NetworkConfigList, parseConfList } from "../cni/config.ts";
import type { CniResult } from "../cni/result.ts";
import type { HookInput } from "../hooks/types.ts";
import type { NicRecord, VmRecord } from "../store/types.ts";
import { InvalidInputError } from "./errors.ts";
import { policyFields } from "./nic_policy.ts";
import type {
  DnsConfig,
  IpConfig,
  NicConfig,
  RouteConfig,
  VmInfo,
} from "./types.ts";
import { parseIpArg } from "./validate.ts";
import { toGuestIdentity } from "./clone.ts";

/** What a NIC asks of IPAM and the plugins besides the defaults. */
export interface NicRequest {
  /** A MAC to keep (recovery). */
  mac?: string;
  /** Addresses to have again (`10.0.0.5/24`), recovery. */
  ips?: string[];
}

/**
 * CNI capability args or CNI_ARGS asking IPAM for the same IPs (recovery),
 * in the one way the chain accepts them: the `ips` capability where a
 * plugin declares it, else `CNI_ARGS IP=` for a single address. More
 * addresses without the capability cannot be asked for: that is refused
 * before anything changes.
 */
export function ipRequest(
  list: NetworkConfigList,
  req: NicRequest,
  op: string,
  object: string,
): { args?: [string, string][]; capabilityArgs?: Record<string, unknown> } {
  const caps: Record<string, unknown> = {};
  const declares = (cap: string) =>
    list.plugins.some((p) => p.capabilities[cap]);
  if (req.mac && declares("mac")) caps.mac = req.mac.toLowerCase();
  const withCaps = () =>
    Object.keys(caps).length ? { capabilityArgs: caps } : {};
  if (!req.ips?.length) return withCaps();
  if (declares("ips")) {
    caps.ips = req.ips;
    return withCaps();
  }
  if (req.ips.length > 1) {
    throw new InvalidInputError(
      op,
      object,
      `network ${list.name} cannot be asked for ${req.ips.length} addresses ` +
        `(${req.ips.join(", ")}): without the "ips" capability only one ` +
        `goes through CNI_ARGS IP=. Declare "capabilities": {"ips": true} ` +
        `in network ${list.name}'s conflist, on the plugin that hands its ` +
        `config to IPAM (e.g. bridge or ptp)`,
    );
  }
  const bare = parseIpArg(op, object, req.ips[0]).address;
  return { args: [["IgnoreUnknown", "1"], ["IP", bare]], ...withCaps() };
}

/** The IPs of the VM's interface in a CNI result. */
export function ipsOf(
  result: CniResult,
  ifName: string,
  netns: string,
): IpConfig[] {
  const ifaceIdx = result.interfaces.findIndex((i) =>
    i.name === ifName && (!i.sandbox || i.sandbox === netns)
  );
  return result.ips
    .filter((ip) =>
      ip.interface === undefined || ifaceIdx < 0 || ip.interface === ifaceIdx
    )
    .map((ip) => {
      const [address, prefix] = ip.address.split("/");
      return {
        address,
        prefix: Number(prefix),
        ...(ip.gateway ? { gateway: ip.gateway } : {}),
        version: address.includes(":") ? 6 : 4,
      } as IpConfig;
    });
}

/**
 * The host veth a CNI result names: an interface outside any sandbox that
 * is not the bridge.
 */
export function hostVethOf(
  result: unknown,
  bridge?: string,
): string | undefined {
  const r = result as CniResult | null;
  return r?.interfaces?.find((i) => !i.sandbox && i.name && i.name !== bridge)
    ?.name;
}

/** The bridge a NIC's chain puts its host veth on, when it is the bridge plugin's. */
export function bridgeOf(rec: NicRecord): string | undefined {
  try {
    const list = parseConfList(rec.cniConfig, "record");
    const br = list.plugins.find((p) => p.type === "bridge");
    if (!br) return undefined;
    return typeof br.conf.bridge === "string" ? br.conf.bridge : "cni0";
  } catch {
    return undefined;
  }
}

/** A record as the public NIC config (docs/cli.md's JSON). */
export function toNicConfig(rec: NicRecord): NicConfig {
  const result = rec.cniResult as CniResult | null;
  return {
    id: rec.id,
    vmId: rec.vmId,
    index: rec.index,
    ifName: rec.ifName,
    tap: rec.tap,
    ...(rec.mac ? { mac: rec.mac } : {}),
    network: rec.network,
    netnsPath: rec.netnsPath,
    numQueues: rec.numQueues,
    queueSize: rec.queueSize,
    ...(rec.mtu ? { mtu: rec.mtu } : {}),
    ips: rec.ips as IpConfig[],
    routes: (result?.routes ?? []).map((r) => ({
      dst: r.dst,
      ...(r.gw ? { gw: r.gw } : {}),
    })) as RouteConfig[],
    dns: rec.dns as DnsConfig,
    ...policyFields(rec),
    state: rec.state,
    ...(rec.error ? { error: rec.error } : {}),
    ...(rec.guest ? { guest: toGuestIdentity(rec.guest) } : {}),
    createdAt: rec.createdAt,
  };
}

/** A VM record and its NICs as `vmnic vms` shows them. */
export function toVmInfo(
  vm: VmRecord,
  nics: NicRecord[],
  netns: boolean,
): VmInfo {
  return {
    vmId: vm.vmId,
    netnsPath: vm.netnsPath,
    netns,
    ...(vm.network ? { network: vm.network } : {}),
    quiesced: vm.quiesced,
    deleting: vm.deleting,
    nics: nics.map((n) => ({ index: n.index, state: n.state })),
    createdAt: vm.createdAt,
  };
}

/** The hook context fields of a record. */
export function hookFields(rec: NicRecord): Omit<HookInput, "operation"> {
  return {
    vmId: rec.vmId,
    index: rec.index,
    ifName: rec.ifName,
    tap: rec.tap,
    ...(rec.mac ? { mac: rec.mac } : {}),
    ips: rec.ips,
    netnsPath: rec.netnsPath,
    network: rec.network,
    numQueues: rec.numQueues,
    queueSize: rec.queueSize,
    ...(rec.mtu ? { mtu: rec.mtu } : {}),
    ...(rec.guest ? { guest: toGuestIdentity(rec.guest) } : {}),
  };
}
