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
  /** Reads all of stdin. */
  readStdin(): Promise<string>;
}

/** What a running command gets besides its input. */
export interface RunContext {
  /** The provider, opened as the command asked (throws for `none`). */
  readonly provider: CniProvider;
  /** The settings from flags and environment. */
  config: ProviderConfig;
  /** Where it may report progress. */
  io: Io;
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
  /** Runs it. `ctx.provider` is absent for `provider: "none"`. */
  run(input: I, ctx: RunContext): Promise<O>;
  /** The human output of a result. */
  human(out: O, input: I): string;
  /** The JSON output of a result (default: the result itself). */
  json?(out: O, input: I): unknown;
  /** The exit code of a result that did not throw (default 0). */
  exitCode?(out: O): number;
}

/** Declares a command (a typed identity, for inference). */
export function defineCommand<I, O>(c: Command<I, O>): Command<I, O> {
  return c;
}

/** A command of any input and output (what the table holds). */
// deno-lint-ignore no-explicit-any
export type AnyCommand = Command<any, any>;
