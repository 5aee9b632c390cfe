/**
 * W3C trace context for operations, and the per-phase timing each
 * operation's event carries (docs/events.md). An operation runs under its
 * own span: plugins and hooks get `00-<trace id>-<that span>-<flags>`.
 *
 * @module
 */
import type { PhaseTiming } from "../store/events.ts";
import { InvalidInputError } from "./errors.ts";

/** A parsed `traceparent` (W3C Trace Context, version 00). */
export interface TraceParent {
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** 16 lowercase hex digits, not all zero. */
  parentId: string;
  /** 2 hex digits (`01`: sampled). */
  flags: string;
}

const TRACEPARENT =
  /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Parses a `traceparent` header value. Throws {@linkcode InvalidInputError}
 * (naming `op` and `object`) for one that is not W3C trace context.
 */
export function parseTraceparent(
  value: string,
  op = "trace",
  object = "traceparent",
): TraceParent {
  const m = TRACEPARENT.exec(value.trim());
  const bad = (why: string) =>
    new InvalidInputError(
      op,
      object,
      `invalid traceparent ${JSON.stringify(value)}: ${why} ` +
        `(expected 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>)`,
    );
  if (!m) throw bad("not in the W3C format");
  const [, version, traceId, parentId, flags, rest] = m;
  if (version === "ff") throw bad("version ff is invalid");
  // Version 00 has exactly four fields; later versions may add more.
  if (version === "00" && rest !== undefined) throw bad("extra fields");
  if (/^0+$/.test(traceId)) throw bad("the trace id is all zeros");
  if (/^0+$/.test(parentId)) throw bad("the parent id is all zeros");
  return { traceId, parentId, flags };
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  // All zeros is invalid; 2^-64 odds, but cheap to rule out.
  return /^0+$/.test(s) ? randomHex(bytes) : s;
}

/** A new `traceparent` starting a trace (sampled). */
export function newTraceparent(): string {
  return `00-${randomHex(16)}-${randomHex(8)}-01`;
}

/** One operation's trace: its span, its start, and its phases. */
export class OpTrace {
  /** The trace id (the caller's, or a new one). */
  readonly traceId: string;
  /** This operation's span id. */
  readonly spanId: string;
  /** What plugins and hooks get: this span as their parent. */
  readonly traceparent: string;
  /** ISO time of the start. */
  readonly startedAt = new Date().toISOString();
  /** `performance.now()` at the start. */
  readonly started = performance.now();
  /** Plugin types whose runs failed (for the metrics). */
  readonly failedPlugins: string[] = [];
  /** Hooks that failed (for the metrics). */
  readonly failedHooks: string[] = [];
  readonly #phases = new Map<string, PhaseTiming>();
  #depth = 0;

  /** A trace under `parent` (a `traceparent`), or a new trace. */
  constructor(parent?: string) {
    const p = parent ? parseTraceparent(parent) : null;
    this.traceId = p?.traceId ?? randomHex(16);
    this.spanId = randomHex(8);
    this.traceparent = `00-${this.traceId}-${this.spanId}-${p?.flags ?? "01"}`;
  }

  /** Adds `ms` to phase `name`. */
  add(name: string, ms: number): void {
    const p = this.#phases.get(name);
    if (p) {
      p.ms += ms;
      p.count++;
    } else this.#phases.set(name, { name, ms, count: 1 });
  }

  /**
   * Runs synchronous `fn` as phase `name`. A timed call inside another
   * (a store write inside a transaction) is part of the outer phase.
   */
  timeSync<T>(name: string, fn: () => T): T {
    if (this.#depth > 0) return fn();
    this.#depth++;
    const start = performance.now();
    try {
      return fn();
    } finally {
      this.#depth--;
      this.add(name, performance.now() - start);
    }
  }

  /** Runs `fn` as phase `name`, awaiting it. */
  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await fn();
    } finally {
      this.add(name, performance.now() - start);
    }
  }

  /** The phases so far, in the order they first ran (ms rounded to µs). */
  phases(): PhaseTiming[] {
    return [...this.#phases.values()].map((p) => ({
      ...p,
      ms: Math.round(p.ms * 1000) / 1000,
    }));
  }

  /** Milliseconds since the start. */
  elapsed(): number {
    return performance.now() - this.started;
  }
}

/**
 * `target` with every method call timed into `trace` as the phase
 * `phaseOf(method)` (synchronous methods only: the store's and the
 * kernel's).
 */
export function timed<T extends object>(
  target: T,
  trace: OpTrace,
  phaseOf: (method: string) => string,
): T {
  const cache = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(t, key) {
      const v = Reflect.get(t, key, t);
      if (typeof v !== "function") return v;
      let wrapped = cache.get(key);
      if (!wrapped) {
        const phase = phaseOf(String(key));
        wrapped = (...args: unknown[]) =>
          trace.timeSync(
            phase,
            () => (v as (...a: unknown[]) => unknown).apply(t, args),
          );
        cache.set(key, wrapped);
      }
      return wrapped;
    },
  });
}
