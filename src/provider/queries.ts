/**
 * What the provider tells without changing anything: `inspect`, `list`,
 * `vms`, `verify` (the kernel and the plugins against the records), and
 * `guest-config`.
 *
 * @module
 */
import { parseConfList } from "../cni/config.ts";
import type { CniResult } from "../cni/result.ts";
import type { NicRecord } from "../store/types.ts";
import { inspectHostSide, inspectNic, type NicState } from "../wiring/nic.ts";
import { type ClonePathState, inspectClonePath } from "../wiring/clone_path.ts";
import type { NetnsScope } from "../wiring/kernel.ts";
import { clonePathSpec, guestView } from "./clone.ts";
import {
  netnsPathOf,
  pluginRunOptions,
  type ProviderContext,
  withVmLock,
} from "./context.ts";
import {
  ConflictError,
  messageOf,
  NotFoundError,
  toVmnicError,
} from "./errors.ts";
import { InvalidInputError } from "./errors.ts";
import {
  type GuestConfigFile,
  type GuestConfigFormat,
  renderGuestConfig,
} from "./guest_config.ts";
import { bridgeOf, hostVethOf, toNicConfig, toVmInfo } from "./records.ts";
import { isSlot } from "./pool.ts";
import {
  type HvArgs,
  type HvArgsOptions,
  type Hypervisor,
  hypervisorArgs,
  HYPERVISORS,
} from "./hv_args.ts";
import type {
  ListFilter,
  NicConfig,
  NicVerdict,
  VerifyResult,
  VmInfo,
} from "./types.ts";
import { validateVmId } from "./validate.ts";
import { tapPolicyOf } from "./policy.ts";
import { keepsVethUp, tapPolicyFor, usesDhcpIpam } from "./dhcp.ts";
import { formatIP, parseIP } from "../wiring/tap_policy.ts";

/** One NIC by record id, or null. */
export function inspect(ctx: ProviderContext, id: string): NicConfig | null {
  try {
    const rec = ctx.store.getNic(id);
    return rec ? toNicConfig(rec) : null;
  } catch (e) {
    throw toVmnicError("inspect", id, e);
  }
}

/**
 * Every NIC, optionally of one VM; the warm pool's slots only with
 * `pool: true` (then only them).
 */
export function list(
  ctx: ProviderContext,
  filter: ListFilter = {},
): NicConfig[] {
  if (filter.vmId !== undefined) validateVmId("list", filter.vmId);
  try {
    // The warm pool's slots only when asked for (then only them).
    const slots = new Set(
      ctx.store.listVms().filter(isSlot).map((v) => v.vmId),
    );
    const ip = filter.ip === undefined ? null : ipFilter(filter.ip);
    return ctx.store.listNics(filter.vmId ? { vmId: filter.vmId } : {})
      .filter((n) => slots.has(n.vmId) === (filter.pool === true))
      .filter((n) => ip === null || holdsIp(n, ip))
      .map(toNicConfig);
  } catch (e) {
    throw toVmnicError("list", filter.vmId ?? "*", e);
  }
}

/** The address `list --ip` looks for, canonical (`fd00::5`), or bad input. */
function ipFilter(text: string): string {
  try {
    const bare = text.trim();
    if (bare.includes("/")) throw new Error("an address, without /prefix");
    return formatIP(parseIP(bare).bytes);
  } catch (e) {
    throw new InvalidInputError(
      "list",
      text,
      `--ip ${JSON.stringify(text)}: ${
        (e as Error).message
      }; allowed: one IPv4 or IPv6 address, e.g. 10.88.0.5 or fd00::5`,
    );
  }
}

/** Whether the NIC holds the address (its own, or its clone guest's). */
function holdsIp(n: NicRecord, ip: string): boolean {
  const same = (a: string) => {
    try {
      return formatIP(parseIP(a).bytes) === ip;
    } catch {
      return false;
    }
  };
  return n.ips.some((x) => same(x.address)) ||
    (n.guest?.ips ?? []).some((x) => same(x.address));
}

/** Every VM this install holds, NICs or not. */
export function vms(ctx: ProviderContext): VmInfo[] {
  try {
    const nics = ctx.store.listNics();
    return ctx.store.listVms().filter((vm) => !isSlot(vm)).map((vm) => {
      const cut = vm.netnsPath.lastIndexOf("/");
      return toVmInfo(
        vm,
        nics.filter((n) => n.vmId === vm.vmId),
        ctx.kernel.netnsExists(
          vm.netnsPath.slice(cut + 1),
          vm.netnsPath.slice(0, cut),
        ),
      );
    });
  } catch (e) {
    throw toVmnicError("vms", "*", e);
  }
}

/** Options of {@linkcode verify}. */
export interface VerifyOptions {
  /** Run CNI CHECK where the chain supports it (default true). */
  check?: boolean;
}

/**
 * Checks the VM against its records: the netns; per NIC the TAP, the veth
 * (MAC, link state, no addresses), the redirects, the host veth and its
 * bridge; and CNI CHECK where the chain has it. Takes the VM's lock, so an
 * operation in progress shows as busy, not broken.
 */
export async function verify(
  ctx: ProviderContext,
  vmId: string,
  opts: VerifyOptions = {},
): Promise<VerifyResult> {
  const op = "verify";
  validateVmId(op, vmId);
  return await withVmLock(ctx, op, vmId, async (ctx) => {
    const vm = ctx.store.getVm(vmId);
    const recs = ctx.store.listNics({ vmId });
    const path = vm?.netnsPath ?? netnsPathOf(ctx, vmId);
    const cut = path.lastIndexOf("/");
    const present = ctx.kernel.netnsExists(
      path.slice(cut + 1),
      path.slice(0, cut),
    );
    if (!vm && !recs.length) {
      throw new NotFoundError(
        op,
        vmId,
        present
          ? `no records of VM ${vmId}; netns ${path} exists but is not this install's`
          : "unknown VM (no records, no netns)",
      );
    }
    const quiesced = vm?.quiesced ?? false;
    const problems: string[] = [];
    if (vm?.deleting) {
      problems.push(
        `a delete of this VM was cut short (run \`vmnic delete ${vmId}\`)`,
      );
    }
    if (!present) {
      problems.push(`netns ${path} is missing (run \`vmnic recover ${vmId}\`)`);
    }
    const absent: NicState = {
      tapPresent: false,
      vethPresent: false,
      wired: false,
      vethUp: false,
      tapUp: false,
      vethAddrs: [],
    };
    // One entry into the netns, one look at the host side, for all NICs.
    const states: (NicState & { clone?: ClonePathState })[] = present
      ? ctx.kernel.inNetns(
        path,
        (s) => recs.map((r) => inspectAny(s, r, quiesced)),
      )
      : recs.map(() => absent);
    const hosts = ctx.kernel.inHost((s) =>
      recs.map((r, i) =>
        inspectHostSide(s.conn, {
          name: hostVethOf(r.cniResult, bridgeOf(r)),
          index: states[i].peerIndex,
          bridge: bridgeOf(r),
        })
      )
    );
    const nics: NicVerdict[] = [];
    for (const [i, rec] of recs.entries()) {
      const st = states[i];
      const host = hosts[i];
      const bridge = bridgeOf(rec);
      const nic = `NIC ${rec.index}`;
      const live = rec.state === "active" || rec.state === "quiesced";
      if (rec.state === "failed") {
        problems.push(`${nic}: failed: ${rec.error}`);
      } else if (!live) {
        problems.push(`${nic}: left ${rec.state} by an interrupted run`);
      }
      if (present && live) {
        if (!st.tapPresent) problems.push(`${nic}: TAP ${rec.tap} is missing`);
        if (!st.vethPresent) {
          problems.push(`${nic}: veth ${rec.ifName} is missing`);
        }
        if (st.tapPresent && st.vethPresent && !st.wired) {
          problems.push(
            st.clone
              ? `${nic}: the translation between ${rec.ifName} and ${rec.tap} ` +
                `is incomplete (${missingParts(st.clone)})`
              : `${nic}: ${rec.ifName} and ${rec.tap} are not wired`,
          );
        }
        if (st.clone && st.vethPresent && !st.clone.netAddress) {
          problems.push(
            `${nic}: ${rec.ifName} lacks its CNI address ` +
              rec.ips.filter((ip) => ip.version === 4).map((ip) =>
                `${ip.address}/${ip.prefix}`
              ).join(", "),
          );
        }
        if (st.vethPresent && st.vethMac !== rec.mac) {
          problems.push(
            `${nic}: ${rec.ifName} has MAC ${st.vethMac}, recorded ${rec.mac}`,
          );
        }
        if (st.vethAddrs.length) {
          problems.push(
            `${nic}: stray addresses on ${rec.ifName}: ${
              st.vethAddrs.join(", ")
            }`,
          );
        }
        // On a dhcp network the veth stays up while quiesced (dhcp.ts).
        const wantUp = !quiesced || keepsVethUp(rec);
        if (st.vethPresent && st.vethUp !== wantUp) {
          problems.push(
            !wantUp
              ? `${nic}: ${rec.ifName} is up although the VM is quiesced`
              : quiesced
              ? `${nic}: ${rec.ifName} is down, but its dhcp daemon renews ` +
                `through it: it stays up while the VM is quiesced`
              : `${nic}: ${rec.ifName} is down (quiesced link) although the VM is not quiesced`,
          );
        }
        for (const p of st.policyProblems ?? []) {
          problems.push(`${nic}: ${p} (run \`vmnic recover ${vmId}\`)`);
        }
        if (!host.present) {
          problems.push(`${nic}: its host veth is missing`);
        } else if (bridge && host.master !== bridge) {
          problems.push(
            host.bridgePresent
              ? `${nic}: host veth ${host.name} is not on bridge ${bridge}` +
                (host.master ? ` (on ${host.master})` : "")
              : `${nic}: bridge ${bridge} is gone`,
          );
        }
      }
      let check: NicVerdict["check"] = "skipped";
      if (opts.check !== false && present && live && st.vethPresent) {
        const failure = await cniCheck(ctx, rec);
        check = failure === null
          ? "ok"
          : failure === "skipped"
          ? "skipped"
          : "failed";
        if (typeof failure === "string" && failure !== "skipped") {
          problems.push(`${nic}: CNI CHECK failed: ${failure}`);
        }
      }
      nics.push({
        index: rec.index,
        tap: rec.tap,
        ifName: rec.ifName,
        state: rec.state,
        tapPresent: st.tapPresent,
        vethPresent: st.vethPresent,
        wired: st.wired,
        policy: !tapPolicyOf(rec) || !(present && live && st.tapPresent &&
            st.vethPresent)
          ? "none"
          : st.policyProblems?.length
          ? "mismatch"
          : "ok",
        macOk: st.vethPresent && st.vethMac === rec.mac,
        vethUp: st.vethUp,
        strayAddresses: st.vethAddrs,
        ...(st.clone ? { translation: st.clone.translation } : {}),
        host: {
          present: host.present,
          ...(host.name ? { name: host.name } : {}),
          ...(host.master ? { master: host.master } : {}),
          ...(bridge ? { bridge } : {}),
        },
        check,
      });
    }
    return {
      vmId,
      ok: problems.length === 0,
      netnsPath: path,
      netns: present,
      quiesced,
      nics,
      problems,
    };
  }, { record: false });
}

/**
 * One NIC's devices: the TC path's, or a clone NIC's routed path (then
 * `wired` means its translation is whole, and the addresses that count as
 * stray are those besides its CNI address).
 */
function inspectAny(
  scope: NetnsScope,
  rec: NicRecord,
  quiesced: boolean,
): NicState & { clone?: ClonePathState } {
  if (!rec.guest) {
    return inspectNic(scope.conn, {
      veth: rec.ifName,
      tap: rec.tap,
      policy: tapPolicyFor(rec, quiesced),
    });
  }
  let spec;
  try {
    spec = clonePathSpec(rec, { down: quiesced, op: "verify" });
  } catch {
    // Not plumbed yet (no CNI address): seen as the TC path sees it.
    return inspectNic(scope.conn, { veth: rec.ifName, tap: rec.tap });
  }
  // No redirects, so no TAP-path policy: "wired" and "stray" are the
  // clone's (its translation whole; addresses besides its CNI address).
  const c = inspectClonePath(scope, spec);
  return {
    tapPresent: c.tapPresent,
    vethPresent: c.vethPresent,
    wired: c.wired,
    ...(c.vethMac ? { vethMac: c.vethMac } : {}),
    vethUp: c.vethUp,
    tapUp: c.tapUp,
    vethAddrs: c.vethAddrs,
    ...(c.peerIndex !== undefined ? { peerIndex: c.peerIndex } : {}),
    clone: c,
  };
}

/** The parts of a clone NIC's translation that are missing, as text. */
function missingParts(c: ClonePathState): string {
  const t = c.translation;
  return [
    ...(t.rules ? [] : ["nft rules"]),
    ...(t.routes ? [] : ["routes"]),
    ...(t.forwarding ? [] : ["ip_forward off"]),
    ...(t.proxyArp ? [] : ["proxy ARP"]),
    ...(c.tapUp ? [] : ["TAP down"]),
  ].join(", ") || "its CNI address";
}

/**
 * CNI CHECK of one NIC: null when it passed, "skipped" when the chain has
 * no CHECK, else the failure. The result given to the plugins leaves out
 * the addresses and routes vmnic moved to the guest on purpose (the veth
 * carries none, docs/datapath.md), and gives the veth the MAC vmnic set on
 * purpose (a recorded MAC asked for by `add --mac` or a rebuild, set after
 * ADD when the chain lacks the `mac` capability): the plugins check the
 * rest (their interfaces, the bridge, the IPAM lease).
 */
async function cniCheck(
  ctx: ProviderContext,
  rec: NicRecord,
): Promise<string | null | "skipped"> {
  const result = rec.cniResult as CniResult | null;
  if (!result) return "skipped";
  try {
    const list = parseConfList(
      rec.cniConfig,
      `record of ${rec.vmId}/${rec.index}`,
    );
    // The dhcp plugin's CHECK allocates (src/provider/dhcp.ts).
    if (usesDhcpIpam(list)) return "skipped";
    const done = await ctx.cni.checkNetworkList(list, {
      containerId: rec.containerId,
      netns: rec.netnsPath,
      ifName: rec.ifName,
      // The capability args of its ADD (bandwidth checks its rates by them).
      ...(rec.capabilityArgs ? { capabilityArgs: rec.capabilityArgs } : {}),
      ...pluginRunOptions(ctx, rec.vmId),
    }, {
      ...result,
      interfaces: result.interfaces.map((i) =>
        i.name === rec.ifName && i.sandbox !== undefined && rec.mac
          ? { ...i, mac: rec.mac }
          : i
      ),
      ips: [],
      routes: [],
    });
    return done === "done" ? null : "skipped";
  } catch (e) {
    return messageOf(e);
  }
}

/** The guest side of a VM's records in one of the supported formats. */
export function guestConfig(
  ctx: ProviderContext,
  vmId: string,
  format: GuestConfigFormat,
): GuestConfigFile[] {
  const op = "guest-config";
  validateVmId(op, vmId);
  // A clone NIC's guest keeps its snapshot's identity.
  const nics = list(ctx, { vmId }).filter((n) =>
    n.state === "active" || n.state === "quiesced"
  ).map(guestView);
  if (!nics.length) {
    throw new NotFoundError(op, vmId, "no NICs recorded");
  }
  return renderGuestConfig(vmId, nics, format);
}

/**
 * What to pass the hypervisor for every live NIC of the VM (from the
 * records; see `hv_args.ts` for the rules per hypervisor).
 */
export function hvArgs(
  ctx: ProviderContext,
  vmId: string,
  hypervisor: Hypervisor,
  opts: HvArgsOptions = {},
): HvArgs {
  const op = "hv-args";
  validateVmId(op, vmId);
  if (!(HYPERVISORS as readonly string[]).includes(hypervisor)) {
    return hypervisorArgs(vmId, [], hypervisor, opts); // refuses, naming them
  }
  // A clone NIC's guest keeps its snapshot's MAC.
  const nics = list(ctx, { vmId }).map(guestView);
  const stuck = nics.filter((n) =>
    n.state !== "active" && n.state !== "quiesced"
  );
  if (stuck.length) {
    throw new ConflictError(
      op,
      `${vmId}/${stuck[0].index}`,
      `NIC ${stuck[0].index} is ${stuck[0].state}: only live NICs go to a ` +
        `hypervisor (run \`vmnic verify ${vmId}\`)`,
    );
  }
  return hypervisorArgs(vmId, nics, hypervisor, opts);
}
