/**
 * The CNI 1.1 verbs put to work (docs/policy.md, "CNI"): STATUS before an
 * add (a chain that says it is not ready refuses it, nothing changed) and
 * in `networks` and `doctor`; GC after `gc` collects, with every
 * attachment this install records as valid; and what a network's conflist
 * says of itself (subnets, gateways, MTU, the chain and its capabilities).
 * Chains below 1.1 are skipped without running anything.
 *
 * @module
 */
import type { NetworkConfigList } from "../cni/config.ts";
import type { CniRuntime } from "../cni/runtime.ts";
import { versionAtLeast } from "../cni/version.ts";
import type { ProviderContext } from "./context.ts";
import { messageOf, OperationError } from "./errors.ts";

/** One plugin of a chain, as `networks` shows it. */
export interface ChainPlugin {
  /** Its type (the executable). */
  type: string;
  /** The capabilities it declares. */
  capabilities: string[];
  /** Its IPAM plugin's type, when it has one. */
  ipam?: string;
}

/** What a conflist says of its network. */
export interface NetworkDetails {
  /** Subnets its IPAM hands addresses from. */
  subnets: string[];
  /** Gateways its IPAM names. */
  gateways: string[];
  /** The MTU a plugin sets, when one does. */
  mtu?: number;
  /** The chain, in ADD order. */
  chain: ChainPlugin[];
}

/** What STATUS (CNI 1.1) says of a chain. */
export interface NetworkStatus {
  /** `ok`: every plugin that speaks 1.1 is ready; `skipped`: none does. */
  status: "ok" | "not-ready" | "skipped";
  /** Why it is not ready (the plugin's error). */
  error?: string;
}

/** Subnets, gateways, MTU and the chain of a conflist. */
export function networkDetails(list: NetworkConfigList): NetworkDetails {
  const subnets = new Set<string>();
  const gateways = new Set<string>();
  let mtu: number | undefined;
  const chain: ChainPlugin[] = [];
  for (const p of list.plugins) {
    const ipam = p.conf.ipam as Record<string, unknown> | undefined;
    for (const r of ipamRanges(ipam)) {
      if (typeof r.subnet === "string") subnets.add(r.subnet);
      if (typeof r.gateway === "string") gateways.add(r.gateway);
    }
    if (typeof p.conf.mtu === "number" && mtu === undefined) mtu = p.conf.mtu;
    chain.push({
      type: p.type,
      capabilities: Object.entries(p.capabilities).filter(([, on]) => on)
        .map(([c]) => c).sort(),
      ...(typeof ipam?.type === "string" ? { ipam: ipam.type } : {}),
    });
  }
  return {
    subnets: [...subnets],
    gateways: [...gateways],
    ...(mtu !== undefined ? { mtu } : {}),
    chain,
  };
}

/** host-local's ranges (`ranges` sets, or the old `subnet`/`gateway`). */
function ipamRanges(
  ipam: Record<string, unknown> | undefined,
): Record<string, unknown>[] {
  if (!ipam) return [];
  const out: Record<string, unknown>[] = [];
  if (Array.isArray(ipam.ranges)) {
    for (const set of ipam.ranges) {
      if (Array.isArray(set)) {
        out.push(...set.filter((r) => r && typeof r === "object"));
      }
    }
  }
  if (typeof ipam.subnet === "string") out.push(ipam);
  return out;
}

/** STATUS of a chain; never throws (a failure is `not-ready`). */
export async function networkStatus(
  cni: CniRuntime,
  list: NetworkConfigList,
): Promise<NetworkStatus> {
  if (!versionAtLeast(list.cniVersion, "1.1.0")) return { status: "skipped" };
  try {
    return { status: await cni.getStatus(list) };
  } catch (e) {
    return { status: "not-ready", error: messageOf(e) };
  }
}

/**
 * Refuses an add on a network whose chain speaks CNI 1.1 and says, by
 * STATUS, that it is not ready; nothing is changed yet.
 */
export async function checkReady(
  ctx: ProviderContext,
  op: string,
  object: string,
  lists: readonly NetworkConfigList[],
): Promise<void> {
  const seen = new Set<string>();
  for (const list of lists) {
    if (seen.has(list.name)) continue;
    seen.add(list.name);
    const s = await networkStatus(ctx.cni, list);
    if (s.status === "not-ready") {
      throw new OperationError(
        op,
        object,
        `network ${list.name} is not ready (CNI STATUS): ${s.error}; ` +
          `nothing was changed`,
      );
    }
  }
}

/** What CNI GC did for one network. */
export interface NetworkGc {
  /** The network. */
  network: string;
  /** `done`: its plugins were sent GC; `skipped`: below 1.1 or disabled. */
  plugins: "done" | "skipped";
  /** Why it failed. */
  error?: string;
}

/**
 * CNI GC (1.1) of every network of the conf dir, with the attachments
 * this install records on it (VMs' NICs and the pool's) as the valid ones.
 */
export async function gcNetworks(ctx: ProviderContext): Promise<NetworkGc[]> {
  let set;
  try {
    set = await ctx.networks.load();
  } catch {
    return []; // no conflists to ask: nothing of theirs to collect
  }
  const nics = ctx.store.listNics();
  const out: NetworkGc[] = [];
  for (const list of set.networks) {
    if (!versionAtLeast(list.cniVersion, "1.1.0") || list.disableGC) {
      out.push({ network: list.name, plugins: "skipped" });
      continue;
    }
    const valid = nics.filter((n) => n.network === list.name).map((n) => ({
      containerId: n.containerId,
      ifName: n.ifName,
    }));
    try {
      const r = await ctx.cni.gcNetworkList(list, valid);
      out.push({ network: list.name, plugins: r.plugins });
    } catch (e) {
      out.push({ network: list.name, plugins: "done", error: messageOf(e) });
    }
  }
  return out;
}
