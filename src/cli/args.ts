/**
 * Command-line parsing: flags may stand before or after the command name;
 * settings come from flags, then the environment, then defaults.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { ProviderConfig } from "../provider/types.ts";
import { COMMANDS, GLOBAL_OPTIONS } from "./commands.ts";

/** Bad usage: unknown command or flag, missing argument (exit code 2). */
export class UsageError extends Error {
  /** The command concerned, if known (its help is printed). */
  readonly command?: string;
  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

type OptionValue = string | boolean | string[] | undefined;

/** A parsed command line. */
export interface Parsed {
  command: string | null;
  positionals: string[];
  values: Record<string, OptionValue>;
  json: boolean;
  help: boolean;
}

const STRING = { type: "string" } as const;
const BOOL = { type: "boolean" } as const;

const OPTIONS = {
  json: BOOL,
  help: { type: "boolean", short: "h" },
  "root-dir": STRING,
  "run-dir": STRING,
  "cni-conf-dir": STRING,
  "cni-bin-dir": STRING,
  "netns-dir": STRING,
  "netns-prefix": STRING,
  "hooks-dir": STRING,
  network: STRING,
  nics: STRING,
  cpu: STRING,
  queues: STRING,
  "queue-size": STRING,
  index: STRING,
  mac: STRING,
  ip: { type: "string", multiple: true },
  vm: STRING,
  active: STRING,
  "active-file": STRING,
  "dry-run": BOOL,
  format: STRING,
  fix: BOOL,
} as const;

/** Parses argv; throws {@linkcode UsageError} on anything unknown. */
export function parse(argv: string[]): Parsed {
  let out;
  try {
    out = parseArgs({
      args: argv,
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    const cmd = argv.find((a) => Object.hasOwn(COMMANDS, a));
    throw new UsageError(
      (e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ""),
      cmd,
    );
  }
  const [command = null, ...positionals] = out.positionals;
  const values = out.values as Record<string, OptionValue>;
  const json = values.json === true;
  const help = values.help === true;
  if (command !== null && !Object.hasOwn(COMMANDS, command)) {
    throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
  if (command !== null && !help) {
    const spec = COMMANDS[command];
    for (const key of Object.keys(values)) {
      if (!GLOBAL_OPTIONS.includes(key) && !spec.options.includes(key)) {
        throw new UsageError(
          `${command}: option --${key} does not apply`,
          command,
        );
      }
    }
    const [min, max] = spec.positionals;
    if (positionals.length < min) {
      throw new UsageError(`${command}: missing argument`, command);
    }
    if (max >= 0 && positionals.length > max) {
      throw new UsageError(
        `${command}: unexpected argument ${JSON.stringify(positionals[max])}`,
        command,
      );
    }
  }
  return { command, positionals, values, json, help };
}

/** A string option, or undefined. */
export function str(p: Parsed, key: string): string | undefined {
  const v = p.values[key];
  return typeof v === "string" ? v : undefined;
}

/** An integer option within [min, max], or undefined; a UsageError otherwise. */
export function int(
  p: Parsed,
  key: string,
  min: number,
  max: number,
): number | undefined {
  const v = str(p, key);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(
      `${p.command}: --${key} must be an integer ${min}–${max}, got ${
        JSON.stringify(v)
      }`,
      p.command ?? undefined,
    );
  }
  return Number(v);
}

/** Provider settings from flags, then the environment, then defaults. */
export function providerConfig(
  p: Parsed,
  env: (k: string) => string | undefined,
): ProviderConfig {
  // An empty variable counts as unset: VMNIC_ROOT_DIR="" must not put the
  // database in the current directory.
  const pick = (flag: string, envName: string) => {
    const value = str(p, flag);
    if (value === "") {
      throw new UsageError(
        `--${flag} must not be empty`,
        p.command ?? undefined,
      );
    }
    return value ?? (env(envName) || undefined);
  };
  const bin = pick("cni-bin-dir", "VMNIC_CNI_BIN_DIR");
  const cfg: ProviderConfig = {
    rootDir: pick("root-dir", "VMNIC_ROOT_DIR"),
    runDir: pick("run-dir", "VMNIC_RUN_DIR"),
    cniConfDir: pick("cni-conf-dir", "VMNIC_CNI_CONF_DIR"),
    cniBinDirs: bin === undefined ? undefined : bin.split(":").filter(Boolean),
    netnsDir: pick("netns-dir", "VMNIC_NETNS_DIR"),
    netnsPrefix: pick("netns-prefix", "VMNIC_NETNS_PREFIX"),
    hooksDir: pick("hooks-dir", "VMNIC_HOOKS_DIR"),
  };
  for (const k of Object.keys(cfg) as (keyof ProviderConfig)[]) {
    if (cfg[k] === undefined) delete cfg[k];
  }
  return cfg;
}
