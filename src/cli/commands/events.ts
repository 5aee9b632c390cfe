/**
 * `vmnic events [--vm ID] [--since DURATION|TIME] [--op OP] [--failed]
 * [--limit N] [--follow]` / `GET /v1/events`: the event log
 * (docs/events.md).
 *
 * @module
 */
import { InvalidInputError } from "../../provider/errors.ts";
import { validateVmId } from "../../provider/validate.ts";
import type { EventFilter, EventRecord } from "../../store/events.ts";
import { str, UsageError } from "../args.ts";
import { defineCommand } from "../command.ts";
import { onlyQuery, queryFlag } from "../http_input.ts";
import { arr, eventRecord, int, str as strS } from "../schemas.ts";

interface EventsInput {
  filter: EventFilter;
  follow: boolean;
}

/** Units of `--since 10m`. */
const UNIT_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
/** Default number of events listed. */
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 100_000;
/** Known operations, for the error on a typo. */
const OPS = [
  "prepare",
  "add",
  "remove",
  "delete",
  "recover",
  "quiesce",
  "unquiesce",
  "gc",
  "pool-fill",
  "policy",
];

/** `10m`, `2h`, `1d`, `30s`, or an ISO 8601 time, as an ISO time. */
export function parseSince(
  text: string,
  now = Date.now(),
  localTime: (text: string) => number = Date.parse,
): string {
  const m = /^(\d+)([smhd])$/.exec(text);
  if (m) return new Date(now - Number(m[1]) * UNIT_MS[m[2]]).toISOString();
  // A date alone, or a time with its offset, means the same everywhere;
  // a time without one is the caller's local time.
  const zoned = /^\d{4}-\d{2}-\d{2}$/.test(text) ||
    /(?:Z|[+-]\d{2}:?\d{2})$/i.test(text);
  const t = zoned ? Date.parse(text) : localTime(text);
  if (/^\d{4}-\d{2}-\d{2}/.test(text) && Number.isFinite(t)) {
    return new Date(t).toISOString();
  }
  throw new InvalidInputError(
    "events",
    "since",
    `invalid --since ${JSON.stringify(text)}: expected a duration (30s, ` +
      `10m, 2h, 1d) or an ISO 8601 time (2026-12-01T10:00:00Z)`,
  );
}

function toInput(
  f: {
    vm?: string;
    since?: string;
    op?: string;
    failed: boolean;
    limit?: string;
    follow: boolean;
  },
  bad: (msg: string) => Error,
  localTime?: (text: string) => number,
): EventsInput {
  const filter: EventFilter = {};
  if (f.vm !== undefined) {
    validateVmId("events", f.vm);
    filter.vmId = f.vm;
  }
  if (f.since !== undefined) {
    filter.since = parseSince(f.since, Date.now(), localTime);
  }
  if (f.op !== undefined) {
    if (!OPS.includes(f.op) && !f.op.startsWith("watch:")) {
      throw bad(
        `unknown operation ${JSON.stringify(f.op)}; known: ${
          OPS.join(", ")
        }, watch:*`,
      );
    }
    filter.op = f.op;
  }
  if (f.failed) filter.failed = true;
  if (f.limit !== undefined) {
    const n = Number(f.limit);
    if (!/^\d+$/.test(f.limit) || n > MAX_LIMIT) {
      throw bad(`invalid limit ${JSON.stringify(f.limit)}: 0–${MAX_LIMIT}`);
    }
    filter.limit = n;
  } else filter.limit = DEFAULT_LIMIT;
  return { filter, follow: f.follow };
}

/** One event as a line: time, operation, VM/NIC, outcome, duration, phases. */
function eventLine(e: EventRecord): string {
  const what = e.vmId === null
    ? "-"
    : e.index === null
    ? e.vmId
    : `${e.vmId}/${e.index}`;
  const phases = [...e.phases]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 4)
    .map((p) => `${p.name} ${p.ms.toFixed(1)}`)
    .join(", ");
  return `${e.time}  ${e.op.padEnd(9)} ${what.padEnd(14)} ` +
    `${e.outcome === "ok" ? "ok    " : "FAILED"} ${
      e.durationMs.toFixed(1).padStart(7)
    } ms  [${phases}]  trace ${e.traceId}` +
    (e.error ? `\n    ${e.error}` : "");
}

export default defineCommand({
  name: "events",
  usage:
    "vmnic events [--vm ID] [--since DURATION|TIME] [--op OP] [--failed] [--limit N] [--follow]",
  positionals: [0, 0],
  options: {
    vm: { type: "string", value: "ID", help: "only this VM's events" },
    since: {
      type: "string",
      value: "WHEN",
      help: "only events since a duration ago (30s, 10m, 2h, 1d) or a time",
    },
    op: {
      type: "string",
      value: "OP",
      help: "only this operation's (add, delete, gc, pool-fill, …)",
    },
    failed: { type: "boolean", help: "only operations that failed" },
    limit: {
      type: "string",
      value: "N",
      help:
        `the newest N (default ${DEFAULT_LIMIT}; with --follow, 0 for none of the past)`,
    },
    follow: {
      type: "boolean",
      help: "then print each new event as it is recorded, until interrupted",
    },
  },
  details: [
    "Each event: when, the operation, the VM (and NIC), the outcome, how",
    "long it took and its slowest phases, its trace id; --json gives all",
    "phases (docs/events.md). With --follow and --json, one JSON object per",
    "line.",
  ].join("\n"),
  parse(p, io) {
    return toInput(
      {
        vm: str(p, "vm"),
        since: str(p, "since"),
        op: str(p, "op"),
        failed: p.values.failed === true,
        limit: str(p, "limit"),
        follow: p.values.follow === true,
      },
      (msg) => new UsageError(msg, "events"),
      io.localTime,
    );
  },
  run: (i, { provider }) => provider.events(i.filter),
  human: (events) =>
    events.length ? events.map(eventLine).join("\n") : "no events",
  follow: {
    when: (i) => i.follow,
    items: (i, provider, signal) => provider.followEvents(i.filter, signal),
    line: (e) => eventLine(e as EventRecord),
  },
  http: {
    method: "GET",
    path: "/v1/events",
    query: {
      vm: { schema: strS, description: "only this VM's events" },
      since: {
        schema: strS,
        description: "a duration ago (30s, 10m, 2h, 1d) or an ISO time",
      },
      op: { schema: strS, description: "only this operation's" },
      failed: { schema: { type: "boolean" }, description: "only failures" },
      limit: { schema: int, description: "the newest N (default 100)" },
      follow: {
        schema: { type: "boolean" },
        description:
          "stream: newline-delimited JSON, one event per line, until the client disconnects",
      },
    },
    response: arr(eventRecord),
    input({ query }) {
      onlyQuery("events", "*", query, [
        "vm",
        "since",
        "op",
        "failed",
        "limit",
        "follow",
      ]);
      return toInput({
        vm: query.vm,
        since: query.since,
        op: query.op,
        failed: queryFlag("events", "*", query, "failed"),
        limit: query.limit,
        follow: queryFlag("events", "*", query, "follow"),
      }, (msg) => new InvalidInputError("events", "*", msg));
    },
    request: (i) => ({
      params: {},
      query: {
        ...(i.filter.vmId ? { vm: i.filter.vmId } : {}),
        ...(i.filter.since ? { since: i.filter.since } : {}),
        ...(i.filter.op ? { op: i.filter.op } : {}),
        ...(i.filter.failed ? { failed: "true" } : {}),
        ...(i.filter.limit !== undefined
          ? { limit: String(i.filter.limit) }
          : {}),
        ...(i.follow ? { follow: "true" } : {}),
      },
    }),
  },
});
