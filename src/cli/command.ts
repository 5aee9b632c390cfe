/**
 * One command of the CLI, defined once (docs/cli.md): its usage, options
 * and arguments, how a command line becomes its input (checked before
 * anything is opened: bad input changes nothing), the operation, and how
 * its result prints. `main.ts` dispatches to these; each lives in
 * `commands/<name>.ts` and is loaded only when it runs.
 *
 * @module
 */
import type { CniProvider } from "../provider/provider.ts";
import type { ProviderConfig } from "../provider/types.ts";
import type { Parsed } from "./args.ts";

/** An option a command accepts. */
export interface OptionSpec {
  /** `string` takes a value; `boolean` is a switch; `multiple` repeats. */
  type: "string" | "boolean";
  /** May be given more than once (values collect in order). */
  multiple?: boolean;
  /** The value's name in help (`--network NAME`). */
  value?: string;
  /** One line of help. */
  help: string;
}

/** Output sinks and input, replaceable for in-process use. */
export interface Io {
  /** Writes a line to stdout. */
  out(s: string): void;
  /** Writes a line to stderr. */
  err(s: string): void;
  /** Reads an environment variable. */
  env(k: string): string | undefined;
  /**
   * The names of the variables a command line reads (`VMNIC_*`), to catch
   * a misspelt setting; none where the caller sent no environment.
   */
  envNames(): string[];
  /** Reads all of stdin. */
  readStdin(): Promise<string>;
  /** Reads a text file named on the command line. */
  readFile(path: string): Promise<string>;
  /**
   * A date and time given without a UTC offset, read in this process's
   * time zone: ms since the epoch, NaN when it is no time.
   */
  localTime(text: string): number;
}

/** The trace id of a `traceparent` (its second field). */
export function traceIdOf(traceparent: string): string {
  return traceparent.split("-")[1] ?? "";
}

/**
 * The CLI's error JSON of `e` (docs/cli.md): its type and message, its
 * operation, object and reason when it has them, and the id of the run's
 * trace (`traceparent`).
 */
export function errorJson(
  e: unknown,
  traceparent?: string,
): { error: Record<string, string> } {
  const v = e as Partial<{ op: string; object: string; reason: string }>;
  const traceId = traceparent ? traceIdOf(traceparent) : undefined;
  return {
    error: {
      type: e instanceof Error ? e.name : "Error",
      message: e instanceof Error ? e.message : String(e),
      ...(typeof v.op === "string" ? { op: v.op } : {}),
      ...(typeof v.object === "string" ? { object: v.object } : {}),
      ...(typeof v.reason === "string" ? { reason: v.reason } : {}),
      ...(traceId ? { traceId } : {}),
    },
  };
}

/**
 * A command line the daemon does not run for its client (`POST /v1/cli`):
 * it opens no provider there, reads the client's stdin or files, follows
 * a stream, or names another install. The client runs it itself.
 */
export class RunLocally extends Error {
  /** Builds the error; `why` says what needs the client's process. */
  constructor(why: string) {
    super(why);
    this.name = "RunLocally";
  }
}

/** What a running command gets besides its input. */
export interface RunContext {
  /** The provider, opened as the command asked (throws for `none`). */
  readonly provider: CniProvider;
  /** The settings from flags and environment. */
  config: ProviderConfig;
  /** Where it may report progress. */
  io: Io;
  /**
   * Reports progress of a long run on stderr: a line for people, or with
   * `--json` one JSON object per line (`{"progress":{…}}`), so stderr stays
   * machine-readable.
   */
  progress(op: string, id: string, done: number, total: number): void;
}

/** How a command opens the provider. */
export type ProviderMode = "none" | "require" | "restore" | "fresh";

/** One CLI command. */
export interface Command<I = unknown, O = unknown> {
  /** Its name (`add`); its one-line summary is in `table.ts`. */
  name: string;
  /** The usage line(s) without options (`vmnic add <vm> [options]`). */
  usage: string;
  /** Positional arguments: [min, max], max -1 for any number. */
  positionals: [number, number];
  /** Its own options (the global ones are in `args.ts`). */
  options: Record<string, OptionSpec>;
  /** More help after the options (rules, examples). */
  details?: string;
  /**
   * How it opens the provider: `none` (it needs none), `require` (the
   * default), `restore`/`fresh` for the ways out of lost records; a
   * function decides by the input.
   */
  provider?: ProviderMode | ((input: I) => ProviderMode);
  /** The command line as the command's input; throws `UsageError`. */
  parse(p: Parsed, io: Io): I | Promise<I>;
  /**
   * Runs it; the result is the command's JSON (docs/cli.md), what `--json`
   * prints and the API answers. `ctx.provider` throws for `none`.
   */
  run(input: I, ctx: RunContext): Promise<O>;
  /** The human output of a result. */
  human(out: O, input: I): string;
  /** The exit code of a result that did not throw (default 0). */
  exitCode?(out: O): number;
  /** The command as a route of `vmnic serve` (docs/api.md); none: local only. */
  http?: HttpRoute<I>;
  /**
   * For inputs that follow (`events --follow`): items printed one line each
   * as they come, until SIGINT/SIGTERM, instead of one result. Over the
   * daemon the route answers newline-delimited JSON (one item per line).
   */
  follow?: FollowSpec<I>;
}

/** How a command streams (see {@linkcode Command.follow}). */
export interface FollowSpec<I> {
  /** Whether this input follows. */
  when(input: I): boolean;
  /** The items, as they come, until `signal` aborts. */
  items(
    input: I,
    provider: CniProvider,
    signal: AbortSignal,
  ): AsyncIterable<unknown>;
  /** One item as a line of human output. */
  line(item: unknown): string;
}

/** A JSON Schema (2020-12, as OpenAPI 3.1 takes it). */
export type JsonSchema = Record<string, unknown>;

/** What a request carries, as a route reads it. */
export interface HttpParts {
  /** Path parameters (`{vm}` of `/v1/vms/{vm}`). */
  params: Record<string, string>;
  /** Query parameters. */
  query: Record<string, string>;
  /** The JSON body, parsed; undefined without one. */
  body?: unknown;
}

/** A command as an HTTP route. */
export interface HttpRoute<I> {
  /** The method. */
  method: "GET" | "POST" | "DELETE";
  /** The path, parameters in braces: `/v1/vms/{vm}/nics`. */
  path: string;
  /** Query parameters it reads, for the OpenAPI document. */
  query?: Record<string, { schema: JsonSchema; description: string }>;
  /** The request body's schema; none: the route takes no body. */
  body?: JsonSchema;
  /** The 200 response body's schema. */
  response: JsonSchema;
  /**
   * The command's input from a request; throws for bad ones (400). None:
   * the route takes no parameters and no query, and its input is `{}`.
   */
  input?(req: HttpParts): I;
  /**
   * The request the CLI sends for an input, when a daemon answers. None:
   * a bare request (no parameters, query or body).
   */
  request?(input: I): HttpParts;
}

/** Declares a command (a typed identity, for inference). */
export function defineCommand<I, O>(c: Command<I, O>): Command<I, O> {
  return c;
}

/** A command of any input and output (what the table holds). */
// deno-lint-ignore no-explicit-any
export type AnyCommand = Command<any, any>;
