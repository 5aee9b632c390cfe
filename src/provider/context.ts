/**
 * What every part of the provider works with: the settings, the record
 * store, the CNI runtime, the hook runner, the kernel, the networks, and
 * the process's wish to stop. Built once by `CniProvider.open`; each
 * operation module (lifecycle, recover, queries, gc) takes it as its first
 * argument.
 *
 * @module
 */
import type { Timer } from "../sys/timers.ts";
import type { CniRuntime } from "../cni/runtime.ts";
import type { HookRunner, HookSet } from "../hooks/runner.ts";
import type { HookEvent, HookInput, HookRunReport } from "../hooks/types.ts";
import type { RuntimeConf } from "../cni/runtime.ts";
import { acquireVmLock, lockHolder, type VmLock } from "../store/locks.ts";
import type { Store } from "../store/store.ts";
import { type Kernel, netnsPath } from "../wiring/kernel.ts";
import type { ResolvedConfig } from "./config.ts";
import {
  InterruptedError,
  OperationError,
  toVmnicError,
  VmBusyError,
} from "./errors.ts";
import type { FaultPoint } from "./faults.ts";
import type { Networks } from "./networks.ts";
import type { Pool } from "./pool.ts";
import type { EventRecord } from "../store/events.ts";
import type { OpTrace } from "./trace.ts";
import { type OpInfo, tracedOp } from "./oplog.ts";
import { checkPrefixClaim, claimPrefix } from "./ownership.ts";

/** What the failures of an operation were, besides its event. */
export interface EventDetail {
  /** Plugin types whose runs failed. */
  failedPlugins: readonly string[];
  /** Hooks that failed. */
  failedHooks: readonly string[];
}

/** Told of each event as it is recorded. */
export type EventListener = (e: EventRecord, detail: EventDetail) => void;

/** Where a simulated crash can happen; production passes `faultPoint`. */
export type FaultHook = (point: FaultPoint) => void | Promise<void>;

/** The provider's parts, shared by its modules. */
export interface ProviderContext {
  /** The settings in effect. */
  readonly config: ResolvedConfig;
  /** The records. */
  readonly store: Store;
  /** Runs the CNI plugins. */
  readonly cni: CniRuntime;
  /** Runs the hooks. */
  readonly hooks: HookRunner;
  /** Netns, links, TAPs, TC. */
  readonly kernel: Kernel;
  /** The conflists (and the embedded network). */
  readonly networks: Networks;
  /** This install's id (the store's). */
  readonly installId: string;
  /** Aborted when the process is asked to stop (SIGTERM, SIGINT). */
  readonly signal?: AbortSignal;
  /** Crash points for the reliability tests. */
  readonly fault: FaultHook;
  /**
   * What holds for the provider's life once checked: the netns dir's mount
   * propagation (a process does not change mount namespace), and this
   * install's claim on its prefix (no other root dir can take it).
   */
  readonly memo: {
    propagation?: { ok: boolean; reason?: string };
    claimed?: boolean;
  };
  /** The warm pool, when the provider keeps one. */
  pool?: Pool;
  /** The VM locks this process holds now, by VM id. */
  readonly held: Map<string, VmLock>;
  /** The caller's W3C `traceparent` for the operations it starts. */
  readonly traceparent?: string;
  /** The running operation's trace (set in the context it works with). */
  readonly trace?: OpTrace;
  /** What the running operation reads once (set in the context it works with). */
  readonly scope?: OpScope;
  /** Told of every event as it is recorded (metrics, `events --follow`). */
  readonly listeners: Set<EventListener>;
  /** Events of finished operations not written yet (oplog.ts). */
  readonly pendingEvents: {
    events: { event: Omit<EventRecord, "id">; detail: EventDetail }[];
    timer?: Timer;
  };
}

/** What one operation reads once and keeps to its end. */
export interface OpScope {
  /** The hooks in effect when the operation first asked. */
  hooks?: HookSet;
}

/**
 * The hooks of the running operation: the hooks dir is read and checked
 * once per operation (a hook added or made unsafe counts from the next).
 */
export function hooksOf(ctx: ProviderContext): HookSet {
  if (!ctx.scope) return ctx.hooks.snapshot();
  return ctx.scope.hooks ??= ctx.hooks.snapshot();
}

/**
 * What a plugin run for `vmId` reports as it starts: its pid goes into the
 * VM's lock file, so that should this process die, the next holder ends it
 * before anything else (an orphaned DEL must not undo the next add).
 */
export function spawnNoter(
  ctx: ProviderContext,
  vmId: string,
): (pid: number) => void {
  return (pid) => ctx.held.get(vmId)?.recordChild(pid);
}

/** The netns name of a VM: prefix + id. */
export function netnsNameOf(ctx: ProviderContext, vmId: string): string {
  return ctx.config.netnsPrefix + vmId;
}

/** The netns path of a VM. */
export function netnsPathOf(ctx: ProviderContext, vmId: string): string {
  return netnsPath(netnsNameOf(ctx, vmId), ctx.config.netnsDir);
}

/**
 * The CNI container id of a VM's attachments. It carries the install id,
 * so two installs never share an IPAM key, even on one network.
 */
export function containerIdOf(ctx: ProviderContext, vmId: string): string {
  return `vmnic-${ctx.installId}-${vmId}`;
}

/** What vmnic writes on the loopback of each netns it makes. */
export function netnsTagOf(ctx: ProviderContext): string {
  const tag = `vmnic ${ctx.installId} ${ctx.config.rootDir}`;
  return new TextEncoder().encode(tag).length <= 254
    ? tag
    : `vmnic ${ctx.installId}`;
}

/** The install id in a netns tag, or null when it is not vmnic's. */
export function installOfTag(tag: string | null): string | null {
  const m = /^vmnic ([0-9a-f]{8})(?: |$)/.exec(tag ?? "");
  return m ? m[1] : null;
}

/**
 * A step boundary: when the process has been asked to stop, the current
 * operation ends here (and rolls back what it began).
 */
export function checkpoint(
  ctx: ProviderContext,
  op: string,
  object: string,
): void {
  if (ctx.signal?.aborted) {
    throw new InterruptedError(
      op,
      object,
      `interrupted by ${String(ctx.signal.reason ?? "a signal")}`,
    );
  }
}

/**
 * Runs `fn` holding the VM's lock, waiting for it up to the configured
 * wait, as operation `op` on `vmId` under its trace (its event recorded
 * unless `info.record` is false); errors leave as vmnic errors of `op` on
 * `vmId`. `fn` gets the context to work with: the operation's.
 */
export function withVmLock<T>(
  ctx: ProviderContext,
  op: string,
  vmId: string,
  fn: (ctx: ProviderContext) => T | Promise<T>,
  info: OpInfo = {},
): Promise<T> {
  return tracedOp(ctx, op, vmId, async (tctx) => {
    let lock: VmLock | undefined;
    const sync = <R>(f: () => R): R =>
      tctx.trace ? tctx.trace.timeSync("lock", f) : f();
    try {
      lock = await timePhase(
        tctx,
        "lock",
        () => lockVm(ctx, op, vmId, ctx.config.lockWaitMs),
      );
      return await fn(tctx);
    } catch (e) {
      throw toVmnicError(op, vmId, e);
    } finally {
      sync(() => {
        // A VM this install has no record of keeps no lock file behind.
        if (
          lock && !ctx.store.getVm(vmId) &&
          !ctx.store.listNics({ vmId }).length
        ) {
          try {
            lock.releaseAndRemove();
          } catch { /* tidiness only */ }
        }
        lock?.release();
      });
    }
  }, info);
}

/**
 * The VM's lock, waiting up to `waitMs` (0: not at all). A busy VM is a
 * {@linkcode VmBusyError} naming the holder (pid, operation, since), with
 * or without a wait (docs/state-machine.md, "Processes").
 */
export async function lockVm(
  ctx: ProviderContext,
  op: string,
  vmId: string,
  waitMs: number,
): Promise<VmLock> {
  const lock = await acquireVmLock(ctx.config.runDir, vmId, {
    waitMs,
    op,
    signal: ctx.signal,
  });
  if (!lock) {
    const h = lockHolder(ctx.config.runDir, vmId);
    throw new VmBusyError(
      op,
      vmId,
      h ? `held by pid ${h.pid} (${h.op}) since ${h.since}` : undefined,
    );
  }
  ctx.held.set(vmId, lock);
  const forget = () => {
    if (ctx.held.get(vmId) === lock) ctx.held.delete(vmId);
  };
  return {
    name: lock.name,
    path: lock.path,
    release: () => {
      forget();
      lock.release();
    },
    releaseAndRemove: () => {
      forget();
      lock.releaseAndRemove();
    },
    recordChild: (pid) => lock.recordChild(pid),
  };
}

/** Refuses when netns made in the netns dir would vanish with this process. */
export function checkPropagation(ctx: ProviderContext, op: string): void {
  const p = ctx.memo.propagation ??= ctx.kernel.netnsDirPropagates(
    ctx.config.netnsDir,
  );
  if (!p.ok) throw new OperationError(op, ctx.config.netnsDir, p.reason!);
}

/**
 * Before an operation makes netns: they must outlive this process, and the
 * prefix must be this install's (docs/state-machine.md, "Ownership").
 */
export function mayMakeNetns(ctx: ProviderContext, op: string): void {
  timeChecks(ctx, () => {
    checkPropagation(ctx, op);
    if (ctx.memo.claimed) return;
    claimPrefix(op, ctx.config, ctx.installId);
    ctx.memo.claimed = true;
  });
}

/** Host checks (mount propagation, the prefix claim) as phase `checks`. */
function timeChecks(ctx: ProviderContext, fn: () => void): void {
  if (ctx.trace) ctx.trace.timeSync("checks", fn);
  else fn();
}

/**
 * What {@linkcode mayMakeNetns} checks, without claiming anything: an
 * operation refuses early when the prefix is another install's, and claims
 * it only once it is about to make something (a refused operation leaves
 * no claim behind).
 */
export function mayMakeNetnsCheck(ctx: ProviderContext, op: string): void {
  timeChecks(ctx, () => {
    checkPropagation(ctx, op);
    if (!ctx.memo.claimed) checkPrefixClaim(op, ctx.config);
  });
}

/**
 * Runs the hooks of `event`, with the operation's trace context; each hook's
 * time is a phase (`hook:<name>:<event>`), finding them and a failing one's
 * time another (`hooks:<event>`).
 */
export async function runHook(
  ctx: ProviderContext,
  event: HookEvent,
  input: HookInput,
): Promise<void> {
  const trace = ctx.trace;
  if (!trace) {
    await hooksOf(ctx).run(event, input);
    return;
  }
  const start = performance.now();
  let reports: HookRunReport[] = [];
  try {
    reports = await hooksOf(ctx).run(event, {
      ...input,
      traceparent: trace.traceparent,
    });
  } catch (e) {
    const hook = (e as { hook?: unknown }).hook;
    trace.failedHooks.push(typeof hook === "string" ? hook : "(hooks)");
    throw e;
  } finally {
    let named = 0;
    for (const r of reports) {
      trace.add(`hook:${r.name}:${event}`, r.durationMs);
      named += r.durationMs;
    }
    trace.add(`hooks:${event}`, performance.now() - start - named);
  }
}

/**
 * What every plugin run for `vmId` gets from its operation: its pid noted
 * in the VM's lock, the trace context in `TRACEPARENT`, its time as a
 * phase (`plugin:<type>:<COMMAND>`).
 */
export function pluginRunOptions(
  ctx: ProviderContext,
  vmId: string,
): Pick<RuntimeConf, "onSpawn" | "env" | "onPluginDone" | "onPhase"> {
  const trace = ctx.trace;
  return {
    onSpawn: spawnNoter(ctx, vmId),
    ...(trace
      ? {
        env: { TRACEPARENT: trace.traceparent },
        onPhase: (name, ms) => trace.add(name, ms),
        onPluginDone: (r) => {
          trace.add(`plugin:${r.type}:${r.command}`, r.ms);
          if (r.failed) trace.failedPlugins.push(r.type);
        },
      }
      : {}),
  };
}

/** Runs `fn` as phase `name` of the running operation, if it is traced. */
export function timePhase<T>(
  ctx: ProviderContext,
  name: string,
  fn: () => Promise<T>,
): Promise<T> {
  return ctx.trace ? ctx.trace.time(name, fn) : fn();
}
