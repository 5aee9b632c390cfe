/**
 * Typed errors of the CNI runtime. Every error names what was attempted and
 * on which object (config file, plugin, network), so a caller can report it
 * without guessing.
 *
 * @module
 */

/** Base class of every error the CNI runtime throws. */
export class CniError extends Error {
  /**
   * Set on the original error of a failed ADD when the best-effort DEL that
   * rolled the list back failed too.
   */
  rollbackError?: unknown;

  /** Builds the error; the message is derived from the fields. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CniError";
  }
}

/** A network configuration that cannot be used, naming its source and why. */
export class CniConfigError extends CniError {
  /** Where the configuration came from: a file path or a caller's label. */
  readonly source: string;
  /** Why it was rejected. */
  readonly reason: string;

  /** Builds the error; the message is derived from the fields. */
  constructor(source: string, reason: string, options?: ErrorOptions) {
    super(`CNI config ${source}: ${reason}`, options);
    this.name = "CniConfigError";
    this.source = source;
    this.reason = reason;
  }
}

/** A runtime argument (container id, ifName, CNI_ARGS, ...) that is invalid. */
export class CniInvalidArgumentError extends CniError {
  /** The argument's name, e.g. `"ifName"`. */
  readonly argument: string;

  /** Builds the error; the message is derived from the fields. */
  constructor(argument: string, reason: string) {
    super(`invalid CNI ${argument}: ${reason}`);
    this.name = "CniInvalidArgumentError";
    this.argument = argument;
  }
}

/** No executable for a plugin `type` in any directory of the search path. */
export class CniPluginNotFoundError extends CniError {
  /** The plugin type looked for. */
  readonly pluginType: string;
  /** The directories searched, in order. */
  readonly dirs: readonly string[];

  /** Builds the error; the message is derived from the fields. */
  constructor(pluginType: string, dirs: readonly string[]) {
    super(
      `CNI plugin "${pluginType}" not found in ${
        dirs.length ? dirs.join(", ") : "(empty search path)"
      }`,
    );
    this.name = "CniPluginNotFoundError";
    this.pluginType = pluginType;
    this.dirs = dirs;
  }
}

/**
 * A plugin that answered with a CNI error object (`code`, `msg`,
 * `details`); those three are kept exactly as the plugin sent them.
 */
export class CniPluginError extends CniError {
  /** The plugin type (`bridge`, `host-local`, ...). */
  readonly plugin: string;
  /** The CNI command (`ADD`, `DEL`, `CHECK`, `VERSION`, `STATUS`, `GC`). */
  readonly command: string;
  /** The CNI error code (1-99 well-known, 100+ plugin specific). */
  readonly code: number;
  /** The plugin's message. */
  readonly msg: string;
  /** The plugin's details, if any. */
  readonly details?: string;
  /** The plugin's exit status. */
  readonly exitCode: number;
  /** What the plugin wrote to stderr (truncated). */
  readonly stderr: string;

  /** Builds the error; the message is derived from the fields. */
  constructor(
    init: {
      plugin: string;
      command: string;
      code: number;
      msg: string;
      details?: string;
      exitCode: number;
      stderr: string;
    },
  ) {
    super(
      `CNI plugin ${init.plugin} ${init.command} failed (code ${init.code}): ${init.msg}${
        init.details ? `; ${init.details}` : ""
      }`,
    );
    this.name = "CniPluginError";
    this.plugin = init.plugin;
    this.command = init.command;
    this.code = init.code;
    this.msg = init.msg;
    this.details = init.details;
    this.exitCode = init.exitCode;
    this.stderr = init.stderr;
  }
}

/**
 * How a plugin execution failed when the plugin gave no CNI error object:
 * - `spawn`: it could not be started;
 * - `timeout`: it ran past the runtime's timeout and was killed;
 * - `signal`: it was killed by a signal;
 * - `no-output`: it exited non-zero and printed nothing on stdout;
 * - `invalid-output`: stdout is not JSON, or not the JSON expected;
 * - `empty-result`: it exited 0 but printed no result where one is required;
 * - `output-too-large`: stdout grew past the limit and it was killed.
 */
export type CniExecFailure =
  | "spawn"
  | "timeout"
  | "signal"
  | "no-output"
  | "invalid-output"
  | "empty-result"
  | "output-too-large";

/** A plugin execution that failed without a CNI error object. */
export class CniExecError extends CniError {
  /** What went wrong; see {@linkcode CniExecFailure}. */
  readonly kind: CniExecFailure;
  /** The plugin type. */
  readonly plugin: string;
  /** The CNI command. */
  readonly command: string;
  /** The exit status, when the plugin exited. */
  readonly exitCode?: number;
  /** The signal that ended the plugin, when one did. */
  readonly signal?: string;
  /** What the plugin wrote to stderr (truncated). */
  readonly stderr: string;

  /** Builds the error; the message is derived from the fields. */
  constructor(
    init: {
      kind: CniExecFailure;
      plugin: string;
      command: string;
      detail: string;
      exitCode?: number;
      signal?: string;
      stderr?: string;
    },
    options?: ErrorOptions,
  ) {
    const stderr = init.stderr ?? "";
    super(
      `CNI plugin ${init.plugin} ${init.command}: ${init.detail}${
        stderr.trim() ? ` (stderr: ${stderr.trim()})` : ""
      }`,
      options,
    );
    this.name = "CniExecError";
    this.kind = init.kind;
    this.plugin = init.plugin;
    this.command = init.command;
    this.exitCode = init.exitCode;
    this.signal = init.signal;
    this.stderr = stderr;
  }
}

/** A plugin that does not support the CNI version a list asks for. */
export class CniVersionError extends CniError {
  /** The plugin type. */
  readonly plugin: string;
  /** The version the network list asks for. */
  readonly wanted: string;
  /** The versions the plugin reported. */
  readonly supported: readonly string[];

  /** Builds the error; the message is derived from the fields. */
  constructor(
    plugin: string,
    path: string,
    wanted: string,
    supported: readonly string[],
  ) {
    super(
      `CNI plugin ${plugin} (${path}) does not support CNI version ${wanted}; it supports ${
        supported.join(", ") || "none"
      }`,
    );
    this.name = "CniVersionError";
    this.plugin = plugin;
    this.wanted = wanted;
    this.supported = supported;
  }
}

/** A result a plugin returned (or a cache held) that is not a valid CNI result. */
export class CniResultError extends CniError {
  /** Where the result came from, e.g. `"bridge ADD"` or a cache file. */
  readonly source: string;

  /** Builds the error; the message is derived from the fields. */
  constructor(source: string, reason: string, options?: ErrorOptions) {
    super(`invalid CNI result from ${source}: ${reason}`, options);
    this.name = "CniResultError";
    this.source = source;
  }
}

/** The attachment cache could not be read or written. */
export class CniCacheError extends CniError {
  /** What was attempted: `get`, `put`, `delete`, `list`. */
  readonly op: string;
  /** The cache entry (file path or key) concerned. */
  readonly object: string;

  /** Builds the error; the message is derived from the fields. */
  constructor(
    op: string,
    object: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`CNI cache ${op} ${object}: ${reason}`, options);
    this.name = "CniCacheError";
    this.op = op;
    this.object = object;
  }
}

/** Some parts of a GC failed; the rest was still done. */
export class CniGcError extends CniError {
  /** The network GC ran on. */
  readonly network: string;
  /** Every failure, in the order met. */
  readonly errors: readonly unknown[];

  /** Builds the error; the message is derived from the fields. */
  constructor(network: string, errors: readonly unknown[]) {
    super(
      `CNI GC of network ${network}: ${errors.length} failure(s): ${
        errors.map((e) => e instanceof Error ? e.message : String(e)).join("; ")
      }`,
    );
    this.name = "CniGcError";
    this.network = network;
    this.errors = errors;
  }
}
