/**
 * The `vmnic` command (the `deno compile` target): finds the command, loads
 * only its module, parses and checks the line, opens the provider as the
 * command asks, runs it and prints JSON (`--json`) or text. SIGTERM and
 * SIGINT end the operation at its next step boundary, rolled back, then
 * the process exits (docs/cli.md, "Signals").
 *
 * @module
 */
import {
  findCommand,
  parse,
  type Parsed,
  providerConfig,
  UsageError,
} from "./args.ts";
import type { AnyCommand, Io, ProviderMode, RunContext } from "./command.ts";
import { commandUsage, mainUsage } from "./help.ts";
import { COMMANDS, isCommand } from "./table.ts";

/** Exit codes (docs/cli.md). */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, NOT_FOUND: 3 } as const;

export type { Io } from "./command.ts";

const denoIo: Io = {
  out: (s) => console.log(s),
  err: (s) => console.error(s),
  env: (k) => Deno.env.get(k),
  readStdin: async () => await new Response(Deno.stdin.readable).text(),
};

/** Signals that end an operation gracefully. */
const STOP_SIGNALS: Deno.Signal[] = ["SIGTERM", "SIGINT"];

/** Runs the CLI on `argv`; returns the exit code. */
export async function main(argv: string[], io: Io = denoIo): Promise<number> {
  const name = findCommand(argv, isCommand);
  let command: AnyCommand | undefined;
  let p: Parsed;
  try {
    if (name === null) {
      const unknown = argv.find((a) => !a.startsWith("-"));
      if (unknown !== undefined && !argv.includes("--")) {
        throw new UsageError(`unknown command ${JSON.stringify(unknown)}`);
      }
    } else {
      command = (await COMMANDS[name].load()).default;
    }
    p = parse(
      argv,
      name,
      command?.options ?? {},
      command?.positionals ?? [0, 0],
    );
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    // --json holds even when the rest of the line does not parse.
    if (jsonRequested(argv)) {
      io.err(JSON.stringify({ error: { type: e.name, message: e.message } }));
      return EXIT.USAGE;
    }
    io.err(`vmnic: ${e.message}\n`);
    io.err(command ? commandUsage(command) : mainUsage());
    return EXIT.USAGE;
  }
  if (!command) {
    if (p.help) {
      io.out(mainUsage());
      return EXIT.OK;
    }
    if (p.json) {
      io.err(JSON.stringify({
        error: { type: "UsageError", message: "no command given" },
      }));
    } else io.err(mainUsage());
    return EXIT.USAGE;
  }
  if (p.help) {
    io.out(commandUsage(command));
    return EXIT.OK;
  }
  return await execute(command, p, io);
}

/** Parses the input, opens the provider, runs, prints; maps errors to exit codes. */
async function execute(
  command: AnyCommand,
  p: Parsed,
  io: Io,
): Promise<number> {
  const stop = new AbortController();
  const onSignal = (sig: Deno.Signal) => () => {
    if (!stop.signal.aborted) {
      io.err(
        `vmnic ${command.name}: ${sig}: finishing or rolling back the current step, then exiting`,
      );
      stop.abort(sig);
    }
  };
  const listeners = STOP_SIGNALS.map((sig) => [sig, onSignal(sig)] as const);
  for (const [sig, fn] of listeners) Deno.addSignalListener(sig, fn);
  try {
    // Every check of the input happens before the provider is opened: bad
    // input changes nothing, not even by creating the database.
    const config = providerConfig(p, io.env);
    const input = await command.parse(p, io);
    const mode: ProviderMode = typeof command.provider === "function"
      ? command.provider(input)
      : command.provider ?? "require";
    let provider: import("../provider/provider.ts").CniProvider | undefined;
    if (mode !== "none") {
      const { CniProvider } = await import("../provider/provider.ts");
      const { tsHooks } = await import("../../hooks/registry.ts");
      provider = await CniProvider.open(config, {
        tsHooks,
        signal: stop.signal,
        records: mode,
      });
    }
    try {
      const ctx: RunContext = {
        get provider() {
          if (!provider) throw new Error(`${command.name} opens no provider`);
          return provider;
        },
        config,
        io,
      };
      const out = await command.run(input, ctx);
      io.out(
        p.json
          ? JSON.stringify(
            command.json ? command.json(out, input) : out,
            null,
            2,
          )
          : command.human(out, input),
      );
      return command.exitCode?.(out) ?? EXIT.OK;
    } finally {
      provider?.close();
    }
  } catch (e) {
    const code = exitCodeOf(e);
    if (p.json) {
      const v = e as Partial<{ op: string; object: string; reason: string }>;
      io.err(JSON.stringify({
        error: {
          type: e instanceof Error ? e.name : "Error",
          message: e instanceof Error ? e.message : String(e),
          ...(typeof v.op === "string" ? { op: v.op } : {}),
          ...(typeof v.object === "string" ? { object: v.object } : {}),
          ...(typeof v.reason === "string" ? { reason: v.reason } : {}),
        },
      }));
    } else {
      io.err(`vmnic ${command.name}: ${e instanceof Error ? e.message : e}`);
      if (e instanceof UsageError) io.err("\n" + commandUsage(command));
    }
    return code;
  } finally {
    for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
  }
}

/** `--json` among the flags (not after a `--`), for lines that fail to parse. */
function jsonRequested(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

/** The exit code an error carries (vmnic's errors say theirs), else 1. */
function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError) return EXIT.USAGE;
  const code = (e as { exitCode?: unknown })?.exitCode;
  return typeof code === "number" ? code : EXIT.FAILED;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
