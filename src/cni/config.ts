/**
 * CNI network configuration: validation of conflists (and single-plugin
 * `.conf` files, wrapped as one-plugin lists as libcni does) and loading of a
 * configuration directory in file-name order.
 *
 * @module
 */
import { join } from "../sys/path.ts";
import { CniConfigError } from "./errors.ts";
import {
  compareCniVersions,
  isCniVersion,
  SUPPORTED_CNI_VERSIONS,
} from "./version.ts";

/** Largest configuration accepted, in bytes; real ones are a few KiB. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Deepest JSON nesting accepted; real configs nest a handful of levels. */
export const MAX_CONFIG_DEPTH = 64;
/** File name endings read from a configuration directory. */
export const CONFIG_EXTENSIONS: readonly string[] = [
  ".conflist",
  ".conf",
  ".json",
];

/** One plugin of a network list, as validated. */
export interface PluginConfig {
  /** The plugin type: the executable's name in the bin path. */
  readonly type: string;
  /** Capabilities the plugin declares (`mac`, `ips`, `portMappings`, ...). */
  readonly capabilities: Readonly<Record<string, boolean>>;
  /** The plugin's whole configuration object, exactly as written. */
  readonly conf: Readonly<Record<string, unknown>>;
}

/** A validated network configuration list. */
export interface NetworkConfigList {
  /** The network name. */
  readonly name: string;
  /** The CNI version every plugin of the list is run with. */
  readonly cniVersion: string;
  /** True when CHECK must not be run for this network. */
  readonly disableCheck: boolean;
  /** True when GC must not be run for this network. */
  readonly disableGC: boolean;
  /** The plugins, in ADD order. */
  readonly plugins: readonly PluginConfig[];
  /**
   * The list's JSON text exactly as used: the file's bytes for a conflist,
   * the wrapping list for a single-plugin config. Persist this to DEL later.
   */
  readonly raw: string;
  /** Where the list came from: a file path or a caller's label. */
  readonly source: string;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;

/** One problem found in a configuration: where (a JSON path) and what. */
interface Issue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

function missingOr(what: string, expected: string, input: unknown): string {
  return input === undefined
    ? `missing '${what}'`
    : `'${what}' must be ${expected}`;
}

/** A JSON object: not null, not an array (what a JSON parse gives as `{}`). */
function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The JSON kind of a value, for messages: never the value itself. */
function kindOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "a list" : `a ${typeof v}`;
}

/** A `cniVersion`-like value: a string of the form `1.0.0`. */
function checkVersion(
  v: unknown,
  what: string,
  path: Issue["path"],
  issues: Issue[],
): void {
  if (typeof v !== "string") {
    issues.push({ path, message: missingOr(what, "a string", v) });
  } else if (!isCniVersion(v)) {
    issues.push({ path, message: `'${what}' must look like 1.0.0` });
  }
}

/** libcni also accepts the strings "true"/"false" for these flags. */
function checkFlag(v: unknown, what: string, issues: Issue[]): boolean {
  if (v === undefined || v === false || v === "false") return false;
  if (v === true || v === "true") return true;
  issues.push({ path: [what], message: `'${what}' must be true or false` });
  return false;
}

/** A plugin type is exec'd from the bin path: a plain executable name. */
function checkPluginType(
  v: unknown,
  what: string,
  path: Issue["path"],
  issues: Issue[],
): void {
  if (typeof v !== "string") {
    issues.push({ path, message: missingOr(what, "a string", v) });
    return;
  }
  // Every rule is checked, so one message names all that a type breaks.
  if (v.length < 1) issues.push({ path, message: `'${what}' is empty` });
  if (v.includes("/") || v.includes("..")) {
    issues.push({
      path,
      message: `'${what}' must be a plain executable name (no '/' or '..')`,
    });
  }
  if (v.includes("\0")) {
    issues.push({ path, message: `'${what}' contains a NUL byte` });
  }
}

/** Checks one plugin; returns its capabilities (a fresh copy) when valid. */
function checkPlugin(
  p: unknown,
  i: number,
  issues: Issue[],
): Record<string, boolean> | undefined {
  const at = ["plugins", i] as const;
  if (!isObject(p)) {
    issues.push({ path: at, message: `must be an object, not ${kindOf(p)}` });
    return undefined;
  }
  checkPluginType(p.type, "type", [...at, "type"], issues);
  // The plugin execs its IPAM plugin from the same bin path: the same rule.
  if (p.ipam !== undefined) {
    if (!isObject(p.ipam)) {
      issues.push({
        path: [...at, "ipam"],
        message: "'ipam' must be an object",
      });
    } else if (p.ipam.type !== undefined) {
      checkPluginType(
        p.ipam.type,
        "ipam.type",
        [...at, "ipam", "type"],
        issues,
      );
    }
  }
  if (p.capabilities === undefined) return undefined;
  if (!isObject(p.capabilities)) {
    issues.push({
      path: [...at, "capabilities"],
      message: "'capabilities' must map names to true/false",
    });
    return undefined;
  }
  const caps: Record<string, boolean> = {};
  for (const [name, on] of Object.entries(p.capabilities)) {
    // An own "__proto__" key (JSON.parse makes one) is skipped, never
    // assigned: assigning it would replace the copy's prototype.
    if (name === "__proto__") continue;
    if (typeof on !== "boolean") {
      issues.push({
        path: [...at, "capabilities", name],
        message: "must be true or false",
      });
    } else caps[name] = on;
  }
  return caps;
}

/** The list's fields as checked (`undefined` where absent and optional). */
interface CheckedList {
  name: string;
  cniVersion?: string;
  cniVersions?: string[];
  disableCheck: boolean;
  disableGC: boolean;
  capabilities: (Record<string, boolean> | undefined)[];
}

/**
 * Checks every rule of a list and reports every problem found, in field
 * order (name, cniVersion, cniVersions, disableCheck, disableGC, plugins);
 * keys it does not know are left alone.
 */
function checkList(obj: Record<string, unknown>, issues: Issue[]): CheckedList {
  const { name, cniVersion, cniVersions, plugins } = obj;
  if (typeof name !== "string") {
    issues.push({
      path: ["name"],
      message: missingOr("name", "a string", name),
    });
  } else if (!NAME_RE.test(name)) {
    issues.push({
      path: ["name"],
      message:
        "'name' must start with a letter or digit and hold only letters, digits, '_', '.', '-'",
    });
  }
  if (cniVersion !== undefined) {
    checkVersion(cniVersion, "cniVersion", ["cniVersion"], issues);
  }
  if (cniVersions !== undefined) {
    if (!Array.isArray(cniVersions)) {
      issues.push({
        path: ["cniVersions"],
        message: "'cniVersions' must be a list of versions",
      });
    } else {
      // Index loops, not forEach: a hole is checked (as missing), not skipped.
      for (let i = 0; i < cniVersions.length; i++) {
        checkVersion(
          cniVersions[i],
          "cniVersions[]",
          ["cniVersions", i],
          issues,
        );
      }
    }
  }
  const disableCheck = checkFlag(obj.disableCheck, "disableCheck", issues);
  const disableGC = checkFlag(obj.disableGC, "disableGC", issues);
  const capabilities: (Record<string, boolean> | undefined)[] = [];
  if (!Array.isArray(plugins)) {
    issues.push({
      path: ["plugins"],
      message: missingOr("plugins", "a list", plugins),
    });
  } else {
    for (let i = 0; i < plugins.length; i++) {
      capabilities.push(checkPlugin(plugins[i], i, issues));
    }
    if (plugins.length < 1) {
      issues.push({ path: ["plugins"], message: "'plugins' is empty" });
    }
  }
  return {
    name: name as string,
    cniVersion: cniVersion as string | undefined,
    cniVersions: cniVersions as string[] | undefined,
    disableCheck,
    disableGC,
    capabilities,
  };
}

/** Parses and validates a network configuration list (a `.conflist`). */
export function parseConfList(
  input: string | Record<string, unknown>,
  source = "(memory)",
): NetworkConfigList {
  const { obj, raw } = decode(input, source);
  return validateList(obj, raw, source);
}

/**
 * Parses a single-plugin configuration (a `.conf`) and wraps it as a
 * one-plugin list, taking the list's name and version from it.
 */
export function parseConf(
  input: string | Record<string, unknown>,
  source = "(memory)",
): NetworkConfigList {
  const { obj } = decode(input, source);
  if (Array.isArray(obj.plugins) && obj.type === undefined) {
    throw new CniConfigError(
      source,
      "a list with 'plugins' belongs in a .conflist file; a single-plugin config needs a 'type'",
    );
  }
  const wrapped: Record<string, unknown> = {
    cniVersion: obj.cniVersion,
    name: obj.name,
    plugins: [obj],
  };
  if (obj.disableCheck !== undefined) wrapped.disableCheck = obj.disableCheck;
  return validateList(wrapped, JSON.stringify(wrapped), source);
}

/** Reads one configuration file; `.conflist` as a list, others as one plugin. */
export async function loadConfFile(path: string): Promise<NetworkConfigList> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    throw new CniConfigError(path, `cannot read: ${errText(e)}`, { cause: e });
  }
  if (!info.isFile) throw new CniConfigError(path, "not a regular file");
  if (info.size > MAX_CONFIG_BYTES) {
    throw new CniConfigError(
      path,
      `file is ${info.size} bytes, larger than the ${MAX_CONFIG_BYTES} allowed`,
    );
  }
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new CniConfigError(path, `cannot read: ${errText(e)}`, { cause: e });
  }
  return path.endsWith(".conflist")
    ? parseConfList(text, path)
    : parseConf(text, path);
}

/** The networks of a configuration directory, with the files that failed. */
export class NetworkConfigSet {
  /** The valid networks, in file-name order. */
  readonly networks: readonly NetworkConfigList[];
  /** One error per file that could not be used, naming the file. */
  readonly errors: readonly CniConfigError[];

  /** A set of already validated networks and the errors of the rest. */
  constructor(
    networks: readonly NetworkConfigList[],
    errors: readonly CniConfigError[],
  ) {
    this.networks = networks;
    this.errors = errors;
  }

  /** The default network: the first valid one by file name, or `null`. */
  get defaultNetwork(): NetworkConfigList | null {
    return this.networks[0] ?? null;
  }

  /** The first network (by file name) with this name, or `null`. */
  findNetwork(name: string): NetworkConfigList | null {
    return this.networks.find((n) => n.name === name) ?? null;
  }
}

/**
 * Loads every `*.conflist`, `*.conf` and `*.json` of `dir` in file-name
 * order. A broken file lands in `errors` and the others still load; a
 * missing directory gives no networks and no error.
 */
export async function loadConfDir(dir: string): Promise<NetworkConfigSet> {
  const files: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (CONFIG_EXTENSIONS.some((ext) => entry.name.endsWith(ext))) {
        files.push(entry.name);
      }
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return new NetworkConfigSet([], []);
    throw new CniConfigError(dir, `cannot list directory: ${errText(e)}`, {
      cause: e,
    });
  }
  // Byte order, as libcni's sort.Strings: independent of the locale.
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const networks: NetworkConfigList[] = [];
  const errors: CniConfigError[] = [];
  for (const name of files) {
    const path = join(dir, name);
    try {
      const info = await Deno.stat(path);
      if (info.isDirectory) continue;
      networks.push(await loadConfFile(path));
    } catch (e) {
      errors.push(
        e instanceof CniConfigError
          ? e
          : new CniConfigError(path, errText(e), { cause: e }),
      );
    }
  }
  return new NetworkConfigSet(networks, errors);
}

function decode(
  input: string | Record<string, unknown>,
  source: string,
): { obj: Record<string, unknown>; raw: string } {
  let raw: string;
  let obj: unknown;
  if (typeof input === "string") {
    raw = input;
    checkSize(new TextEncoder().encode(raw).length, source);
    checkTextDepth(raw, source);
    try {
      obj = JSON.parse(raw);
    } catch (e) {
      // Never quote the text: the file may be a link to a secret.
      throw new CniConfigError(source, `not valid JSON${jsonErrorWhere(e)}`);
    }
  } else {
    checkObjectDepth(input, 0, source);
    raw = JSON.stringify(input);
    checkSize(new TextEncoder().encode(raw).length, source);
    obj = JSON.parse(raw); // a private deep copy the caller cannot mutate
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new CniConfigError(source, "top level must be a JSON object");
  }
  return { obj: obj as Record<string, unknown>, raw };
}

function validateList(
  obj: Record<string, unknown>,
  raw: string,
  source: string,
): NetworkConfigList {
  const issues: Issue[] = [];
  const list = checkList(obj, issues);
  if (issues.length) throw new CniConfigError(source, describeIssues(issues));
  const cniVersion = chooseVersion(list.cniVersion, list.cniVersions, source);
  const conf = obj.plugins as Record<string, unknown>[];
  const plugins = conf.map((p, i): PluginConfig => ({
    type: p.type as string,
    capabilities: Object.freeze(list.capabilities[i] ?? {}),
    conf: Object.freeze(p),
  }));
  return Object.freeze({
    name: list.name,
    cniVersion,
    disableCheck: list.disableCheck,
    disableGC: list.disableGC,
    plugins: Object.freeze(plugins),
    raw,
    source,
  });
}

/** The spec's version selection: the highest of `cniVersions` we speak, else `cniVersion`. */
function chooseVersion(
  cniVersion: string | undefined,
  cniVersions: string[] | undefined,
  source: string,
): string {
  if (cniVersions?.length) {
    const usable = cniVersions.filter((v) => SUPPORTED_CNI_VERSIONS.includes(v))
      .sort(compareCniVersions);
    if (usable.length) return usable[usable.length - 1];
    if (!cniVersion) {
      throw new CniConfigError(
        source,
        `none of cniVersions ${
          cniVersions.join(", ")
        } is supported (supported: ${SUPPORTED_CNI_VERSIONS.join(", ")})`,
      );
    }
  }
  if (!cniVersion) throw new CniConfigError(source, "missing 'cniVersion'");
  if (!SUPPORTED_CNI_VERSIONS.includes(cniVersion)) {
    throw new CniConfigError(
      source,
      `cniVersion ${cniVersion} is not supported (supported: ${
        SUPPORTED_CNI_VERSIONS.join(", ")
      })`,
    );
  }
  return cniVersion;
}

/**
 * The first five issues, each as `path: message` (`plugins[0].ipam.type:
 * ...`); a top-level field's message alone, since it names the field.
 */
function describeIssues(issues: readonly Issue[]): string {
  return issues.slice(0, 5).map((iss) => {
    const path = iss.path.map((p, i) =>
      typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`
    ).join("");
    // The message names the field already for top-level fields.
    return iss.path.length > 1 ? `${path}: ${iss.message}` : iss.message;
  }).join("; ");
}

function checkSize(bytes: number, source: string): void {
  if (bytes > MAX_CONFIG_BYTES) {
    throw new CniConfigError(
      source,
      `config is ${bytes} bytes, larger than the ${MAX_CONFIG_BYTES} allowed`,
    );
  }
}

/** Rejects absurd nesting before JSON.parse, which would recurse on it. */
function checkTextDepth(text: string, source: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_CONFIG_DEPTH) throw tooDeep(source);
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
}

function checkObjectDepth(v: unknown, depth: number, source: string): void {
  if (typeof v !== "object" || v === null) return;
  if (depth >= MAX_CONFIG_DEPTH) throw tooDeep(source);
  for (const child of Object.values(v)) {
    checkObjectDepth(child, depth + 1, source);
  }
}

function tooDeep(source: string): CniConfigError {
  return new CniConfigError(
    source,
    `JSON nested deeper than ${MAX_CONFIG_DEPTH} levels`,
  );
}

/**
 * Where JSON.parse gave up (" at line L column C"), without the excerpt of
 * the text that its message carries.
 */
function jsonErrorWhere(e: unknown): string {
  const m = /line (\d+) column (\d+)/.exec(errText(e)) ??
    /position (\d+)/.exec(errText(e));
  if (!m) return "";
  return m.length === 3
    ? ` (at line ${m[1]} column ${m[2]})`
    : ` (at byte ${m[1]})`;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
