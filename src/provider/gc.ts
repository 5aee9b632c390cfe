/**
 * The provider's GC module: collects every VM this install recorded that
 * is not in the caller's active set, like `delete`, skipping VMs another
 * process is working on. A netns carrying the prefix that no record
 * accounts for is reported and left alone, unless `includeUnknown` asks
 * for it (never one another vmnic install made). Lock files of VMs that
 * no longer exist go too.
 *
 * @module
 */
import { gcNetworks } from "./cni_verbs.ts";
import { lockedVmIds } from "../store/locks.ts";
import { netnsTag } from "../wiring/nic.ts";
import {
  installOfTag,
  lockVm,
  netnsPathOf,
  type ProviderContext,
} from "./context.ts";
import {
  OperationError,
  reasonOf,
  toVmnicError,
  VmBusyError,
} from "./errors.ts";
import { tracedOp } from "./oplog.ts";
import type { GcModule, GcPlan, GcReport } from "./gc_orchestrator.ts";
import { deleteVm, deleteVmNetns, hasRecords } from "./lifecycle.ts";
import { isSlot, recoverSlots, SLOT_PREFIX } from "./pool.ts";
import { isVmId } from "./validate.ts";

/** What the CNI GC module sees. */
export interface CniGcSnapshot {
  /** VM ids in the records. */
  vmIds: string[];
  /** VM ids of netns carrying the prefix that no record accounts for. */
  unknown: string[];
  /**
   * VM ids of files carrying the prefix with no netns mounted on them (what
   * an interrupted creation leaves): nothing to own, so always removed.
   */
  stale: string[];
}

/** Options of the GC module. */
export interface CniGcOptions {
  /**
   * Also remove netns carrying the prefix that no record accounts for
   * (without CNI DEL: there is no record of what was added).
   */
  includeUnknown?: boolean;
  /** Also retire the warm pool's ready slots (no daemon keeps them now). */
  includePool?: boolean;
}

/** The GC module of a provider. */
export function cniGcModule(
  ctx: ProviderContext,
  opts: CniGcOptions = {},
): GcModule<CniGcSnapshot> {
  return {
    name: "cni",
    snapshot: () => Promise.resolve(snapshot(ctx)),
    collect: (snap, active, plan) => collect(ctx, snap, active, plan, opts),
  };
}

function snapshot(ctx: ProviderContext): CniGcSnapshot {
  const prefix = ctx.config.netnsPrefix;
  const vms = ctx.store.listVms();
  const slots = new Set(vms.filter(isSlot).map((v) => v.vmId));
  const recorded = new Set([
    ...vms.map((v) => v.vmId),
    ...ctx.store.listNics().map((n) => n.vmId),
  ]);
  const withPrefix = (stale: boolean) =>
    prefix
      ? ctx.kernel.listNetns(ctx.config.netnsDir, { stale })
        .filter((n) => n.startsWith(prefix))
        .map((n) => n.slice(prefix.length))
        .filter((id) => !recorded.has(id))
      : [];
  const live = withPrefix(false);
  return {
    // The pool's slots are not VMs: no active set names them.
    vmIds: [...recorded].filter((id) => !slots.has(id)).sort(),
    unknown: live.sort(),
    stale: withPrefix(true).filter((id) => !live.includes(id)).sort(),
  };
}

async function collect(
  ctx: ProviderContext,
  snap: CniGcSnapshot,
  active: ReadonlySet<string>,
  plan: GcPlan,
  opts: CniGcOptions,
): Promise<GcReport> {
  const report: GcReport = {
    module: "cni",
    candidates: [],
    collected: [],
    skipped: [],
    errors: [],
    warnings: [],
  };
  const doomed = snap.vmIds.filter((id) => !active.has(id));
  const unknown = snap.unknown.filter((id) => !active.has(id));
  const stale = snap.stale.filter((id) => !active.has(id));
  report.candidates = [
    ...doomed,
    ...stale,
    ...(opts.includeUnknown ? unknown : []),
  ].sort();
  if (!opts.includeUnknown) {
    for (const id of unknown) {
      report.skipped.push({
        id,
        reason: `netns ${
          netnsPathOf(ctx, id)
        } has no record in this install: left alone (--include-unknown removes it)`,
      });
    }
  }
  if (plan.dryRun) return report;
  // Claims a crash cut short are undone; broken slots go; healthy ones
  // stay for the daemon that keeps them, unless asked to go too.
  report.collected.push(
    ...await recoverSlots(
      ctx,
      (_slot, healthy) => healthy && !opts.includePool,
    ),
  );
  const total = report.candidates.length;
  let done = 0;
  // Asked to stop: the VM in hand is finished, the rest is reported as not
  // attempted (an error, so the run exits 1 as delete's does), never left
  // out silently (docs/state-machine.md, "Processes").
  const interrupted = (vmId: string) => {
    if (!ctx.signal?.aborted) return false;
    report.errors.push({
      id: vmId,
      error: `not attempted: interrupted by ${String(ctx.signal.reason)}`,
    });
    return true;
  };
  for (const vmId of doomed) {
    if (interrupted(vmId)) continue;
    await gcEvent(ctx, vmId, report, (c) => collectVm(c, vmId, report));
    plan.onProgress?.(vmId, ++done, total);
  }
  for (const vmId of [...stale, ...(opts.includeUnknown ? unknown : [])]) {
    if (interrupted(vmId)) continue;
    await gcEvent(
      ctx,
      vmId,
      report,
      (c) => collectUnknown(c, vmId, report, opts.includeUnknown === true),
    );
    plan.onProgress?.(vmId, ++done, total);
  }
  await removeStaleLocks(ctx, active);
  await removeOrphanBackups(ctx, active);
  // CNI GC (1.1): the plugins drop what no recorded NIC holds any more.
  for (const g of await gcNetworks(ctx)) {
    if (g.error !== undefined) {
      report.warnings.push({
        id: `network ${g.network}`,
        warning: `CNI GC failed: ${g.error}`,
      });
    }
  }
  return report;
}

/**
 * Runs one VM's collection as a `gc` event: failed when it added an error
 * to the report; none when it only skipped the VM.
 */
async function gcEvent(
  ctx: ProviderContext,
  vmId: string,
  report: GcReport,
  collectOne: (ctx: ProviderContext) => Promise<void>,
): Promise<void> {
  const [errors, skipped] = [report.errors.length, report.skipped.length];
  await tracedOp(ctx, "gc", vmId, async (c) => {
    await collectOne(c);
    const failed = report.errors.slice(errors);
    if (failed.length) {
      throw new OperationError(
        "gc",
        vmId,
        failed.map((e) => e.error).join("; "),
      );
    }
  }, { record: () => report.skipped.length === skipped }).catch(() => {});
}

/** Collects one recorded VM like `delete`, unless another process holds it. */
async function collectVm(
  ctx: ProviderContext,
  vmId: string,
  report: GcReport,
): Promise<void> {
  if (!isVmId(vmId)) {
    report.skipped.push({ id: vmId, reason: "not a vmnic VM id" });
    return;
  }
  let lock;
  try {
    lock = await lockVm(ctx, "gc", vmId, 0);
  } catch (e) {
    if (e instanceof VmBusyError) {
      report.skipped.push({
        id: vmId,
        reason: "locked by another vmnic process",
      });
      return;
    }
    report.errors.push({
      id: vmId,
      error: reasonOf(toVmnicError("gc", vmId, e)),
    });
    return;
  }
  try {
    const warnings = await deleteVm(ctx, "gc", vmId);
    lock.releaseAndRemove();
    report.collected.push(vmId);
    report.warnings.push(...warnings.map((warning) => ({ id: vmId, warning })));
  } catch (e) {
    report.errors.push({
      id: vmId,
      error: reasonOf(toVmnicError("gc", vmId, e)),
    });
  } finally {
    lock.release();
  }
}

/** Removes a netns no record accounts for, unless another install made it. */
async function collectUnknown(
  ctx: ProviderContext,
  vmId: string,
  report: GcReport,
  includeLive: boolean,
): Promise<void> {
  const name = ctx.config.netnsPrefix + vmId;
  const path = netnsPathOf(ctx, vmId);
  let lock;
  try {
    lock = await lockVm(ctx, "gc", vmId, 0);
  } catch {
    report.skipped.push({
      id: vmId,
      reason: "locked by another vmnic process",
    });
    return;
  }
  try {
    if (ctx.store.getVm(vmId)) {
      report.skipped.push({ id: vmId, reason: "recorded meanwhile" });
      return;
    }
    if (ctx.kernel.netnsExists(name, ctx.config.netnsDir)) {
      if (!includeLive) {
        // Listed as a stale file; someone mounted a netns there since.
        report.skipped.push({
          id: vmId,
          reason: `netns ${path} became live meanwhile: left alone ` +
            `(--include-unknown removes it)`,
        });
        return;
      }
      const owner = installOfTag(
        ctx.kernel.inNetns(path, (s) => netnsTag(s.conn)),
      );
      if (owner !== null && owner !== ctx.installId) {
        report.skipped.push({
          id: vmId,
          reason: `netns ${path} belongs to another vmnic install (${owner})`,
        });
        return;
      }
    }
    const live = ctx.kernel.netnsExists(name, ctx.config.netnsDir);
    deleteVmNetns(ctx, path);
    lock.releaseAndRemove();
    report.collected.push(vmId);
    if (live) {
      report.warnings.push({
        id: vmId,
        warning: `netns ${path} removed without CNI DEL (no record of what ` +
          `was added in it): IPAM leases of its NICs may stay`,
      });
    }
  } catch (e) {
    report.errors.push({
      id: vmId,
      error: reasonOf(toVmnicError("gc", vmId, e)),
    });
  } finally {
    // Skipped (another install's netns): no lock file of ours stays for it.
    if (!hasRecords(ctx, vmId)) {
      try {
        lock.releaseAndRemove();
      } catch { /* tidiness only */ }
    }
    lock.release();
  }
}

/**
 * Record backups of VMs the database has no record of and whose netns is
 * gone: written before a COMMIT a crash cut off (a VM's first record is
 * written before its netns is made). Each is removed under the VM's lock (a
 * VM another process is adding right now holds it, and its backup is no
 * orphan). Backups of netns still there are kept: with the database lost,
 * they are what `restore-records` rebuilds it from.
 */
async function removeOrphanBackups(
  ctx: ProviderContext,
  active: ReadonlySet<string>,
): Promise<void> {
  const recorded = new Set(ctx.store.listVmIds());
  for (const vmId of ctx.store.backups().vmIds) {
    if (recorded.has(vmId) || active.has(vmId)) continue;
    if (!vmId.startsWith(SLOT_PREFIX) && !isVmId(vmId)) continue;
    const name = ctx.config.netnsPrefix + vmId;
    if (ctx.kernel.netnsExists(name, ctx.config.netnsDir)) continue;
    const lock = await lockVm(ctx, "gc", vmId, 0).catch(() => null);
    if (!lock) continue; // in use: its backup may be about to be committed
    try {
      ctx.store.dropOrphanBackup(vmId);
    } catch {
      /* tidiness only */
    } finally {
      if (!hasRecords(ctx, vmId)) {
        try {
          lock.releaseAndRemove();
        } catch { /* tidiness only */ }
      }
      lock.release();
    }
  }
}

/** Lock files of VMs with no record and no netns: nothing left to lock. */
async function removeStaleLocks(
  ctx: ProviderContext,
  active: ReadonlySet<string>,
): Promise<void> {
  const recorded = new Set(ctx.store.listVmIds());
  for (const vmId of lockedVmIds(ctx.config.runDir)) {
    if (recorded.has(vmId) || active.has(vmId)) continue;
    // A pool slot's lock is left by a crash right after its claim moved
    // the records to the VM (the slot is gone): it goes like a VM's.
    if (!vmId.startsWith(SLOT_PREFIX) && !isVmId(vmId)) continue;
    const name = ctx.config.netnsPrefix + vmId;
    if (ctx.kernel.netnsExists(name, ctx.config.netnsDir)) continue;
    const lock = await lockVm(ctx, "gc", vmId, 0).catch(() => null);
    if (!lock) continue; // in use: keep
    try {
      if (!ctx.store.getVm(vmId)) lock.releaseAndRemove();
    } finally {
      lock.release();
    }
  }
}
