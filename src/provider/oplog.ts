/**
 * Each operation under its trace, recorded in the event log when it ends
 * (docs/events.md): the context an operation works with times its store
 * and kernel calls, its plugins and its hooks; the event carries those
 * phases, the outcome and the trace. Recording never fails an operation.
 *
 * @module
 */
import { after } from "../sys/timers.ts";
import type { EventRecord } from "../store/events.ts";
import type { ProviderContext } from "./context.ts";
import { reasonOf } from "./errors.ts";
import { OpTrace, timed } from "./trace.ts";

/** Kernel methods by phase; the rest is work over netlink. */
const NETNS_METHODS = new Set([
  "ensureNetns",
  "deleteNetns",
  "renameNetns",
  "netnsExists",
  "listNetns",
  "netnsDirPropagates",
  "releaseNetnsDir",
]);

/** `ctx` as one operation sees it: its trace, timed store and kernel. */
export function tracedContext(
  ctx: ProviderContext,
  trace: OpTrace,
): ProviderContext {
  return {
    ...ctx,
    trace,
    store: timed(ctx.store, trace, () => "store"),
    kernel: timed(
      ctx.kernel,
      trace,
      (m) => NETNS_METHODS.has(m) ? "netns" : "netlink",
    ),
  };
}

/** What {@linkcode tracedOp} records besides the outcome. */
export interface OpInfo {
  /** The NIC, when the operation concerns exactly one. */
  index?: number | null;
  /**
   * False: run traced, record no event (read-only operations). A function
   * decides when the operation ends (e.g. gc skipping a busy VM).
   */
  record?: boolean | (() => boolean);
}

/**
 * Runs `fn` as operation `op` on `vmId` under a new span of the caller's
 * trace (or a new trace), then records its event. An operation already
 * traced (one operation calling another's steps) keeps its trace.
 */
export async function tracedOp<T>(
  ctx: ProviderContext,
  op: string,
  vmId: string | null,
  fn: (ctx: ProviderContext) => Promise<T>,
  info: OpInfo = {},
): Promise<T> {
  // An operation inside another is part of it.
  if (ctx.trace || ctx.scope) return await fn(ctx);
  // No log, no listener, no caller's trace: nothing would see a trace.
  if (
    ctx.config.eventRetention === null && ctx.listeners.size === 0 &&
    !ctx.traceparent
  ) {
    return await fn({ ...ctx, scope: {} });
  }
  const trace = new OpTrace(ctx.traceparent);
  const tctx = { ...tracedContext(ctx, trace), scope: {} };
  const wanted = () =>
    typeof info.record === "function" ? info.record() : info.record !== false;
  try {
    const out = await fn(tctx);
    if (wanted()) recordEvent(ctx, trace, op, vmId, info, null);
    return out;
  } catch (err) {
    if (wanted()) recordEvent(ctx, trace, op, vmId, info, err);
    throw err;
  }
}

function recordEvent(
  ctx: ProviderContext,
  trace: OpTrace,
  op: string,
  vmId: string | null,
  info: OpInfo,
  err: unknown,
): void {
  const event: Omit<EventRecord, "id"> = {
    time: trace.startedAt,
    op,
    vmId,
    index: info.index ?? null,
    outcome: err === null ? "ok" : "failed",
    error: err === null ? null : reasonOf(err),
    durationMs: Math.round(trace.elapsed() * 1000) / 1000,
    phases: trace.phases(),
    traceId: trace.traceId,
    traceparent: trace.traceparent,
  };
  // Written once the operation has answered (a timer, or the provider's
  // next read or close): its own time carries no database write.
  const queue = ctx.pendingEvents;
  queue.events.push({
    event,
    detail: {
      failedPlugins: trace.failedPlugins,
      failedHooks: trace.failedHooks,
    },
  });
  queue.timer ??= after(0, () => flushEvents(ctx));
}

/**
 * Writes the events recorded but not written yet, then tells the listeners
 * of each (with its id). Never throws: the log is a witness, never a reason
 * for an operation to fail.
 */
export function flushEvents(ctx: ProviderContext): void {
  const queue = ctx.pendingEvents;
  queue.timer?.cancel();
  queue.timer = undefined;
  const batch = queue.events.splice(0);
  if (!batch.length) return;
  let ids: number[] = batch.map(() => 0);
  try {
    if (ctx.config.eventRetention !== null) {
      ids = ctx.store.events().insertMany(batch.map((b) => b.event));
    }
  } catch { /* dropped: never the operation */ }
  batch.forEach(({ event, detail }, i) => {
    for (const listen of ctx.listeners) {
      try {
        listen({ id: ids[i], ...event }, detail);
      } catch { /* a listener's trouble is its own */ }
    }
  });
}
