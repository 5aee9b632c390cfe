/**
 * Command-line parsing: the command is the first known command name among
 * the arguments, flags may stand before or after it, and settings come
 * from flags, then the environment, then defaults (docs/cli.md).
 *
 * @module
 */
import type { ProviderConfig } from "../provider/types.ts";
import type { OptionSpec } from "./command.ts";
import {
  type Misspelt,
  misspeltSettings,
  SETTING_VARIABLES,
  type SettingFlag,
} from "./setting_variables.ts";

/** Bad usage: unknown command or flag, missing argument (exit code 2). */
export class UsageError extends Error {
  /** The command concerned, if known (its help is printed). */
  readonly command?: string;
  /** Builds the error. */
  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

type OptionValue = string | boolean | string[] | undefined;

/** A parsed command line. */
export interface Parsed {
  /** The command name, or null. */
  command: string | null;
  /** Arguments after the command name. */
  positionals: string[];
  /** Option values by long name. */
  values: Record<string, OptionValue>;
  /** `--json` was given. */
  json: boolean;
  /** `--help` was given. */
  help: boolean;
  /** Options with values, in the order given (for flags whose order counts). */
  sequence?: [string, string][];
}

/** Options every command accepts: output, help, and the settings. */
export const GLOBAL_OPTIONS: Record<string, OptionSpec & { env?: string }> = {
  json: { type: "boolean", help: "machine-readable output (docs/cli.md)" },
  help: { type: "boolean", help: "this help" },
  "root-dir": {
    type: "string",
    value: "DIR",
    env: SETTING_VARIABLES["root-dir"],
    help: "records (vmnic.db, backups): /var/lib/vmnic",
  },
  "run-dir": {
    type: "string",
    value: "DIR",
    env: SETTING_VARIABLES["run-dir"],
    help: "locks: /run/vmnic",
  },
  "cni-conf-dir": {
    type: "string",
    value: "DIR",
    env: SETTING_VARIABLES["cni-conf-dir"],
    help: "conflists: /etc/cni/net.d",
  },
  "cni-bin-dir": {
    type: "string",
    value: "DIRS",
    env: SETTING_VARIABLES["cni-bin-dir"],
    help: "plugins: /opt/cni/bin:/usr/lib/cni:/usr/libexec/cni",
  },
  "netns-dir": {
    type: "string",
    value: "DIR",
    env: SETTING_VARIABLES["netns-dir"],
    help: "named netns: /var/run/netns",
  },
  "netns-prefix": {
    type: "string",
    value: "P",
    env: SETTING_VARIABLES["netns-prefix"],
    help: "netns name prefix this install owns: vmnic-",
  },
  "hooks-dir": {
    type: "string",
    value: "DIR",
    env: SETTING_VARIABLES["hooks-dir"],
    help: "executable hooks: /etc/vmnic/hooks.d",
  },
  "policy-file": {
    type: "string",
    value: "FILE",
    env: SETTING_VARIABLES["policy-file"],
    help: "per-network policy defaults: /etc/vmnic/policy.json",
  },
  "plugin-timeout": {
    type: "string",
    value: "SECONDS",
    env: SETTING_VARIABLES["plugin-timeout"],
    help: "limit of one CNI plugin call: 60",
  },
  wait: {
    type: "string",
    value: "SECONDS",
    env: SETTING_VARIABLES["wait"],
    help: "how long to wait for a VM another process works on: 30",
  },
  socket: {
    type: "string",
    value: "PATH",
    env: SETTING_VARIABLES["socket"],
    help: "vmnic serve's socket, used when it answers: /run/vmnic/vmnic.sock",
  },
  "no-daemon": {
    type: "boolean",
    help: "run in this process even when vmnic serve answers",
  },
  traceparent: {
    type: "string",
    value: "TP",
    env: "TRACEPARENT",
    help:
      "W3C trace context for the plugins, hooks and events (docs/events.md)",
  },
};

/**
 * The command name in `argv`: the first argument that names a command and
 * is not the value of a global option before it.
 */
export function findCommand(
  argv: string[],
  isCommand: (name: string) => boolean,
): string | null {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") return null;
    if (a.startsWith("-")) {
      const name = a.replace(/^--?/, "");
      if (!a.includes("=") && GLOBAL_OPTIONS[name]?.type === "string") i++;
      continue;
    }
    if (isCommand(a)) return a;
  }
  return null;
}

/**
 * Parses `argv` with the global options and `options` (the command's);
 * throws {@linkcode UsageError} on anything unknown or misplaced.
 */
export function parse(
  argv: string[],
  command: string | null,
  options: Record<string, OptionSpec>,
  positionals: [number, number],
): Parsed {
  const table: Record<string, OptionSpec> = { ...GLOBAL_OPTIONS, ...options };
  const out = scan(argv, table, command);
  const values = out.values as Record<string, OptionValue>;
  const args = [...out.positionals];
  if (command !== null) args.splice(args.indexOf(command), 1);
  const parsed: Parsed = {
    command,
    positionals: args,
    values,
    json: values.json === true,
    help: values.help === true,
    sequence: out.sequence,
  };
  if (command !== null && !parsed.help) {
    const [min, max] = positionals;
    if (args.length < min) {
      throw new UsageError(`${command}: missing argument`, command);
    }
    if (max >= 0 && args.length > max) {
      throw new UsageError(
        `${command}: unexpected argument ${JSON.stringify(args[max])}`,
        command,
      );
    }
  }
  return parsed;
}

/**
 * Splits `argv` into option values and positionals: `--name value`,
 * `--name=value`, `-h`, and `--` ending the options. A value may start
 * with `-` but not with `--` (a forgotten value would swallow the next
 * flag). Written here rather than taken from `node:util`: the first
 * `node:` import costs a process about 20 ms of start-up.
 */
function scan(
  argv: string[],
  table: Record<string, OptionSpec>,
  command: string | null,
): {
  values: Record<string, OptionValue>;
  positionals: string[];
  sequence: [string, string][];
} {
  const values: Record<string, OptionValue> = {};
  const sequence: [string, string][] = [];
  const positionals: string[] = [];
  const fail = (msg: string) => {
    throw new UsageError(msg, command ?? undefined);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    // "-" and negative numbers are values, not options.
    if (!arg.startsWith("-") || arg === "-" || /^-\d/.test(arg)) {
      positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
    } else if (arg === "-h") {
      name = "help";
    } else {
      fail(`unknown option ${JSON.stringify(arg)}`);
      continue;
    }
    const spec = Object.hasOwn(table, name) ? table[name] : undefined;
    if (!spec) {
      fail(
        command
          ? `${command}: unknown option --${name} (see vmnic ${command} --help)`
          : `unknown option --${name}`,
      );
      continue;
    }
    if (spec.type === "boolean") {
      if (inline !== undefined) fail(`option --${name} takes no value`);
      values[name] = true;
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) {
        fail(
          `option --${name} needs a value (--${name} ${spec.value ?? "VALUE"})`,
        );
      }
      value = next;
      i++;
    }
    sequence.push([name, value!]);
    if (spec.multiple) {
      const prev = values[name];
      values[name] = [...(Array.isArray(prev) ? prev : []), value!];
    } else {
      values[name] = value; // the last one wins, as with most tools
    }
  }
  return { values, positionals, sequence };
}

/** A string option, or undefined. */
export function str(p: Parsed, key: string): string | undefined {
  const v = p.values[key];
  return typeof v === "string" ? v : undefined;
}

/** A repeated string option's values, in order. */
export function strs(p: Parsed, key: string): string[] {
  const v = p.values[key];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
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

/**
 * Refuses the misspelt setting variables among `names` (`VMNIC_ROOTDIR`):
 * a UsageError before anything happens. Returns a warning for each that is
 * only a word short of a setting (`VMNIC_ROOT`) not given by flag or
 * variable: it may be a hook's own variable (docs/cli.md, "Settings").
 */
export function checkSettingVariables(
  p: Parsed,
  names: readonly string[],
  env: (k: string) => string | undefined,
): string[] {
  const found = misspeltSettings(names);
  const meant = (m: Misspelt) =>
    m.meant.map((flag) => SETTING_VARIABLES[flag]).join(" or ");
  const sure = found.filter((m) => m.sure);
  if (sure.length) {
    throw new UsageError(
      sure.map((m) =>
        `${m.name} is not a vmnic setting; did you mean ${meant(m)}?`
      ).join(" ") +
        " Rename or unset it: vmnic does not read it (the settings: vmnic --help)",
    );
  }
  const given = (flag: SettingFlag) =>
    str(p, flag) !== undefined || !!env(SETTING_VARIABLES[flag]);
  return found.filter((m) => !m.meant.some(given)).map((m) =>
    `${m.name} is not a vmnic setting (did you mean ${meant(m)}?): ` +
    `vmnic uses the setting's default`
  );
}

/** Provider settings from flags, then the environment, then defaults. */
export function providerConfig(
  p: Parsed,
  env: (k: string) => string | undefined,
): ProviderConfig {
  // An empty variable counts as unset: VMNIC_ROOT_DIR="" must not put the
  // database in the current directory.
  const pick = (flag: string) => {
    const value = str(p, flag);
    if (value === "") {
      throw new UsageError(
        `--${flag} must not be empty`,
        p.command ?? undefined,
      );
    }
    return value ?? (env(GLOBAL_OPTIONS[flag].env!) || undefined);
  };
  const seconds = (flag: string, min: number, max: number) => {
    const v = pick(flag);
    if (v === undefined) return undefined;
    if (!/^\d+(\.\d+)?$/.test(v) || Number(v) < min || Number(v) > max) {
      throw new UsageError(
        `--${flag} (or ${GLOBAL_OPTIONS[flag].env}) must be a number of ` +
          `seconds from ${min} to ${max}, got ${JSON.stringify(v)}`,
        p.command ?? undefined,
      );
    }
    return Math.round(Number(v) * 1000);
  };
  const bin = pick("cni-bin-dir");
  const cfg: ProviderConfig = {
    rootDir: pick("root-dir"),
    runDir: pick("run-dir"),
    cniConfDir: pick("cni-conf-dir"),
    cniBinDirs: bin === undefined ? undefined : bin.split(":").filter(Boolean),
    netnsDir: pick("netns-dir"),
    netnsPrefix: pick("netns-prefix"),
    hooksDir: pick("hooks-dir"),
    policyFile: pick("policy-file"),
    pluginTimeoutMs: seconds("plugin-timeout", 0.001, 3600),
    lockWaitMs: seconds("wait", 0, 3600),
  };
  for (const k of Object.keys(cfg) as (keyof ProviderConfig)[]) {
    if (cfg[k] === undefined) delete cfg[k];
  }
  return cfg;
}
