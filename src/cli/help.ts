/**
 * Help texts: `vmnic --help` from the command table, `vmnic <cmd> --help`
 * from the command's definition.
 *
 * @module
 */
import { GLOBAL_OPTIONS } from "./args.ts";
import type { AnyCommand, OptionSpec } from "./command.ts";
import { COMMANDS } from "./table.ts";

/** The top-level usage text. */
export function mainUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "vmnic: CNI networking for microVMs (netns + CNI + TAP per VM)",
    "",
    "Usage: vmnic <command> [args] [--json] [options]",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, c]) =>
      `  ${name.padEnd(width)}  ${c.summary}`
    ),
    "",
    globalHelp(),
    "",
    EXIT_CODES,
    "Run 'vmnic <command> --help' for a command's options.",
  ].join("\n");
}

/** Help of one command. */
export function commandUsage(c: AnyCommand): string {
  const own = Object.entries(c.options);
  return [
    `Usage: ${c.usage}`,
    "",
    COMMANDS[c.name].summary,
    ...(own.length ? ["", "Options:", ...optionLines(own)] : []),
    ...(c.details ? ["", c.details] : []),
    "",
    globalHelp(),
    "",
    EXIT_CODES,
  ].join("\n");
}

const EXIT_CODES =
  "Exit codes: 0 done, 1 operation failed, 2 bad usage, invalid input or conflict (nothing changed), 3 not found.";

function globalHelp(): string {
  return [
    "Global options (flag, then environment, then default):",
    ...optionLines(Object.entries(GLOBAL_OPTIONS), true),
  ].join("\n");
}

function optionLines(
  entries: [string, OptionSpec & { env?: string }][],
  withEnv = false,
): string[] {
  const heads = entries.map(([name, o]) =>
    `  --${name}${o.value ? ` ${o.value}` : ""}`
  );
  const width = Math.max(...heads.map((h) => h.length)) + 2;
  return entries.map(([, o], i) =>
    heads[i].padEnd(width) +
    (withEnv && o.env ? `${o.env.padEnd(22)}` : "") + o.help
  );
}
