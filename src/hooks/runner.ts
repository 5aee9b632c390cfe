/**
 * The hook runner: TS hooks from the registry and executables from the
 * hooks dir, merged into one order by file name, run one after another for
 * an event, each with a timeout, stopping at the first failure.
 *
 * @module
 */
import { after, type Timer } from "../sys/timers.ts";
import { HookConfigError, HookError, HookTimeoutError } from "./errors.ts";
import {
  compareNames,
  discoverExecHooks,
  type ExecHook,
  runExecHook,
  stillRunnable,
} from "./exec.ts";
import {
  HOOK_EVENTS,
  type HookContext,
  type HookEvent,
  type HookInfo,
  type HookInput,
  type HookRunReport,
  type TsHook,
} from "./types.ts";

/** The hooks dir on a host when none is configured. */
export const DEFAULT_HOOKS_DIR = "/etc/vmnic/hooks.d";

/** Per-hook timeout when the hook sets none. */
export const DEFAULT_HOOK_TIMEOUT_MS = 10_000;

/** Options of {@linkcode HookRunner}. */
export interface HookRunnerOptions {
  /** TS hooks by file name (normally `tsHooks` of `hooks/registry.ts`). */
  tsHooks?: Record<string, TsHook>;
  /** Dir of executable hooks; `null` for none. Default `/etc/vmnic/hooks.d`. */
  hooksDir?: string | null;
  /** Timeout of a hook that sets none. Default 10 000 ms. */
  defaultTimeoutMs?: number;
}

type Entry =
  | {
    kind: "ts";
    name: string;
    hook: TsHook;
    events: HookEvent[];
    timeoutMs: number;
  }
  | {
    kind: "exec";
    name: string;
    exec: ExecHook;
    events: HookEvent[];
    timeoutMs: number;
  };

/**
 * Runs hooks. The hooks dir is read and checked on every {@linkcode list}
 * and {@linkcode run}, so a hook added or made unsafe takes effect at the
 * next operation.
 */
export class HookRunner {
  readonly #ts: Entry[];
  readonly #dir: string | null;
  readonly #defaultTimeoutMs: number;

  /** A runner; throws `HookConfigError` for a badly declared TS hook. */
  constructor(opts: HookRunnerOptions = {}) {
    this.#defaultTimeoutMs = opts.defaultTimeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
    checkTimeout("default", this.#defaultTimeoutMs);
    this.#dir = opts.hooksDir === undefined ? DEFAULT_HOOKS_DIR : opts.hooksDir;
    this.#ts = Object.entries(opts.tsHooks ?? {}).map(([name, hook]) =>
      tsEntry(name, hook, this.#defaultTimeoutMs)
    );
  }

  /**
   * The hooks in effect, in run order. Throws `HookSecurityError` when the
   * hooks dir or a file in it is unsafe.
   */
  list(): Promise<HookInfo[]> {
    return Promise.resolve().then(() => this.snapshot().list());
  }

  /**
   * Runs every hook subscribed to `event`, in order, with `ctx` plus the
   * event. Stops at the first failure with a {@linkcode HookError} (or
   * {@linkcode HookTimeoutError}) naming the hook. All hooks are checked
   * before the first runs: an unsafe one means none runs.
   */
  async run(event: HookEvent, ctx: HookInput): Promise<HookRunReport[]> {
    checkEvent(event);
    return await this.snapshot().run(event, ctx);
  }

  /**
   * The hooks in effect now, read and checked once: what one operation
   * runs from its first event to its last, so that the dir is read once
   * per operation, not once per event. Throws `HookSecurityError` when the
   * hooks dir or a file in it is unsafe.
   */
  snapshot(): HookSet {
    const execs: Entry[] = this.#dir === null
      ? []
      : discoverExecHooks(this.#dir).map(
        (exec) => ({
          kind: "exec" as const,
          name: exec.name,
          exec,
          events: exec.events,
          timeoutMs: exec.timeoutMs ?? this.#defaultTimeoutMs,
        }),
      );
    // Stable sort: on equal names TS hooks come first.
    return new EntrySet(
      [...this.#ts, ...execs].sort((a, b) => compareNames(a.name, b.name)),
    );
  }
}

/** The hooks of one moment, in run order ({@linkcode HookRunner.snapshot}). */
export interface HookSet {
  /** The hooks, in run order. */
  list(): HookInfo[];
  /** Whether a hook is subscribed to `event`. */
  has(event: HookEvent): boolean;
  /** As {@linkcode HookRunner.run}, with these hooks. */
  run(event: HookEvent, ctx: HookInput): Promise<HookRunReport[]>;
}

class EntrySet implements HookSet {
  readonly #listed: readonly Entry[];
  #running: readonly Entry[] | undefined;

  constructor(listed: readonly Entry[]) {
    this.#listed = listed;
  }

  /** The listed hooks that run: all but idle TS hooks, asked once. */
  get #entries(): readonly Entry[] {
    return this.#running ??= this.#listed.filter((e) =>
      e.kind === "exec" || isActive(e.name, e.hook)
    );
  }

  list(): HookInfo[] {
    return this.#listed.map((e) => ({
      name: e.name,
      kind: e.kind,
      ...(e.kind === "exec" ? { path: e.exec.path } : {}),
      events: [...e.events],
      timeoutMs: e.timeoutMs,
      ...(e.kind === "ts" && isIdle(e.name, e.hook)
        ? { idle: true as const }
        : {}),
    }));
  }

  has(event: HookEvent): boolean {
    return this.#entries.some((e) => e.events.includes(event));
  }

  async run(event: HookEvent, ctx: HookInput): Promise<HookRunReport[]> {
    checkEvent(event);
    const entries = this.#entries.filter((e) => e.events.includes(event));
    const reports: HookRunReport[] = [];
    if (!entries.length) return reports;
    const context: HookContext = { ...ctx, event };
    for (const e of entries) {
      const start = performance.now();
      const report: HookRunReport = {
        name: e.name,
        kind: e.kind,
        event,
        durationMs: 0,
      };
      if (e.kind === "exec") {
        if (!stillRunnable(e.exec)) continue; // removed since the snapshot
        Object.assign(report, await runExecHook(e.exec, context, e.timeoutMs));
      } else {
        await runTsHook(e.name, e.hook, context, e.timeoutMs);
      }
      report.durationMs = performance.now() - start;
      reports.push(report);
    }
    return reports;
  }
}

/**
 * Whether a TS hook says it is idle, for listings: one whose `active()`
 * fails is not (the operations it would run in say why).
 */
function isIdle(name: string, hook: TsHook): boolean {
  try {
    return !isActive(name, hook);
  } catch {
    return false;
  }
}

/**
 * A TS hook's `active()`; one that throws, or answers anything but a
 * boolean, is a HookConfigError naming it (never silently skipped: it may
 * be a veto).
 */
function isActive(name: string, hook: TsHook): boolean {
  if (!hook.active) return true;
  let active: unknown;
  try {
    active = hook.active();
  } catch (e) {
    throw new HookConfigError(
      name,
      `active() failed: ${e instanceof Error ? e.message : e}`,
    );
  }
  if (typeof active === "boolean") return active;
  throw new HookConfigError(
    name,
    `active() must return true or false, not ${JSON.stringify(active)}`,
  );
}

function checkEvent(event: HookEvent): void {
  if (!HOOK_EVENTS.includes(event)) {
    throw new HookConfigError(
      "runner",
      `unknown event ${JSON.stringify(event)}`,
    );
  }
}

function tsEntry(name: string, hook: TsHook, defaultTimeoutMs: number): Entry {
  if (typeof hook?.run !== "function") {
    throw new HookConfigError(
      name,
      "has no run() function (default-export a TsHook)",
    );
  }
  const events = hook.events ?? HOOK_EVENTS;
  const bad = events.filter((e) => !HOOK_EVENTS.includes(e));
  if (bad.length) {
    throw new HookConfigError(
      name,
      `unknown events ${JSON.stringify(bad)}; known: ${HOOK_EVENTS.join(", ")}`,
    );
  }
  if (hook.active !== undefined && typeof hook.active !== "function") {
    throw new HookConfigError(name, "active must be a function");
  }
  const timeoutMs = hook.timeoutMs ?? defaultTimeoutMs;
  checkTimeout(name, timeoutMs);
  return {
    kind: "ts",
    name,
    hook,
    events: HOOK_EVENTS.filter((e) => events.includes(e)),
    timeoutMs,
  };
}

function checkTimeout(name: string, ms: number): void {
  if (!(Number.isFinite(ms) && ms > 0)) {
    throw new HookConfigError(
      name,
      `timeout must be a positive number of ms, got ${ms}`,
    );
  }
}

/**
 * Runs a TS hook on a frozen copy of the context, so it cannot change what
 * the provider or later hooks see. Past its timeout it is abandoned: its
 * signal aborts and the runner moves on.
 */
async function runTsHook(
  name: string,
  hook: TsHook,
  ctx: HookContext,
  timeoutMs: number,
): Promise<void> {
  const failure = { hook: name, event: ctx.event, kind: "ts" as const };
  const abort = new AbortController();
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = after(timeoutMs, () => {
      const err = new HookTimeoutError(failure, timeoutMs);
      abort.abort(err);
      reject(err);
    });
  });
  try {
    await Promise.race([
      (async () =>
        await hook.run(deepFreeze(structuredClone(ctx)), abort.signal))(),
      timeout,
    ]);
  } catch (err) {
    if (err instanceof HookTimeoutError) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw new HookError(failure, reason, { cause: err });
  } finally {
    timer?.cancel();
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
