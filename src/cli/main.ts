/**
 * The `vmnic` command (the `deno compile` target). It only parses, calls the
 * provider and prints: JSON with `--json`, short tables without.
 *
 * @module
 */
import { CniProvider, resolveConfig } from "../provider/provider.ts";
import { GcOrchestrator } from "../provider/gc.ts";
import { doctor } from "../provider/doctor.ts";
import {
  InvalidInputError,
  NotFoundError,
  VmnicError,
} from "../provider/errors.ts";
import {
  GUEST_CONFIG_FORMATS,
  type GuestConfigFormat,
} from "../provider/guest_config.ts";
import type { AddSpec, NicConfig, VmConfig } from "../provider/types.ts";
import {
  validateIndex,
  validateSpec,
  validateVmConfig,
  validateVmId,
} from "../provider/validate.ts";
import { tsHooks } from "../../hooks/registry.ts";
import { VERSION } from "../version.ts";
import {
  int,
  parse,
  type Parsed,
  providerConfig,
  str,
  UsageError,
} from "./args.ts";
import { commandUsage, mainUsage } from "./commands.ts";

/** Exit codes of DESIGN.md. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, NOT_FOUND: 3 } as const;

/** Output sinks, replaceable for in-process use. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
  env(k: string): string | undefined;
  readStdin(): Promise<string>;
}

const denoIo: Io = {
  out: (s) => console.log(s),
  err: (s) => console.error(s),
  env: (k) => Deno.env.get(k),
  readStdin: async () => await new Response(Deno.stdin.readable).text(),
};

/** Runs the CLI on `argv`; returns the exit code. */
export async function main(argv: string[], io: Io = denoIo): Promise<number> {
  let p: Parsed;
  try {
    p = parse(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      // --json holds even when the rest of the line does not parse.
      if (jsonRequested(argv)) {
        io.err(JSON.stringify({ error: { type: e.name, message: e.message } }));
        return EXIT.USAGE;
      }
      io.err(`vmnic: ${e.message}\n`);
      io.err(e.command ? commandUsage(e.command) : mainUsage());
      return EXIT.USAGE;
    }
    throw e;
  }
  if (p.command === null && !p.help && p.json) {
    io.err(JSON.stringify({
      error: { type: "UsageError", message: "no command given" },
    }));
    return EXIT.USAGE;
  }
  if (p.help || p.command === null) {
    (p.command === null && !p.help ? io.err : io.out)(
      p.command ? commandUsage(p.command) : mainUsage(),
    );
    return p.command === null && !p.help ? EXIT.USAGE : EXIT.OK;
  }
  try {
    return await run(p, io);
  } catch (e) {
    const code = exitCodeOf(e);
    if (p.json) {
      io.err(JSON.stringify({
        error: {
          type: e instanceof Error ? e.name : "Error",
          message: e instanceof Error ? e.message : String(e),
          ...(e instanceof VmnicError ? { op: e.op, object: e.object } : {}),
        },
      }));
    } else {
      io.err(
        `vmnic ${p.command}: ${e instanceof Error ? e.message : String(e)}`,
      );
      if (e instanceof UsageError) io.err("\n" + commandUsage(p.command));
    }
    return code;
  }
}

/** `--json` among the flags (not after a `--`), for lines that fail to parse. */
function jsonRequested(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError || e instanceof InvalidInputError) {
    return EXIT.USAGE;
  }
  if (e instanceof NotFoundError) return EXIT.NOT_FOUND;
  return EXIT.FAILED;
}

async function run(p: Parsed, io: Io): Promise<number> {
  const cfg = providerConfig(p, io.env);
  const [first] = p.positionals;
  const print = (json: unknown, human: () => string) =>
    io.out(p.json ? JSON.stringify(json, null, 2) : human());

  switch (p.command) {
    case "version":
      print(
        {
          vmnic: VERSION,
          deno: Deno.version.deno,
          hooks: Object.keys(tsHooks),
        },
        () =>
          `vmnic ${VERSION} (deno ${Deno.version.deno})\nhooks compiled in: ${
            Object.keys(tsHooks).join(", ") || "none"
          }`,
      );
      return EXIT.OK;
    case "doctor": {
      const checks = await doctor(resolveConfig(cfg), p.values.fix === true);
      const ok = checks.every((c) => c.ok);
      print(
        { ok, checks },
        () =>
          checks.map((c) =>
            `${c.ok ? "ok  " : "FAIL"}  ${c.name.padEnd(18)} ${c.detail}${
              c.fixed ? ` [fix: ${c.fixed}]` : ""
            }`
          )
            .join("\n"),
      );
      return ok ? EXIT.OK : EXIT.FAILED;
    }
  }

  // Every check of the input happens before the store is opened: bad input
  // changes nothing, not even by creating the database.
  const input = await readInput(p, io);
  const provider = await CniProvider.open(cfg, { tsHooks });
  try {
    switch (p.command) {
      case "prepare": {
        const path = await provider.prepare(first);
        print({ vmId: first, netnsPath: path }, () => path);
        return EXIT.OK;
      }
      case "add": {
        const nics = await provider.add(first, input.vmCfg, ...input.specs);
        print(nics, () => nicTable(nics));
        return EXIT.OK;
      }
      case "remove": {
        const indices = input.indices;
        await provider.remove(first, ...indices);
        print(
          { vmId: first, removed: indices },
          () => `removed NIC ${indices.join(", ")} of ${first}`,
        );
        return EXIT.OK;
      }
      case "delete": {
        const many = p.positionals.length > 10;
        const res = await provider.delete(p.positionals, {
          onProgress: many
            ? (id, done, total) => io.err(`delete: ${done}/${total} ${id}`)
            : undefined,
        });
        print(res, () =>
          [
            ...res.deleted.map((id) => `deleted ${id}`),
            ...res.errors.map((e) => `FAILED ${e.vmId}: ${e.error}`),
            ...res.warnings.map((w) => `warning ${w.vmId}: ${w.warning}`),
          ].join("\n"));
        return res.errors.length ? EXIT.FAILED : EXIT.OK;
      }
      case "inspect": {
        const nic = await provider.inspect(first);
        if (!nic) {
          throw new NotFoundError(
            "inspect",
            first,
            `inspect: no NIC with id ${JSON.stringify(first)}`,
          );
        }
        print(nic, () => nicTable([nic]));
        return EXIT.OK;
      }
      case "list": {
        const nics = await provider.list({ vmId: str(p, "vm") });
        print(nics, () => nicTable(nics));
        return EXIT.OK;
      }
      case "verify": {
        const v = await provider.verify(first);
        print(
          v,
          () =>
            v.ok
              ? `${first}: ok (${v.nics.length} NIC(s))`
              : `${first}: BROKEN\n  ${v.problems.join("\n  ")}`,
        );
        return v.ok ? EXIT.OK : EXIT.FAILED;
      }
      case "recover": {
        const r = await provider.recover(first);
        print(
          r,
          () =>
            [
              nicTable(r.nics),
              ...r.problems.map((x) => `NIC ${x.index}: ${x.error}`),
            ].join("\n"),
        );
        return r.problems.length ? EXIT.FAILED : EXIT.OK;
      }
      case "quiesce":
      case "unquiesce": {
        const nics = await provider.quiesce(first, p.command === "quiesce");
        print(
          {
            vmId: first,
            state: p.command === "quiesce" ? "quiesced" : "running",
            nics: nics.map((n) => n.ifName),
          },
          () =>
            `${first}: ${nics.map((n) => n.ifName).join(", ")} ${
              p.command === "quiesce" ? "down" : "up"
            }`,
        );
        return EXIT.OK;
      }
      case "guest-config": {
        const format = input.format;
        const files = await provider.guestConfig(first, format);
        print(
          { vmId: first, format, files },
          () =>
            files.map((f) =>
              (files.length > 1 ? `# ${f.name}\n` : "") + f.content.trimEnd()
            ).join("\n\n"),
        );
        return EXIT.OK;
      }
      case "networks": {
        const r = await provider.networks();
        print(r, () =>
          [
            ...r.networks.map((n) =>
              `${n.isDefault ? "*" : " "} ${n.name.padEnd(16)} ${
                n.cniVersion.padEnd(6)
              } ${n.plugins.join(",").padEnd(24)} ${
                n.embedded ? "(embedded)" : n.source
              }`
            ),
            ...r.errors.map((e) => `! ${e.error}`),
          ].join("\n"));
        return EXIT.OK;
      }
      case "hooks": {
        const hooks = await provider.hooks();
        print(
          hooks,
          () =>
            hooks.length
              ? hooks.map((h) =>
                `${h.name.padEnd(24)} ${h.kind.padEnd(4)} ${
                  h.events.join(",")
                } ${h.path ?? ""}`
              ).join("\n")
              : "no hooks",
        );
        return EXIT.OK;
      }
      case "gc":
        return await gc(p, input.active, provider, print, io);
    }
    throw new UsageError(`unknown command ${p.command}`);
  } finally {
    provider.close();
  }
}

/** What a command needs from the command line, checked before any change. */
interface Input {
  vmCfg: VmConfig;
  specs: AddSpec[];
  indices: number[];
  format: GuestConfigFormat;
  active: string[];
}

/** Commands whose first argument is a VM id. */
const VM_COMMANDS = new Set([
  "prepare",
  "add",
  "remove",
  "verify",
  "recover",
  "quiesce",
  "unquiesce",
  "guest-config",
]);

async function readInput(p: Parsed, io: Io): Promise<Input> {
  const command = p.command!;
  const input: Input = {
    vmCfg: {},
    specs: [],
    indices: [],
    format: "cmdline",
    active: [],
  };
  if (VM_COMMANDS.has(command)) validateVmId(command, p.positionals[0]);
  if (command === "delete") {
    for (const id of p.positionals) validateVmId(command, id);
  }
  const vm = str(p, "vm");
  if (command === "list" && vm !== undefined) validateVmId(command, vm);
  switch (command) {
    case "add":
      input.vmCfg = {
        cpu: int(p, "cpu", 1, 256),
        queueSize: int(p, "queue-size", 1, 32768),
        network: str(p, "network"),
      };
      input.specs = addSpecs(p);
      validateVmConfig(command, p.positionals[0], input.vmCfg);
      for (const spec of input.specs) {
        validateSpec(command, p.positionals[0], spec);
      }
      break;
    case "remove":
      input.indices = p.positionals.slice(1).map((s) => {
        if (!/^\d+$/.test(s)) {
          throw new UsageError(
            `remove: index must be an integer 0–31, got ${JSON.stringify(s)}`,
            "remove",
          );
        }
        validateIndex(command, p.positionals[0], Number(s));
        return Number(s);
      });
      break;
    case "guest-config": {
      const format = str(p, "format");
      if (
        !format || !(GUEST_CONFIG_FORMATS as readonly string[]).includes(format)
      ) {
        throw new UsageError(
          `guest-config: --format must be one of ${
            GUEST_CONFIG_FORMATS.join(", ")
          }`,
          "guest-config",
        );
      }
      input.format = format as GuestConfigFormat;
      break;
    }
    case "gc":
      input.active = await activeSet(p, io);
      break;
  }
  return input;
}

/** The VM ids `gc` must keep, from `--active` or `--active-file`. */
async function activeSet(p: Parsed, io: Io): Promise<string[]> {
  const activeArg = str(p, "active");
  const file = str(p, "active-file");
  if ((activeArg === undefined) === (file === undefined)) {
    throw new UsageError(
      "gc: give exactly one of --active or --active-file",
      "gc",
    );
  }
  let text = activeArg;
  if (text === undefined) {
    try {
      text = file === "-"
        ? await io.readStdin()
        : await Deno.readTextFile(file!);
    } catch (e) {
      throw new UsageError(
        `gc: cannot read --active-file ${file}: ${(e as Error).message}`,
        "gc",
      );
    }
  }
  return text.split(activeArg !== undefined ? "," : /\r?\n/)
    .map((s) => s.trim()).filter(Boolean);
}

function addSpecs(p: Parsed): AddSpec[] {
  const nics = int(p, "nics", 1, 32);
  const index = int(p, "index", 0, 31);
  const mac = str(p, "mac");
  const ips = p.values.ip as string[] | undefined;
  const queues = int(p, "queues", 1, 256);
  if (index !== undefined && nics !== undefined && nics !== 1) {
    throw new UsageError("add: --index adds one NIC; drop --nics", "add");
  }
  if ((mac !== undefined || ips !== undefined) && index === undefined) {
    throw new UsageError(
      "add: --mac and --ip recover one NIC and need --index",
      "add",
    );
  }
  if (index !== undefined) return [{ index, mac, ips, queues }];
  return Array.from({ length: nics ?? 1 }, () => ({ queues }));
}

async function gc(
  p: Parsed,
  active: string[],
  provider: CniProvider,
  print: (json: unknown, human: () => string) => void,
  io: Io,
): Promise<number> {
  const orch = new GcOrchestrator();
  orch.register(provider.gcModule());
  const dryRun = p.values["dry-run"] === true;
  const [report] = await orch.run(active, {
    dryRun,
    onProgress: (id, done, total) =>
      total > 10 && io.err(`gc: ${done}/${total} ${id}`),
  });
  print({ dryRun, ...report }, () =>
    [
      ...(dryRun
        ? report.candidates.map((id) => `would collect ${id}`)
        : report.collected.map((id) => `collected ${id}`)),
      ...report.skipped.map((s) => `skipped ${s.id}: ${s.reason}`),
      ...report.errors.map((e) => `FAILED ${e.id}: ${e.error}`),
      ...report.warnings.map((w) => `warning ${w.id}: ${w.warning}`),
    ].join("\n") || "nothing to collect");
  return report.errors.length ? EXIT.FAILED : EXIT.OK;
}

function nicTable(nics: NicConfig[]): string {
  if (!nics.length) return "no NICs";
  const rows = nics.map((n) => [
    n.vmId,
    String(n.index),
    n.tap,
    n.ifName,
    n.mac,
    n.ips.map((ip) => `${ip.address}/${ip.prefix}`).join(",") || "-",
    n.network,
    String(n.numQueues),
    n.id,
  ]);
  const head = [
    "VM",
    "IDX",
    "TAP",
    "VETH",
    "MAC",
    "IPS",
    "NETWORK",
    "QUEUES",
    "ID",
  ];
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => r[i].length))
  );
  return [head, ...rows].map((r) =>
    r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()
  ).join("\n");
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
