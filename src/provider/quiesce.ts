/**
 * `quiesce` / `unquiesce`: a stopped VM's veths go down (nothing floods a
 * TAP nobody reads) and come up before it starts. Recorded on the VM, so
 * `verify` knows down is right, `recover` keeps it, and NICs added while
 * quiesced stay down. On a `dhcp` network the veth stays up for the dhcp
 * daemon renewing through it, and its redirect toward the TAP goes
 * instead (src/provider/dhcp.ts).
 *
 * @module
 */
import {
  applyNicPolicy,
  getLinkByName,
  setNicQuiesced,
} from "../wiring/nic.ts";
import { keepsVethUp, tapPolicyFor } from "./dhcp.ts";
import { restoreCloneRoutes } from "../wiring/clone_path.ts";
import { clonePathSpec } from "./clone.ts";
import { type ProviderContext, withVmLock } from "./context.ts";
import { NotFoundError, OperationError } from "./errors.ts";
import { toNicConfig } from "./records.ts";
import type { NicConfig } from "./types.ts";
import { validateVmId } from "./validate.ts";

/** Quiesces (`true`) or unquiesces the VM; returns its NICs. */
export async function quiesce(
  ctx: ProviderContext,
  vmId: string,
  quiesced: boolean,
): Promise<NicConfig[]> {
  const op = quiesced ? "quiesce" : "unquiesce";
  validateVmId(op, vmId);
  return await withVmLock(ctx, op, vmId, async (ctx) => {
    const vm = ctx.store.getVm(vmId);
    if (!vm) throw new NotFoundError(op, vmId, "no records of this VM");
    if (vm.deleting) {
      throw new OperationError(
        op,
        vmId,
        `a delete of this VM was cut short: run \`vmnic delete ${vmId}\``,
      );
    }
    const live = ctx.store.listNics({ vmId }).filter((r) =>
      r.state === "active" || r.state === "quiesced"
    );
    const name = vm.netnsPath.slice(vm.netnsPath.lastIndexOf("/") + 1);
    const dir = vm.netnsPath.slice(0, vm.netnsPath.lastIndexOf("/"));
    if (live.length && !ctx.kernel.netnsExists(name, dir)) {
      throw new OperationError(
        op,
        vmId,
        `netns ${vm.netnsPath} is missing: run \`vmnic recover ${vmId}\``,
      );
    }
    // Recorded first: a crash from here leaves links that `verify` reports
    // and `recover` sets as recorded.
    ctx.store.setQuiesced(vmId, quiesced);
    await ctx.fault("quiesce:recorded");
    const missing = live.length
      ? ctx.kernel.inNetns(
        vm.netnsPath,
        (s) =>
          live.filter((r) => {
            if (keepsVethUp(r)) {
              // Up for the dhcp daemon; the redirect to the TAP follows
              // (a missing TAP: `verify` says so, `recover` re-makes it).
              if (!setNicQuiesced(s.conn, r.ifName, false)) return true;
              if (getLinkByName(s.conn, r.tap)) {
                applyNicPolicy(s.conn, {
                  veth: r.ifName,
                  tap: r.tap,
                  policy: tapPolicyFor(r, quiesced),
                });
              }
              return false;
            }
            if (!setNicQuiesced(s.conn, r.ifName, quiesced)) return true;
            // A clone NIC's routes through its veth went down with it.
            if (!quiesced && r.guest) {
              restoreCloneRoutes(s, clonePathSpec(r, { op }));
            }
            return false;
          }).map((r) => r.ifName),
      )
      : [];
    if (missing.length) {
      throw new OperationError(
        op,
        vmId,
        `veth ${missing.join(", ")} missing: run \`vmnic recover ${vmId}\``,
      );
    }
    return ctx.store.listNics({ vmId }).map(toNicConfig);
  });
}
