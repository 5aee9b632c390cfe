/**
 * The event log: one row per operation (what, on which VM and NIC, how it
 * ended, how long each phase took, under which trace), kept within bounds
 * of age and count (docs/events.md). Writes are single autocommit inserts,
 * outside any record transaction: an event never holds up or undoes the
 * operation it describes.
 *
 * @module
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";

/** How long one phase of an operation took. */
export interface PhaseTiming {
  /** `lock`, `netns`, `netlink`, `store`, `plugin:<type>:<CMD>`, `hook:<name>:<event>`, `hooks`. */
  name: string;
  /** Milliseconds (summed when the phase ran more than once). */
  ms: number;
  /** How many times it ran. */
  count: number;
}

/** One operation as the log keeps it. */
export interface EventRecord {
  /** Increasing id (the `--follow` cursor). */
  id: number;
  /** ISO 8601 time the operation started. */
  time: string;
  /** The operation: `add`, `remove`, `delete`, `recover`, `quiesce`, `gc`, `pool-fill`, … */
  op: string;
  /** The VM (or pool slot), when the operation concerns one. */
  vmId: string | null;
  /** The NIC index, when the operation concerns exactly one NIC. */
  index: number | null;
  /** How it ended. */
  outcome: "ok" | "failed";
  /** Why it failed. */
  error: string | null;
  /** Wall time of the whole operation, ms. */
  durationMs: number;
  /** Phases, in the order they first ran. */
  phases: PhaseTiming[];
  /** The W3C trace id (32 hex digits). */
  traceId: string;
  /** The `traceparent` vmnic passed on (its own span as parent). */
  traceparent: string;
}

/** What to read back. */
export interface EventFilter {
  /** Only this VM's. */
  vmId?: string;
  /** Only this operation's. */
  op?: string;
  /** Only failures. */
  failed?: boolean;
  /** Only events at or after this ISO time. */
  since?: string;
  /** Only events with a larger id. */
  afterId?: number;
  /** At most this many, the newest (default 1000). */
  limit?: number;
}

/** Bounds of the log. */
export interface EventRetention {
  /** Events older than this go (ms). */
  maxAgeMs: number;
  /** Beyond this many, the oldest go. */
  maxCount: number;
}

/** Defaults: a week, and 100 000 events (about 40 MB). */
export const DEFAULT_EVENT_RETENTION: EventRetention = {
  maxAgeMs: 7 * 24 * 3600 * 1000,
  maxCount: 100_000,
};

/** Largest `limit` a query takes. */
const MAX_LIMIT = 100_000;
/** The log is trimmed every this many inserts (and when opened). */
const TRIM_EVERY = 256;

/** The events table of one database. */
export class EventTable {
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #retention: EventRetention;
  #sinceTrim = 0;

  /** The table in `db` (created by the store's migrations). */
  constructor(db: DatabaseSync, retention = DEFAULT_EVENT_RETENTION) {
    this.#db = db;
    this.#retention = retention;
    this.#insert = db.prepare(
      `INSERT INTO events (time, op, vm_id, nic_index, outcome, error,
         duration_ms, phases_json, trace_id, traceparent)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  /** Appends one event; returns its id. */
  insert(e: Omit<EventRecord, "id">): number {
    const r = this.#insert.run(
      e.time,
      e.op,
      e.vmId,
      e.index,
      e.outcome,
      e.error,
      e.durationMs,
      JSON.stringify(e.phases),
      e.traceId,
      e.traceparent,
    );
    if (++this.#sinceTrim >= TRIM_EVERY) this.trim();
    return Number(r.lastInsertRowid);
  }

  /** Appends events in one transaction; returns their ids, in order. */
  insertMany(events: readonly Omit<EventRecord, "id">[]): number[] {
    if (events.length === 1) return [this.insert(events[0])];
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const ids = events.map((e) => this.insert(e));
      this.#db.exec("COMMIT");
      return ids;
    } catch (err) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* not open any more */ }
      throw err;
    }
  }

  /** Events matching `f`, oldest first. */
  query(f: EventFilter = {}): EventRecord[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.vmId !== undefined) where.push("vm_id = ?"), args.push(f.vmId);
    if (f.op !== undefined) where.push("op = ?"), args.push(f.op);
    if (f.failed) where.push("outcome = 'failed'");
    if (f.since !== undefined) where.push("time >= ?"), args.push(f.since);
    if (f.afterId !== undefined) where.push("id > ?"), args.push(f.afterId);
    const limit = Math.min(Math.max(1, f.limit ?? 1000), MAX_LIMIT);
    const sql = `SELECT * FROM (SELECT * FROM events${
      where.length ? ` WHERE ${where.join(" AND ")}` : ""
    } ORDER BY id DESC LIMIT ${limit}) ORDER BY id`;
    return (this.#db.prepare(sql).all(...args) as unknown as Row[]).map(
      rowToEvent,
    );
  }

  /** The newest id, or 0. */
  lastId(): number {
    const row = this.#db.prepare("SELECT MAX(id) AS id FROM events").get() as
      | { id: number | null }
      | undefined;
    return Number(row?.id ?? 0);
  }

  /** Drops what is past the retention bounds. */
  trim(now = Date.now()): void {
    this.#sinceTrim = 0;
    const cutoff = new Date(now - this.#retention.maxAgeMs).toISOString();
    this.#db.prepare("DELETE FROM events WHERE time < ?").run(cutoff);
    this.#db.prepare(
      "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
    ).run(this.#retention.maxCount);
  }
}

interface Row {
  id: number | bigint;
  time: string;
  op: string;
  vm_id: string | null;
  nic_index: number | null;
  outcome: string;
  error: string | null;
  duration_ms: number;
  phases_json: string;
  trace_id: string;
  traceparent: string;
}

function rowToEvent(r: Row): EventRecord {
  return {
    id: Number(r.id),
    time: r.time,
    op: r.op,
    vmId: r.vm_id,
    index: r.nic_index === null ? null : Number(r.nic_index),
    outcome: r.outcome === "ok" ? "ok" : "failed",
    error: r.error,
    durationMs: r.duration_ms,
    phases: JSON.parse(r.phases_json),
    traceId: r.trace_id,
    traceparent: r.traceparent,
  };
}
