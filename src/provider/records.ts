/**
 * Mapping between what the provider handles: a spec's recovery request as
 * CNI args, a CNI result as the NIC's IPs, a stored record as the public NIC
 * config (DESIGN.md's JSON) and as a hook context.
 *
 * @module
 */
import type { NetworkConfigList } from "../cni/config.ts";
import type { CniResult } from "../cni/result.ts";
import type { HookInput } from "../hooks/types.ts";
import type { NicRecord } from "../store/types.ts";
import type {
  AddSpec,
  DnsConfig,
  IpConfig,
  NicConfig,
  RouteConfig,
} from "./types.ts";
import { parseIpArg } from "./validate.ts";

/** CNI capability args or CNI_ARGS asking IPAM for the same IPs (recovery). */
export function ipRequest(
  list: NetworkConfigList,
  spec: AddSpec,
  op: string,
  vmId: string,
): { args?: [string, string][]; capabilityArgs?: Record<string, unknown> } {
  const caps: Record<string, unknown> = {};
  const declares = (cap: string) =>
    list.plugins.some((p) => p.capabilities[cap]);
  if (spec.mac && declares("mac")) caps.mac = spec.mac.toLowerCase();
  if (!spec.ips?.length) {
    return Object.keys(caps).length ? { capabilityArgs: caps } : {};
  }
  if (declares("ips")) {
    caps.ips = spec.ips;
    return { capabilityArgs: caps };
  }
  const bare = spec.ips.map((ip) => parseIpArg(op, vmId, ip).address);
  return {
    args: [["IgnoreUnknown", "1"], ["IP", bare.join(",")]],
    ...(Object.keys(caps).length ? { capabilityArgs: caps } : {}),
  };
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

/** A record as the public NIC config (DESIGN.md's JSON). */
export function toNicConfig(rec: NicRecord): NicConfig {
  const result = rec.cniResult as CniResult | null;
  return {
    id: rec.id,
    vmId: rec.vmId,
    index: rec.index,
    ifName: rec.ifName,
    tap: rec.tap,
    mac: rec.mac,
    network: rec.network,
    netnsPath: rec.netnsPath,
    numQueues: rec.numQueues,
    queueSize: rec.queueSize,
    mtu: rec.mtu,
    ips: rec.ips as IpConfig[],
    routes: (result?.routes ?? []).map((r) => ({
      dst: r.dst,
      ...(r.gw ? { gw: r.gw } : {}),
    })) as RouteConfig[],
    dns: rec.dns as DnsConfig,
    createdAt: rec.createdAt,
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
  };
}
