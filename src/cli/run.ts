/**
 * The whole `vmnic` command line, run in this process: finds the command,
 * loads only its module, parses and checks the line, asks the daemon when
 * one answers or opens the provider as the command asks, runs it and prints
 * JSON (`--json`) or text. SIGTERM and SIGINT end the operation at its next
 * step boundary, rolled back, then the process exits (docs/cli.md,
 * "Signals"). `main.ts` loads it when the daemon does not run the line
 * itself (`POST /v1/cli`); the daemon runs it for that route.
 *
 * @module
 */
import {
  checkSettingVariables,
  findCommand,
  parse,
  type Parsed,
  providerConfig,
  str,
  UsageError,
} from "./args.ts";
import { SETTING_VARIABLES } from "./setting_variables.ts";
import type { DaemonReply } from "./daemon_client.ts";
import type { ProviderConfig } from "../provider/types.ts";
import type {
  AnyCommand,
  HttpParts,
  Io,
  ProviderMode,
  RunContext,
} from "./command.ts";
import { errorJson, RunLocally, traceIdOf } from "./command.ts";
import { DEFAULT_SOCKET, isCliEnv, jsonRequested } from "./forward.ts";
import { commandUsage, mainUsage } from "./help.ts";
import { COMMANDS, isCommand } from "./table.ts";

/** The request header carrying `--wait` to the daemon (milliseconds). */
const WAIT_HEADER = "vmnic-wait";

type ProviderModule = typeof import("../provider/mod.ts");
type TraceModule = typeof import("../provider/trace.ts");

/**
 * `import(specifier)`, relative to this module, for the provider's large
 * module graph: a parameter, so `deno run` does not walk that graph at the
 * start of commands that never open a provider (`version`, `--help`);
 * `deno compile` bundles it by the compile task's `--include`.
 */
function onDemand<T>(specifier: string): Promise<T> {
  return import(specifier);
}

/** Exit codes (docs/cli.md). */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, NOT_FOUND: 3 } as const;

export type { Io } from "./command.ts";
export { RunLocally } from "./command.ts";

const denoIo: Io = {
  out: (s) => console.log(s),
  err: (s) => console.error(s),
  env: (k) => Deno.env.get(k),
  envNames: () => {
    try {
      return Object.keys(Deno.env.toObject()).filter(isCliEnv);
    } catch {
      // Env access granted per variable (--allow-env=A,B): no listing.
      return [];
    }
  },
  readStdin: async () => await new Response(Deno.stdin.readable).text(),
  readFile: (path) => Deno.readTextFile(path),
  localTime: (text) => Date.parse(text),
};

/**
 * How a command line run inside `vmnic serve` (`POST /v1/cli`) reaches the
 * daemon's routes: the same request the CLI would send over the socket,
 * served in the daemon's process.
 */
export interface InDaemon {
  /**
   * Serves `method pathTemplate` with `parts` and `headers`; the run's
   * progress goes to `progress`, as it would in process.
   */
  call(
    method: string,
    pathTemplate: string,
    parts: HttpParts,
    headers: Record<string, string>,
    progress: Progress,
  ): Promise<DaemonReply>;
}

/** Where a run reports its progress (`RunContext.progress`). */
export type Progress = RunContext["progress"];

/** Signals that end an operation gracefully. */
const STOP_SIGNALS: Deno.Signal[] = ["SIGTERM", "SIGINT"];

/**
 * Runs the CLI on `argv`; returns the exit code. With `daemon`, it runs in
 * `vmnic serve` for a client: its routes instead of a socket or a provider
 * of its own, and {@linkcode RunLocally} for what only the client can run.
 */
export async function main(
  argv: string[],
  io: Io = denoIo,
  daemon?: InDaemon,
): Promise<number> {
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
  return await execute(command, p, io, daemon);
}

/** Parses the input, opens the provider, runs, prints; maps errors to exit codes. */
async function execute(
  command: AnyCommand,
  p: Parsed,
  io: Io,
  daemon: InDaemon | undefined,
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
  // Commands that open no provider (version, doctor, serve) handle
  // signals as they see fit; the daemon handles its own.
  const listeners = command.provider === "none" || daemon
    ? []
    : STOP_SIGNALS.map((sig) => [sig, onSignal(sig)] as const);
  for (const [sig, fn] of listeners) Deno.addSignalListener(sig, fn);
  let traceparent: string | undefined;
  try {
    // Every check of the input happens before the provider is opened: bad
    // input changes nothing, not even by creating the database.
    for (const warning of checkSettingVariables(p, io.envNames(), io.env)) {
      io.err(
        p.json
          ? JSON.stringify({ warning })
          : `vmnic ${command.name}: warning: ${warning}`,
      );
    }
    const config = providerConfig(p, io.env);
    const input = await command.parse(p, io);
    const mode: ProviderMode = typeof command.provider === "function"
      ? command.provider(input)
      : command.provider ?? "require";
    // Every run that opens a provider has a trace: the caller's, or one
    // started here (docs/events.md); --json reports it.
    if (mode !== "none") {
      const trace = await onDemand<TraceModule>("../provider/trace.ts");
      const { newTraceparent, parseTraceparent } = trace;
      const given = str(p, "traceparent") ??
        (io.env("TRACEPARENT") || undefined);
      if (given !== undefined) parseTraceparent(given, command.name);
      traceparent = given ?? newTraceparent();
    }
    if (daemon && (mode !== "require" || command.follow?.when(input))) {
      throw new RunLocally(`${command.name} runs in the client's process`);
    }
    if (command.follow?.when(input)) {
      return await follow(command, input, p, config, io, stop.signal, mode);
    }
    const progress: Progress = (op, id, done, total) =>
      io.err(
        p.json
          ? JSON.stringify({ progress: { op, id, done, total } })
          : `${op}: ${done}/${total} ${id}`,
      );
    const viaDaemon = mode === "require"
      ? await tryDaemon(
        command,
        input,
        p,
        config,
        io,
        traceparent,
        daemon,
        progress,
      )
      : null;
    if (viaDaemon) {
      if (viaDaemon.status === 200) {
        const out = viaDaemon.body;
        io.out(
          p.json ? JSON.stringify(out, null, 2) : command.human(out, input),
        );
        if (p.json) reportTrace(io, traceparent);
        return command.exitCode?.(out) ?? EXIT.OK;
      }
      throw new DaemonError(viaDaemon.body);
    }
    let provider: import("../provider/mod.ts").CniProvider | undefined;
    if (mode !== "none") {
      const { CniProvider } = await onDemand<ProviderModule>(
        "../provider/mod.ts",
      );
      const { tsHooks } = await import("../../hooks/registry.ts");
      const opened = await CniProvider.open(config, {
        tsHooks,
        signal: stop.signal,
        records: mode,
      });
      // Closing the traced view closes the shared store.
      provider = traceparent ? opened.withTrace(traceparent) : opened;
    }
    try {
      const ctx: RunContext = {
        get provider() {
          if (!provider) throw new Error(`${command.name} opens no provider`);
          return provider;
        },
        config,
        io,
        progress,
      };
      const out = await command.run(input, ctx);
      io.out(
        p.json ? JSON.stringify(out, null, 2) : command.human(out, input),
      );
      if (p.json) reportTrace(io, traceparent);
      return command.exitCode?.(out) ?? EXIT.OK;
    } finally {
      provider?.close();
    }
  } catch (e) {
    if (e instanceof RunLocally) throw e;
    const code = exitCodeOf(e);
    if (p.json) {
      io.err(JSON.stringify(
        errorJson(e, traceparent),
      ));
    } else {
      // A provider error's message names its operation and object already
      // ("add vm1: …"); others get the command's name.
      const named = typeof (e as { op?: unknown }).op === "string";
      io.err(
        named
          ? `vmnic ${(e as Error).message}`
          : `vmnic ${command.name}: ${e instanceof Error ? e.message : e}`,
      );
      if (e instanceof UsageError) io.err("\n" + commandUsage(command));
    }
    return code;
  } finally {
    for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
  }
}

/** With --json, the run's trace on stderr: one JSON line. */
function reportTrace(io: Io, traceparent: string | undefined): void {
  if (!traceparent) return;
  io.err(JSON.stringify({
    trace: { traceId: traceIdOf(traceparent), traceparent },
  }));
}

/**
 * A following command (`events --follow`): its items, one line each, from
 * the daemon's stream when one answers, else from this process, until
 * SIGINT/SIGTERM.
 */
async function follow(
  command: AnyCommand,
  input: unknown,
  p: Parsed,
  config: ProviderConfig,
  io: Io,
  signal: AbortSignal,
  mode: ProviderMode,
): Promise<number> {
  const spec = command.follow!;
  const print = (item: unknown) =>
    io.out(p.json ? JSON.stringify(item) : spec.line(item));
  const target = daemonTarget(command, input, p, config, io);
  if (target) {
    const { streamDaemon, NoDaemon } = await import("./daemon_client.ts");
    try {
      const status = await streamDaemon(
        target.socket,
        command.http!.method,
        command.http!.path,
        target.parts,
        target.headers,
        print,
        signal,
      );
      if (status.status !== 200) throw new DaemonError(status.body);
      return EXIT.OK;
    } catch (e) {
      if (!(e instanceof NoDaemon)) throw e;
    }
  }
  const { CniProvider } = await onDemand<ProviderModule>(
    "../provider/mod.ts",
  );
  const provider = await CniProvider.open(config, {
    signal,
    records: mode === "none" ? "require" : mode,
  });
  try {
    for await (const item of spec.items(input, provider, signal)) print(item);
  } finally {
    provider.close();
  }
  return EXIT.OK;
}

/**
 * The command run by the daemon, when one answers on the socket and the
 * command is one of its routes; null to run it in this process. Named
 * settings go along and must be the daemon's (docs/api.md); with settings
 * but no `--socket`, the command runs here.
 */
/** Where and what to ask the daemon, or null: run in process. */
function daemonTarget(
  command: AnyCommand,
  input: unknown,
  p: Parsed,
  config: ProviderConfig,
  io: Io,
  traceparent?: string,
):
  | { socket: string; parts: HttpParts; headers: Record<string, string> }
  | null {
  const http = command.http;
  if (!http || p.values["no-daemon"] === true) return null;
  const socket = str(p, "socket") ??
    (io.env(SETTING_VARIABLES.socket) || undefined);
  // The settings that choose an install (not how long to wait).
  const install = Object.fromEntries(
    Object.entries(config).filter(([k]) =>
      k !== "lockWaitMs" && k !== "pluginTimeoutMs"
    ),
  );
  const named = Object.keys(install).length > 0;
  if (named && socket === undefined) return null;
  let parts;
  try {
    parts = http.request?.(input) ?? { params: {}, query: {} };
  } catch (e) {
    if (e instanceof RangeError) return null; // no route for this form
    throw e;
  }
  return {
    socket: socket ?? DEFAULT_SOCKET,
    parts,
    headers: {
      ...(named ? { "vmnic-settings": JSON.stringify(install) } : {}),
      ...(traceparent ? { traceparent } : {}),
      // How long this caller waits for a busy VM (--wait), not the daemon's.
      ...(config.lockWaitMs !== undefined
        ? { [WAIT_HEADER]: String(config.lockWaitMs) }
        : {}),
    },
  };
}

async function tryDaemon(
  command: AnyCommand,
  input: unknown,
  p: Parsed,
  config: ProviderConfig,
  io: Io,
  traceparent: string | undefined,
  daemon: InDaemon | undefined,
  progress: Progress,
): Promise<DaemonReply | null> {
  const target = daemonTarget(command, input, p, config, io, traceparent);
  if (daemon) {
    if (!target) {
      throw new RunLocally(`this form of ${command.name} runs in the client`);
    }
    return await daemon.call(
      command.http!.method,
      command.http!.path,
      target.parts,
      target.headers,
      progress,
    );
  }
  if (!target) return null;
  const { callDaemon, NoDaemon } = await import("./daemon_client.ts");
  try {
    return await callDaemon(
      target.socket,
      command.http!.method,
      command.http!.path,
      target.parts,
      target.headers,
    );
  } catch (e) {
    if (e instanceof NoDaemon) return null;
    throw e;
  }
}

/** An error the daemon answered with: shown as if it happened here. */
class DaemonError extends Error {
  readonly op?: string;
  readonly object?: string;
  readonly reason?: string;
  readonly exitCode: number;
  constructor(body: unknown) {
    const e = (body as { error?: Record<string, string> })?.error ?? {};
    super(e.message ?? "vmnic serve failed without saying why");
    this.name = e.type ?? "Error";
    if (e.op !== undefined) this.op = e.op;
    if (e.object !== undefined) this.object = e.object;
    if (e.reason !== undefined) this.reason = e.reason;
    this.exitCode = EXIT_BY_TYPE[this.name] ?? EXIT.FAILED;
  }
}

/** The exit codes of the error types that are not 1 (docs/cli.md). */
const EXIT_BY_TYPE: Record<string, number> = {
  UsageError: EXIT.USAGE,
  InvalidInputError: EXIT.USAGE,
  ConflictError: EXIT.USAGE,
  NotFoundError: EXIT.NOT_FOUND,
};

/** The exit code an error carries (vmnic's errors say theirs), else 1. */
function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError) return EXIT.USAGE;
  const code = (e as { exitCode?: unknown })?.exitCode;
  return typeof code === "number" ? code : EXIT.FAILED;
}
