/**
 * Plugin lookup in the CNI bin path and plugin execution as the CNI spec
 * describes it: environment variables in, config on stdin, JSON on stdout,
 * bounded by a timeout after which the plugin (optionally with its whole
 * process group) is killed and reaped.
 *
 * @module
 */
import { after, within } from "../sys/timers.ts";
import { join } from "../sys/path.ts";
import {
  CniExecError,
  CniInvalidArgumentError,
  CniPluginError,
  CniPluginNotFoundError,
} from "./errors.ts";

/** The default plugin search path, as the design's `--cni-bin-dir`. */
export const DEFAULT_BIN_DIRS: readonly string[] = [
  "/opt/cni/bin",
  "/usr/lib/cni",
  "/usr/libexec/cni",
];
/** Default limit for one plugin call. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Largest stdout accepted from a plugin; results are a few KiB. */
export const MAX_PLUGIN_OUTPUT_BYTES = 1024 * 1024;
/** How much stderr is kept for error messages. */
const STDERR_KEEP = 4096;
/**
 * How long the output pipes may stay open after the plugin exited: a child
 * it left running may hold them forever, and what the plugin printed has
 * reached the pipe by the time it exits.
 */
const PIPE_GRACE_MS = 250;
/** Any execute bit. */
const S_IXUGO = 0o111;

/** Rejects a plugin type that could escape the bin directories. */
export function assertPluginType(type: string): void {
  if (
    !type || type.includes("/") || type.includes("..") || type.includes("\0")
  ) {
    throw new CniInvalidArgumentError(
      "plugin type",
      `${JSON.stringify(type)} is not a plain executable name`,
    );
  }
}

/**
 * Finds the executable for a plugin type: the first `dir/type` that is an
 * executable regular file, in search-path order.
 */
export async function findPlugin(
  type: string,
  dirs: readonly string[],
): Promise<string> {
  assertPluginType(type);
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, type);
    try {
      const info = await Deno.stat(path);
      if (info.isFile && ((info.mode ?? 0) & S_IXUGO) !== 0) return path;
    } catch {
      // Missing or unreadable here: keep looking, as libcni's FindInPath does.
    }
  }
  throw new CniPluginNotFoundError(type, dirs);
}

/** One plugin invocation. */
export interface PluginExecRequest {
  /** Absolute path of the plugin executable. */
  path: string;
  /** The plugin type, for messages. */
  pluginType: string;
  /** `ADD`, `DEL`, `CHECK`, `VERSION`, `STATUS` or `GC`. */
  command: string;
  /** The plugin's configuration, given on stdin. */
  stdin: string;
  /** Environment added to the inherited one (the `CNI_*` variables). */
  env: Record<string, string>;
  /** Kill the plugin after this many milliseconds. */
  timeoutMs: number;
  /**
   * Run the plugin in its own process group and kill the whole group on
   * timeout (also what it forked). On by default; it costs about 0.15 ms a
   * call (measured: 4.3 vs 4.45 ms for a plugin exec).
   */
  killProcessGroup?: boolean;
  /** Told the plugin's pid as soon as it runs (it leads its own group). */
  onSpawn?: (pid: number) => void;
}

/**
 * How the runtime finds and runs plugins (libcni's `invoke.Exec`): the real
 * one execs binaries; tests hand in fakes for failures real plugins cannot
 * be made to produce.
 */
export interface PluginExec {
  /** The executable of a plugin type in the search path. */
  find(type: string, dirs: readonly string[]): Promise<string>;
  /** Runs one plugin command; its parsed stdout, or null for none. */
  exec(req: PluginExecRequest): Promise<unknown>;
  /**
   * A key that changes when the binary at `path` is replaced (path, inode,
   * size, mtime), under which its VERSION answer may be kept; null to
   * never keep it.
   */
  identity(path: string): Promise<string | null>;
}

/** The real {@linkcode PluginExec}: binaries in the CNI bin path. */
export const binaryPluginExec: PluginExec = {
  find: findPlugin,
  exec: execPlugin,
  async identity(path: string): Promise<string | null> {
    const st = await Deno.stat(path);
    return `${path}|${st.ino}|${st.size}|${st.mtime?.getTime()}`;
  },
};

/**
 * Runs a plugin and returns its stdout parsed as JSON, or `null` when it
 * exited 0 without output (DEL, CHECK). A CNI error object on stdout becomes
 * a {@linkcode CniPluginError}; every other failure a
 * {@linkcode CniExecError} with its `kind`.
 */
export async function execPlugin(req: PluginExecRequest): Promise<unknown> {
  const what = { plugin: req.pluginType, command: req.command };
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(req.path, {
      env: req.env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: req.killProcessGroup ?? true,
    }).spawn();
  } catch (e) {
    throw new CniExecError({
      ...what,
      kind: "spawn",
      detail: `cannot start ${req.path}: ${e instanceof Error ? e.message : e}`,
    }, { cause: e });
  }
  try {
    req.onSpawn?.(child.pid);
  } catch {
    // The plugin runs: an observer that failed to note it must not leave
    // it running unwaited, nor fail its run.
  }

  let timedOut = false;
  let tooLarge = false;
  const killPlugin = () => {
    try {
      if (req.killProcessGroup ?? true) Deno.kill(-child.pid, "SIGKILL");
      else child.kill("SIGKILL");
    } catch {
      // Already gone; its status is collected below.
    }
  };
  const deadline = Date.now() + req.timeoutMs;
  const timer = after(req.timeoutMs, () => {
    timedOut = true;
    killPlugin();
  });

  const stdoutReader = child.stdout.getReader();
  const stderrReader = child.stderr.getReader();
  const stdoutP = readAll(stdoutReader, MAX_PLUGIN_OUTPUT_BYTES, () => {
    tooLarge = true;
    killPlugin();
  });
  const stderrP = readAll(stderrReader, STDERR_KEEP);
  const stdinWriter = child.stdin.getWriter();
  const stdinP = writeAll(stdinWriter, new TextEncoder().encode(req.stdin));

  let status: Deno.CommandStatus;
  let stdout: Uint8Array;
  let stderrBytes: Uint8Array;
  try {
    status = await child.status;
    // A child the plugin left running may hold the pipes open: once the
    // plugin itself has exited, wait only briefly for them to close (1 s
    // once it was killed), then take what it printed.
    const outputs = await within(
      Promise.all([stdoutP, stderrP, stdinP]),
      timedOut
        ? 1000
        : Math.min(PIPE_GRACE_MS, Math.max(deadline - Date.now(), 0)),
    );
    if (!outputs) {
      await Promise.allSettled([
        stdoutReader.cancel(),
        stderrReader.cancel(),
        stdinWriter.abort(),
      ]);
      [stdout, stderrBytes] = [await stdoutP, await stderrP];
      await stdinP;
    } else {
      [stdout, stderrBytes] = outputs;
    }
  } finally {
    timer.cancel();
  }
  const stderr = new TextDecoder().decode(stderrBytes);
  const fail = (
    kind: CniExecError["kind"],
    detail: string,
    cause?: unknown,
  ) =>
    new CniExecError({
      ...what,
      kind,
      detail,
      exitCode: status.signal ? undefined : status.code,
      signal: status.signal ?? undefined,
      stderr,
    }, cause === undefined ? undefined : { cause });

  if (tooLarge) {
    throw fail(
      "output-too-large",
      `printed more than ${MAX_PLUGIN_OUTPUT_BYTES} bytes and was killed`,
    );
  }
  if (timedOut) {
    throw fail("timeout", `timed out after ${req.timeoutMs} ms and was killed`);
  }
  if (status.signal) {
    throw fail("signal", `was killed by signal ${status.signal}`);
  }
  const text = new TextDecoder().decode(stdout);
  if (status.code !== 0) {
    if (!text.trim()) {
      throw fail(
        "no-output",
        `exited with status ${status.code} and no error message on stdout`,
      );
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw fail(
        "invalid-output",
        `exited with status ${status.code}; its error message is not JSON: ${
          excerpt(text)
        }`,
        e,
      );
    }
    const err = obj as { code?: unknown; msg?: unknown; details?: unknown };
    if (
      typeof obj !== "object" || obj === null || typeof err.code !== "number"
    ) {
      throw fail(
        "invalid-output",
        `exited with status ${status.code}; its output is not a CNI error object: ${
          excerpt(text)
        }`,
      );
    }
    throw new CniPluginError({
      ...what,
      code: err.code,
      msg: typeof err.msg === "string" ? err.msg : "",
      details: typeof err.details === "string" ? err.details : undefined,
      exitCode: status.code,
      stderr,
    });
  }
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fail(
      "invalid-output",
      `printed output that is not JSON: ${excerpt(text)}`,
      e,
    );
  }
}

async function readAll(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  cap: number,
  onOverflow?: () => void,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let overflowed = false;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size >= cap) {
        // Keep draining (the process is being killed) but stop storing.
        if (!overflowed && onOverflow) onOverflow();
        overflowed = true;
        continue;
      }
      const room = cap - size;
      const part = value.length > room ? value.subarray(0, room) : value;
      chunks.push(part);
      size += part.length;
      if (value.length > room && onOverflow && !overflowed) {
        overflowed = true;
        onOverflow();
      }
    }
  } catch {
    // Cancelled or broken pipe: what was read so far is all there is.
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

async function writeAll(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  bytes: Uint8Array,
): Promise<void> {
  try {
    await writer.write(bytes);
    await writer.close();
  } catch {
    // The plugin exited or closed stdin without reading it all; its exit
    // status and output tell what happened.
    await writer.abort().catch(() => {});
  } finally {
    writer.releaseLock();
  }
}

function excerpt(text: string): string {
  const t = text.trim();
  return JSON.stringify(t.length > 200 ? `${t.slice(0, 200)}…` : t);
}
