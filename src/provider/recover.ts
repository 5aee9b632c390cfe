/**
 * `recover`: brings a VM's NICs back to what the records say, after a host
 * reboot or anything that broke them, repairing only what is wrong
 * (docs/state-machine.md, "Recover"). A NIC whose veth survived is mended
 * in place (TAP, redirects, MAC, addresses, link state): a TAP the
 * hypervisor holds is never replaced. A NIC whose veth is gone is rebuilt
 * with the same record id, index, TAP name, MAC and IPs, firing its remove
 * and add hooks; what cannot be rebuilt is never torn down.
 *
 * @module
 */
import { parseConfList } from "../cni/config.ts";
import type { NicRecord, VmRecord } from "../store/types.ts";
import {
  inspectHostSide,
  inspectNic,
  reattachHostVeth,
  repairNic,
} from "../wiring/nic.ts";
import {
  checkpoint,
  mayMakeNetns,
  mayMakeNetnsCheck,
  type ProviderContext,
  runHook,
  withVmLock,
} from "./context.ts";
import {
  ConflictError,
  NotFoundError,
  OperationError,
  reasonOf,
} from "./errors.ts";
import {
  addNic,
  ensureVmNetns,
  finishCrashedDelete,
  markAnnounced,
  REBUILDING,
} from "./lifecycle.ts";
import {
  bridgeOf,
  hookFields,
  hostVethOf,
  ipRequest,
  toNicConfig,
} from "./records.ts";
import { releaseNic, retireNic } from "./retire.ts";
import { clonePathSpec } from "./clone.ts";
import { repairClonePath } from "../wiring/clone_path.ts";
import type { RecoverResult } from "./types.ts";
import { keepsVethUp, tapPolicyFor } from "./dhcp.ts";
import { validateVmId } from "./validate.ts";

/** What {@linkcode recover} may do besides repairing. */
export interface RecoverOptions {
  /**
   * False: a VM whose delete a crash cut short is refused
   * ({@linkcode ConflictError}) instead of having its delete finished (an
   * automatic repair must never complete a delete nobody asked it for).
   */
  finishDelete?: boolean;
}

/** Recovers the VM's NICs; per-NIC failures are reported, not thrown. */
export async function recover(
  ctx: ProviderContext,
  vmId: string,
  opts: RecoverOptions = {},
): Promise<RecoverResult> {
  const op = "recover";
  validateVmId(op, vmId);
  return await withVmLock(ctx, op, vmId, async (ctx) => {
    mayMakeNetnsCheck(ctx, op);
    const before = ctx.store.getVm(vmId);
    if (opts.finishDelete === false && before?.deleting) {
      throw new ConflictError(
        op,
        vmId,
        "it is being deleted (a delete was cut short): run `vmnic delete " +
          `${vmId}\` to finish it`,
      );
    }
    const vm = await finishCrashedDelete(ctx, vmId);
    if (!vm) {
      throw new NotFoundError(
        op,
        vmId,
        before
          ? "it was being deleted when a run was cut short; the delete is finished now"
          : "no records of this VM",
      );
    }
    mayMakeNetns(ctx, op);
    const out: RecoverResult = {
      vmId,
      nics: [],
      repaired: [],
      rebuilt: [],
      problems: [],
      warnings: [],
    };
    // A crashed remove is finished, not revived.
    for (const rec of ctx.store.listNics({ vmId })) {
      if (rec.state !== "deleting") continue;
      const gone = await retireNic(ctx, rec, {
        op,
        unplumb: true,
        announce: false,
      });
      if (!gone.gone) {
        out.problems.push({ index: rec.index, error: gone.error! });
      }
    }
    ensureVmNetns(ctx, vm);
    for (const rec of ctx.store.listNics({ vmId })) {
      if (rec.state === "deleting") continue;
      checkpoint(ctx, op, vmId);
      if (rec.state === "failed") {
        out.problems.push({
          index: rec.index,
          error: `its teardown failed earlier (${rec.error}): remove it ` +
            `(with --force to drop it regardless) and add it again`,
        });
        continue;
      }
      try {
        const seen = ctx.kernel.inNetns(
          vm.netnsPath,
          (s) => inspectNic(s.conn, { veth: rec.ifName, tap: rec.tap }),
        );
        const bridge = bridgeOf(rec);
        const host = seen.vethPresent && bridge
          ? ctx.kernel.inHost((s) =>
            inspectHostSide(s.conn, {
              name: hostVethOf(rec.cniResult, bridge),
              index: seen.peerIndex,
              bridge,
            })
          )
          : null;
        // A bridge that is gone takes the plugins to make again: rebuilt.
        if (
          seen.vethPresent && rec.state !== "adding" &&
          host?.bridgePresent !== false
        ) {
          const actions = repairInPlace(ctx, vm, rec);
          if (host?.present && bridge && host.master !== bridge) {
            // Left off its bridge (the bridge re-made, a hand's `nomaster`).
            ctx.kernel.inHost((s) =>
              reattachHostVeth(s.conn, host.name!, bridge)
            );
            actions.push(`host veth ${host.name} put back on bridge ${bridge}`);
          }
          if (actions.length) out.repaired.push({ index: rec.index, actions });
          await ctx.fault("recover:repaired");
          continue;
        }
        const rebuilt = await rebuildNic(ctx, vm, rec, out.warnings);
        out.rebuilt.push(rec.index);
        const got = new Set(rebuilt.ips.map((ip) => ip.address));
        const lost = rec.ips.filter((ip) => !got.has(ip.address));
        if (lost.length) {
          out.problems.push({
            index: rec.index,
            error: `IP ${lost.map((ip) => ip.address).join(", ")} not had ` +
              `again; got ${[...got].join(", ") || "none"}`,
          });
        }
      } catch (e) {
        out.problems.push({ index: rec.index, error: reasonOf(e) });
      }
    }
    out.nics = ctx.store.listNics({ vmId }).map(toNicConfig);
    return out;
  });
}

/** Mends a NIC around its surviving veth; returns what it did. */
function repairInPlace(
  ctx: ProviderContext,
  vm: VmRecord,
  rec: NicRecord,
): string[] {
  const { repaired } = ctx.kernel.inNetns(
    vm.netnsPath,
    (scope) =>
      rec.guest
        ? repairClonePath(
          scope,
          clonePathSpec(rec, { down: vm.quiesced, op: "recover" }),
        )
        : repairNic(scope, {
          veth: rec.ifName,
          tap: rec.tap,
          queues: rec.numQueues,
          mac: rec.mac,
          down: vm.quiesced && !keepsVethUp(rec),
          policy: tapPolicyFor(rec, vm.quiesced),
        }),
  );
  const state = vm.quiesced ? "quiesced" : "active";
  if (rec.state !== state) {
    ctx.store.setNicState(vm.vmId, state, { indices: [rec.index] });
  }
  return repaired;
}

/**
 * Rebuilds a NIC whose veth is gone: the old attachment released (so IPAM
 * hands the same address to the same container id), CNI ADD asking for the
 * recorded MAC and IPs, the TAP made again under its name. Everything that
 * could refuse (the request, the plugins, the veto hooks) is asked first.
 */
async function rebuildNic(
  ctx: ProviderContext,
  vm: VmRecord,
  rec: NicRecord,
  warnings: string[],
): Promise<NicRecord> {
  const op = "recover";
  const object = `${vm.vmId}/${rec.index}`;
  // The old attachment goes with the config of its ADD; the new one is
  // made with the network's conflist as it is now (an operator may have
  // fixed it: declared the "ips" capability, say).
  const recorded = parseConfList(rec.cniConfig, `record of ${object}`);
  const list = (await ctx.networks.current(rec.network)) ?? recorded;
  const request = {
    ...(rec.mac ? { mac: rec.mac } : {}),
    ...(rec.ips.length
      ? { ips: rec.ips.map((ip) => `${ip.address}/${ip.prefix}`) }
      : {}),
  };
  ipRequest(list, request, op, object);
  await ctx.cni.findPlugins(list);
  const announced = rec.announced === true &&
    (rec.state === "active" || rec.state === "quiesced");
  if (announced) {
    await runHook(ctx, "beforeRemove", { ...hookFields(rec), operation: op });
  }
  await runHook(ctx, "beforeAdd", { ...hookFields(rec), operation: op });
  ctx.store.setNicState(vm.vmId, "adding", {
    indices: [rec.index],
    error: REBUILDING,
  });
  const released = await releaseNic(ctx, rec, { unplumb: "redirects" });
  if (released.error !== undefined) {
    ctx.store.setNicState(vm.vmId, rec.state, { indices: [rec.index] });
    throw new OperationError(
      op,
      object,
      `could not release its old attachment (${released.error}); nothing ` +
        `was rebuilt`,
    );
  }
  await ctx.fault("recover:nic-retired");
  if (announced) {
    try {
      await runHook(ctx, "afterRemove", { ...hookFields(rec), operation: op });
    } catch (e) {
      warnings.push(`NIC ${rec.index}: afterRemove hook: ${reasonOf(e)}`);
    }
  }
  const made = await addNic(ctx, op, vm, {
    index: rec.index,
    list,
    queues: rec.numQueues,
    queueSize: rec.queueSize,
    request,
    rebuild: { ...rec, state: "adding" },
  });
  try {
    await runHook(ctx, "afterAdd", {
      ...hookFields(made),
      operation: op,
      cniResult: made.cniResult,
    });
    markAnnounced(ctx, made);
  } catch (e) {
    throw new OperationError(
      op,
      object,
      `rebuilt, but an afterAdd hook failed: ${reasonOf(e)} (the NIC is kept)`,
    );
  }
  return made;
}
