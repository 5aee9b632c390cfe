/**
 * What vmnic does for networks whose IPAM is CNI's `dhcp` plugin
 * (docs/datapath.md, "DHCP"). Its daemon (`dhcp daemon`) acquires a lease
 * during CNI ADD from the VM's netns, on the veth, with a packet socket,
 * and keeps renewing it from there for as long as the NIC lives; the guest
 * is given the leased address statically (`vmnic guest-config`), as with
 * any IPAM. So:
 *
 * - the wiring keeps DHCP replies arriving on the veth in the netns (the
 *   daemon's packet socket sees only what no filter redirected to the
 *   TAP), and does not pass the guest's own DHCP on
 *   (`TapPolicy.dhcp`, src/wiring/tap_policy.ts);
 * - the plugin's DEL runs before the chain's, while the veth still exists:
 *   the daemon sends its DHCPRELEASE out of it, and the bridge plugin
 *   deletes the veth before it runs its IPAM ({@linkcode IPAM_DEL_FIRST});
 * - CNI CHECK is not run: the `dhcp` plugin's CHECK asks its daemon to
 *   allocate (containernetworking-plugins before 1.2.0 start a second
 *   lease for the same client, which renews it on after DEL released the
 *   first, and holds the netns open);
 * - while ADD runs, the new veth is set up as soon as the bridge plugin
 *   makes it ({@linkcode whileDhcpAdd}): the daemon (before 1.6.0) binds its
 *   packet socket to the veth before it sets the veth up itself, so its
 *   first DISCOVER failed with "network is down" and it retried 2 ± 1 s
 *   later, on every add;
 * - a quiesced VM's veths stay up ({@linkcode tapPolicyFor}): the daemon
 *   renews through them (down, its renewals fail, and past T2 it sets the
 *   veth up itself; a DEL meanwhile waits out its retries, minutes, in
 *   plugins before 1.6.0). Instead nothing is redirected toward the TAP.
 *
 * @module
 */
import { sleep } from "../sys/timers.ts";
import type { NetworkConfigList } from "../cni/config.ts";
import { ipamTypeOf } from "../cni/runtime.ts";
import type { NicRecord } from "../store/types.ts";
import { raiseLink } from "../wiring/nic.ts";
import type { TapPolicy } from "../wiring/policy_spec.ts";
import type { ProviderContext } from "./context.ts";
import { tapPolicyOf } from "./policy.ts";

/** The `ipam.type` of CNI's DHCP plugin. */
export const DHCP_IPAM = "dhcp";

/** IPAM types whose DEL vmnic runs before the chain's DEL. */
export const IPAM_DEL_FIRST: readonly string[] = Object.freeze([DHCP_IPAM]);

/** Whether any plugin of the chain takes its addresses from `dhcp`. */
export function usesDhcpIpam(list: NetworkConfigList): boolean {
  return list.plugins.some((p) => ipamTypeOf(p) === DHCP_IPAM);
}

/** How often the VM netns is looked at for the new veth during ADD. */
export const VETH_POLL_MS = 1;

/**
 * Runs `add`, a CNI ADD of a chain with `dhcp` IPAM, setting the veth
 * `ifName` up in the VM netns as soon as it appears (best effort: a kernel
 * error only ends the looking). The daemon then finds the veth up and its
 * first DISCOVER goes out (src/provider/dhcp.ts, the module doc).
 */
export async function whileDhcpAdd<T>(
  ctx: Pick<ProviderContext, "kernel">,
  netnsPath: string,
  ifName: string,
  add: () => Promise<T>,
): Promise<T> {
  let done = false;
  const raise = (async () => {
    while (!done) {
      try {
        if (ctx.kernel.inNetns(netnsPath, (s) => raiseLink(s.conn, ifName))) {
          return;
        }
      } catch {
        return;
      }
      await sleep(VETH_POLL_MS);
    }
  })();
  try {
    return await add();
  } finally {
    done = true;
    await raise;
  }
}

/**
 * Whether the NIC's veth stays up while its VM is quiesced: its network's
 * IPAM is `dhcp` (a clone NIC's routed path keeps the usual quiesce).
 */
export function keepsVethUp(rec: NicRecord): boolean {
  return tapPolicyOf(rec)?.dhcp === true;
}

/**
 * The NIC's policy on its TAP path (`tapPolicyOf`) for a VM quiesced or
 * not: quiesced with its veth up, nothing is redirected to the TAP.
 */
export function tapPolicyFor(
  rec: NicRecord,
  quiesced: boolean,
): TapPolicy | undefined {
  const p = tapPolicyOf(rec);
  return p && quiesced && p.dhcp ? { ...p, quiesced: true } : p;
}
