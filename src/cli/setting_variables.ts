/**
 * The settings' environment variables, and what catches a misspelt one
 * before a command runs (docs/cli.md, "Settings"): unnoticed, the setting
 * meant keeps its default, and the command acts on the host's own install
 * or goes to the daemon serving it. No imports: the CLI's fast path
 * (`forward.ts`) asks before it hands a line over.
 *
 * @module
 */

/** Each setting's variable, by its flag. */
export const SETTING_VARIABLES = {
  "root-dir": "VMNIC_ROOT_DIR",
  "run-dir": "VMNIC_RUN_DIR",
  "cni-conf-dir": "VMNIC_CNI_CONF_DIR",
  "cni-bin-dir": "VMNIC_CNI_BIN_DIR",
  "netns-dir": "VMNIC_NETNS_DIR",
  "netns-prefix": "VMNIC_NETNS_PREFIX",
  "hooks-dir": "VMNIC_HOOKS_DIR",
  "policy-file": "VMNIC_POLICY_FILE",
  "plugin-timeout": "VMNIC_PLUGIN_TIMEOUT",
  wait: "VMNIC_WAIT",
  socket: "VMNIC_SOCKET",
} as const;

/** A setting's flag (`root-dir`). */
export type SettingFlag = keyof typeof SETTING_VARIABLES;

/** A variable set that reads like a setting's. */
export interface Misspelt {
  /** The variable as set. */
  name: string;
  /** The flags of the settings it may stand for. */
  meant: SettingFlag[];
  /**
   * Surely a slip: the setting's name in other case or underscores, or
   * with one letter dropped, added or swapped with its neighbour (for names
   * of 6 letters or more). The CLI refuses it. Otherwise it is a word short
   * (`VMNIC_ROOT`), which may as well be a hook's own variable: the CLI
   * warns, unless the setting is given anyway.
   */
  sure: boolean;
}

/**
 * The `VMNIC_*` variables among `names` that are not settings but read like
 * one. Other variables, such as hooks' own (`VMNIC_AUDIT_LOG`), are not
 * reported.
 */
export function misspeltSettings(names: Iterable<string>): Misspelt[] {
  const settings = Object.entries(SETTING_VARIABLES) as [SettingFlag, string][];
  const known = new Set<string>(Object.values(SETTING_VARIABLES));
  const found: Misspelt[] = [];
  for (const name of names) {
    if (!name.startsWith(PREFIX) || known.has(name)) continue;
    const bare = name.slice(PREFIX.length).toUpperCase();
    const sure = settings.filter(([, s]) => slipOf(letters(bare), s));
    if (sure.length) {
      found.push({ name, meant: sure.map(([flag]) => flag), sure: true });
      continue;
    }
    const short = settings.filter(([, s]) => oneWordMore(bare, s));
    if (short.length) {
      found.push({ name, meant: short.map(([flag]) => flag), sure: false });
    }
  }
  return found;
}

const PREFIX = "VMNIC_";

/** A name's letters: without the prefix, underscores or case. */
function letters(bare: string): string {
  return bare.replaceAll("_", "");
}

/** Whether `name` (as letters) is the setting's with one slip, or none. */
function slipOf(name: string, setting: string): boolean {
  const s = letters(setting.slice(PREFIX.length));
  if (name === s) return true;
  if (s.length < 6) return false;
  if (Math.abs(name.length - s.length) === 1) {
    const [long, short] = name.length > s.length ? [name, s] : [s, name];
    for (let i = 0; i < long.length; i++) {
      if (long.slice(0, i) + long.slice(i + 1) === short) return true;
    }
    return false;
  }
  if (name.length !== s.length) return false;
  for (let i = 0; i + 1 < s.length; i++) {
    if (name[i] !== s[i]) {
      return name[i] === s[i + 1] && name[i + 1] === s[i] &&
        name.slice(i + 2) === s.slice(i + 2);
    }
  }
  return false;
}

/** Whether the setting is `bare` and one more word (`ROOT` of `ROOT_DIR`). */
function oneWordMore(bare: string, setting: string): boolean {
  const s = setting.slice(PREFIX.length);
  return s.startsWith(bare + "_") && !s.slice(bare.length + 1).includes("_");
}
