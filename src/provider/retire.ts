/**
 * The one way a NIC leaves (docs/state-machine.md): marked `deleting`, its
 * plumbing undone, CNI DEL run with the config and result its ADD used,
 * its record dropped, its `afterRemove` hooks told. Add's rollback, remove,
 * delete, gc and the finishing of NICs a crash left behind all go through
 * {@linkcode retireNic}; recover's rebuild uses its release step alone.
 *
 * @module
 */
import { basename, dirname } from "../sys/path.ts";
import { parseConfList } from "../cni/config.ts";
import type { CniResult } from "../cni/result.ts";
import type { HookOperation } from "../hooks/types.ts";
import type { NicRecord } from "../store/types.ts";
import {
  deleteLink,
  restoreVethAddrs,
  unplumbNic,
  unwireTap,
} from "../wiring/nic.ts";
import { unplumbClonePath } from "../wiring/clone_path.ts";
import type { NetnsScope } from "../wiring/kernel.ts";
import { pluginRunOptions, type ProviderContext, runHook } from "./context.ts";
import { messageOf, reasonOf } from "./errors.ts";
import { hookFields } from "./records.ts";

/** How a NIC is retired. */
export interface RetireOptions {
  /** The operation, for hooks and messages. */
  op: HookOperation;
  /**
   * Remove the TAP and redirects first. Off for a whole VM, whose netns
   * goes right after (its devices go with it, without the kernel's
   * per-device unregister wait).
   */
  unplumb: boolean;
  /** Tell `afterRemove` hooks (the NIC had been announced by `afterAdd`). */
  announce: boolean;
  /**
   * CNI ADD may have run. False when it cannot have (its plugins were not
   * even found): DEL would fail the same way and strand the record.
   */
  cniAdded?: boolean;
  /** Drop the record even when CNI DEL keeps failing (reported as a warning). */
  force?: boolean;
}

/** What became of a NIC. */
export interface RetireOutcome {
  /** The NIC and its record are gone. */
  gone: boolean;
  /** Why not (the NIC is then recorded `failed` with it). */
  error?: string;
  /** Failed `afterRemove` hooks; what `force` dropped; a fallback DEL used. */
  warnings: string[];
  /**
   * Not gone, but the kernel and the plugins let go of it: only its record
   * is left (it could not be written), for the next run to drop.
   */
  recordOnly?: boolean;
}

/** Retires one NIC. Never throws for a teardown failure: see the outcome. */
export async function retireNic(
  ctx: ProviderContext,
  rec: NicRecord,
  opts: RetireOptions,
): Promise<RetireOutcome> {
  const { store } = ctx;
  const nic = `NIC ${rec.index}`;
  // A record that cannot be written (a full disk, a busy database) never
  // stops the teardown: the kernel and the plugins are undone all the same
  // and the record stays as it was, for the next run to finish.
  const recordFailures: string[] = [];
  const write = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      recordFailures.push(`${what}: ${messageOf(e)}`);
    }
  };
  if (rec.state !== "deleting") {
    write(
      "marking it deleting",
      () => store.setNicState(rec.vmId, "deleting", { indices: [rec.index] }),
    );
  }
  await ctx.fault("retire:marked");
  const released = await releaseNic(ctx, rec, opts);
  const warnings = [...released.warnings];
  if (released.error !== undefined) {
    if (!opts.force) {
      write("marking it failed", () =>
        store.setNicState(rec.vmId, "failed", {
          indices: [rec.index],
          error: released.error,
        }));
      return {
        gone: false,
        error: [released.error, ...recordFailures].join("; "),
        warnings,
      };
    }
    // The kernel side still goes: the veth (its host end with it).
    try {
      const dir = dirname(rec.netnsPath);
      if (ctx.kernel.netnsExists(basename(rec.netnsPath), dir)) {
        ctx.kernel.inNetns(rec.netnsPath, (scope) => {
          unplumbAny(scope, rec, false);
          deleteLink(scope.conn, rec.ifName, { ignoreMissing: true });
        });
      }
    } catch (e) {
      warnings.push(`${nic}: removing its devices: ${messageOf(e)}`);
    }
    warnings.push(
      `${nic}: dropped by --force although ${released.error}; the plugins ` +
        `may still hold what its ADD made (IP ${
          rec.ips.map((ip) => ip.address).join(", ") || "none recorded"
        }, container id ${rec.containerId}, ${rec.ifName})`,
    );
  }
  write("removing its record", () => store.deleteNic(rec.vmId, rec.index));
  if (recordFailures.length) {
    return {
      gone: false,
      recordOnly: true,
      error: `undone in the kernel and the plugins, but its record could ` +
        `not be updated (${recordFailures.join("; ")})`,
      warnings,
    };
  }
  if (opts.announce) {
    try {
      await runHook(ctx, "afterRemove", {
        ...hookFields(rec),
        operation: opts.op,
      });
    } catch (e) {
      warnings.push(`${nic}: afterRemove hook: ${reasonOf(e)}`);
    }
  }
  return { gone: true, warnings };
}

/**
 * Removes a NIC's plumbing: the TC redirects (and the TAP), or for a clone
 * NIC its routed path (nft tables, routes, rule, and the TAP). `keepTap`
 * leaves the TAP (a rebuild around a TAP a hypervisor holds).
 */
function unplumbAny(scope: NetnsScope, rec: NicRecord, keepTap: boolean): void {
  const pair = { veth: rec.ifName, tap: rec.tap };
  if (rec.guest) {
    const guest = rec.guest.ips.find((ip) => ip.version === 4);
    unplumbClonePath(scope, {
      ...pair,
      index: rec.index,
      ...(guest ? { guest } : {}),
    }, { keepTap });
  } else if (keepTap) unwireTap(scope.conn, pair);
  else unplumbNic(scope.conn, pair);
}

/**
 * Undoes a NIC in the kernel and in the plugins, leaving its record as it
 * is: plumbing (optionally), the veth's addresses put back for the
 * plugins' DEL, then CNI DEL with the recorded config. When that fails and
 * the network's current conflist differs (an operator fixed a typo), DEL
 * is tried with it too.
 */
export async function releaseNic(
  ctx: ProviderContext,
  rec: NicRecord,
  opts: { unplumb: boolean | "redirects"; cniAdded?: boolean },
): Promise<{ error?: string; warnings: string[] }> {
  const warnings: string[] = [];
  // The record's own netns: settings (prefix, dir) may have changed since.
  const dir = dirname(rec.netnsPath);
  if (ctx.kernel.netnsExists(basename(rec.netnsPath), dir)) {
    try {
      ctx.kernel.inNetns(rec.netnsPath, (scope) => {
        if (opts.unplumb) {
          // "redirects": the TAP stays (a hypervisor may hold it).
          unplumbAny(scope, rec, opts.unplumb === "redirects");
        }
        try {
          restoreVethAddrs(
            scope.conn,
            rec.ifName,
            rec.ips.map((ip) => `${ip.address}/${ip.prefix}`),
          );
        } catch {
          // Only a help for the plugins' DEL: never a reason to skip it.
        }
      });
    } catch (e) {
      return { error: `undoing its plumbing: ${messageOf(e)}`, warnings };
    }
  }
  await ctx.fault("retire:unplumbed");
  if (opts.cniAdded === false) return { warnings };
  const rt = {
    containerId: rec.containerId,
    netns: rec.netnsPath,
    ifName: rec.ifName,
    // What ADD got, again (portmap finds its rules by them).
    ...(rec.capabilityArgs ? { capabilityArgs: rec.capabilityArgs } : {}),
    ...pluginRunOptions(ctx, rec.vmId),
  };
  const prev = (rec.cniResult as CniResult | null) ?? undefined;
  try {
    const list = parseConfList(
      rec.cniConfig,
      `record of ${rec.vmId}/${rec.index}`,
    );
    await ctx.cni.delNetworkList(list, rt, prev);
  } catch (first) {
    const current = await ctx.networks.current(rec.network);
    if (!current || current.raw === rec.cniConfig) {
      return { error: `CNI DEL failed: ${messageOf(first)}`, warnings };
    }
    try {
      await ctx.cni.delNetworkList(current, rt, prev);
      warnings.push(
        `NIC ${rec.index}: CNI DEL with the config of its ADD failed ` +
          `(${messageOf(first)}); DEL with the current conflist of network ` +
          `${rec.network} (${current.source}) succeeded`,
      );
    } catch (second) {
      return {
        error: `CNI DEL failed: ${messageOf(first)}; with the current ` +
          `conflist too: ${messageOf(second)}`,
        warnings,
      };
    }
  }
  await ctx.fault("retire:cni-deleted");
  return { warnings };
}
