/**
 * `vmnic gc (--active ID,... | --active-file F) [--dry-run] [--include-unknown]`
 * / `POST /v1/gc`.
 *
 * @module
 */
import { GcOrchestrator } from "../../provider/gc_orchestrator.ts";
import { InvalidInputError } from "../../provider/errors.ts";
import { isVmId } from "../../provider/validate.ts";
import { str, UsageError } from "../args.ts";
import { defineCommand, RunLocally } from "../command.ts";
import { bodyFields, boolField, onlyQuery, strsField } from "../http_input.ts";
import { arr, bool, gcResult, obj, str as strS } from "../schemas.ts";

export default defineCommand({
  name: "gc",
  usage: "vmnic gc (--active ID,... | --active-file F) [--dry-run] " +
    "[--include-unknown] [--include-pool]",
  positionals: [0, 0],
  options: {
    active: {
      type: "string",
      value: "IDS",
      help: "comma-separated VM ids to keep (may be empty: --active '')",
    },
    "active-file": {
      type: "string",
      value: "F",
      help: "file with VM ids to keep, one per line ('-' = stdin)",
    },
    "dry-run": { type: "boolean", help: "list what would go, touch nothing" },
    "include-unknown": {
      type: "boolean",
      help: "also remove netns with the prefix that no record accounts for " +
        "(without CNI DEL; never another vmnic install's)",
    },
    "include-pool": {
      type: "boolean",
      help:
        "also retire the warm pool's ready slots (when no daemon keeps them)",
    },
  },
  provider: (i: { includeUnknown: boolean }) =>
    i.includeUnknown ? "fresh" : "require",
  async parse(p, io) {
    const activeArg = str(p, "active");
    const file = str(p, "active-file");
    if ((activeArg === undefined) === (file === undefined)) {
      throw new UsageError(
        "give exactly one of --active or --active-file",
        "gc",
      );
    }
    let text = activeArg;
    if (text === undefined) {
      try {
        text = file === "-" ? await io.readStdin() : await io.readFile(file!);
      } catch (e) {
        if (e instanceof RunLocally) throw e;
        throw new UsageError(
          `gc: cannot read --active-file ${file}: ${(e as Error).message}`,
          "gc",
        );
      }
    }
    const active = text.split(activeArg !== undefined ? "," : /\r?\n/)
      .map((s) => s.trim()).filter(Boolean);
    return {
      active,
      dryRun: p.values["dry-run"] === true,
      includeUnknown: p.values["include-unknown"] === true,
      includePool: p.values["include-pool"] === true,
    };
  },
  async run(i, { provider, progress }) {
    const orch = new GcOrchestrator();
    orch.register(
      provider.gcModule({
        includeUnknown: i.includeUnknown,
        includePool: i.includePool,
      }),
    );
    const [report] = await orch.run(i.active, {
      dryRun: i.dryRun,
      onProgress: (id, done, total) =>
        total > 10 && progress("gc", id, done, total),
    });
    return { dryRun: i.dryRun, ...report };
  },
  human: (r) =>
    [
      ...(r.dryRun
        ? r.candidates.map((id) => `would collect ${id}`)
        : r.collected.map((id) => `collected ${id}`)),
      ...r.skipped.map((s) => `skipped ${s.id}: ${s.reason}`),
      ...r.errors.map((e) => `FAILED ${e.id}: ${e.error}`),
      ...r.warnings.map((w) => `warning ${w.id}: ${w.warning}`),
    ].join("\n") || "nothing to collect",
  exitCode: (r) => r.errors.length ? 1 : 0,
  http: {
    method: "POST",
    path: "/v1/gc",
    body: obj({
      active: arr(strS),
      dryRun: bool,
      includeUnknown: bool,
      includePool: bool,
    }, ["active"]),
    response: gcResult,
    input({ query, body }) {
      const op = "gc";
      onlyQuery(op, "*", query, []);
      const f = bodyFields(op, "*", body, [
        "active",
        "dryRun",
        "includeUnknown",
        "includePool",
      ]);
      const active = strsField(op, "*", f, "active");
      if (active === undefined) {
        throw new InvalidInputError(
          op,
          "*",
          '"active" (the VM ids to keep, may be []) is required',
        );
      }
      const bad = active.find((id) => !isVmId(id));
      if (bad !== undefined) {
        throw new InvalidInputError(
          op,
          "*",
          `"active" holds ${JSON.stringify(bad)}, not a VM id`,
        );
      }
      return {
        active,
        dryRun: boolField(op, "*", f, "dryRun") ?? false,
        includeUnknown: boolField(op, "*", f, "includeUnknown") ?? false,
        includePool: boolField(op, "*", f, "includePool") ?? false,
      };
    },
    request: (i) => ({
      params: {},
      query: {},
      body: {
        active: i.active,
        ...(i.dryRun ? { dryRun: true } : {}),
        ...(i.includeUnknown ? { includeUnknown: true } : {}),
        ...(i.includePool ? { includePool: true } : {}),
      },
    }),
  },
});
