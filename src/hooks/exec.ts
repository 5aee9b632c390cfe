/**
 * Executable hooks from the host's hooks dir: finding them, refusing unsafe
 * ones (fail closed), and running one with a timeout.
 *
 * An executable hook gets the event name as argv[1] and the context JSON on
 * stdin. Optional header comments in its first lines:
 * `# vmnic-timeout: 30` (seconds) and `# vmnic-events: beforeAdd,afterAdd`.
 *
 * @module
 */
import { after, within } from "../sys/timers.ts";
import { surelyAbsent } from "../sys/files.ts";
import { dirname, join, resolve } from "../sys/path.ts";
import {
  HookConfigError,
  HookError,
  type HookFailure,
  HookSecurityError,
  HookTimeoutError,
} from "./errors.ts";
import { HOOK_EVENTS, type HookContext, type HookEvent } from "./types.ts";

/** An executable hook that passed the checks. */
export interface ExecHook {
  /** Its file name in the hooks dir. */
  name: string;
  /** The file to execute (symlinks resolved). */
  path: string;
  /** Events from its `vmnic-events` header, else all. */
  events: HookEvent[];
  /** Timeout from its `vmnic-timeout` header, if any. */
  timeoutMs?: number;
}

/** What running an executable hook gave. */
export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Only these many first lines are searched for header comments. */
const HEADER_LINES = 5;
/** Bytes read to find the header lines (binaries have none). */
const HEADER_BYTES = 1024;
/** Upper bound for a `vmnic-timeout` header, in seconds. */
const MAX_TIMEOUT_S = 3600;
/** Output kept per stream; the rest is read and dropped. */
const OUTPUT_CAP = 64 * 1024;
/**
 * After the hook exited, how long to keep reading output that a leftover
 * background process may still hold open.
 */
const DRAIN_GRACE_MS = 500;

const ADVICE = "hooks must be owned by root and writable only by it";

/**
 * The executable hooks in `dir`, sorted by file name, each checked. A
 * missing dir means none. Dotfiles and backups (`*~`) are skipped, and so
 * are subdirectories. Throws {@linkcode HookSecurityError} for the first
 * unsafe path and {@linkcode HookConfigError} for a bad header. Blocking
 * calls: a few stats of a small dir, read once per operation, far cheaper
 * so than as async ops.
 */
export function discoverExecHooks(dir: string): ExecHook[] {
  // No hooks dir is the common case: asked without a NotFound exception.
  if (surelyAbsent(dir)) return [];
  let realDir: string;
  try {
    realDir = Deno.realPathSync(dir);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  const dirInfo = Deno.statSync(realDir);
  if (!dirInfo.isDirectory) {
    throw new HookSecurityError(
      dir,
      "is not a directory",
      "the hooks dir must be one",
    );
  }
  checkDirChain(realDir, dir);
  const linkParent = dirname(resolve(dir));
  if (realDir !== resolve(dir)) {
    // The dir is a symlink: whoever can write where the link lives can
    // point it elsewhere, so that place must be safe too.
    checkDirChain(Deno.realPathSync(linkParent), linkParent);
  }

  const names: string[] = [];
  for (const entry of Deno.readDirSync(realDir)) {
    if (entry.name.startsWith(".") || entry.name.endsWith("~")) continue;
    names.push(entry.name);
  }
  names.sort(compareNames);

  const hooks: ExecHook[] = [];
  for (const name of names) {
    const shown = join(dir, name);
    const entryPath = join(realDir, name);
    let link: Deno.FileInfo;
    try {
      link = Deno.lstatSync(entryPath);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue; // removed meanwhile
      throw err;
    }
    if (link.isDirectory) continue;
    let path = entryPath;
    if (link.isSymlink) {
      try {
        path = Deno.realPathSync(entryPath);
      } catch {
        throw new HookSecurityError(
          shown,
          "is a dangling symlink",
          "remove it",
        );
      }
      if (Deno.statSync(path).isDirectory) continue;
      checkDirChain(dirname(path), dirname(path));
    }
    const info = Deno.statSync(path);
    // A symlink itself has no meaningful mode; its target is what runs.
    checkHookFile(link.isSymlink ? path : shown, info);
    hooks.push({ name, path, ...readHeader(shown, path) });
  }
  return hooks;
}

/** Compares by UTF-16 code units: the same order on every host and locale. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkHookFile(shown: string, info: Deno.FileInfo): void {
  if (!info.isFile) {
    throw new HookSecurityError(
      shown,
      "is not a regular file",
      "the hooks dir may hold executables only",
    );
  }
  checkOwnerAndMode(shown, info, false);
  const mode = info.mode! & 0o7777;
  if ((mode & 0o111) === 0) {
    throw new HookSecurityError(
      shown,
      `is not executable (mode ${octal(mode)})`,
      "make it executable (chmod 0755) or move it out of the hooks dir",
    );
  }
}

/**
 * The dir and every ancestor must be root-owned and not writable by group
 * or others, or anyone who can write there could swap the hooks. A sticky
 * ancestor (like /tmp) is fine: others cannot rename what root owns there.
 */
function checkDirChain(realDir: string, shown: string): void {
  let current = realDir;
  for (;;) {
    const info = Deno.statSync(current);
    checkOwnerAndMode(
      current === realDir ? shown : current,
      info,
      current !== realDir,
    );
    const parent = dirname(current);
    if (parent === current) return;
    current = parent;
  }
}

function checkOwnerAndMode(
  shown: string,
  info: Deno.FileInfo,
  stickyAllowed: boolean,
): void {
  const mode = info.mode! & 0o7777;
  if (info.uid !== 0) {
    throw new HookSecurityError(shown, `is owned by uid ${info.uid}`, ADVICE);
  }
  if (stickyAllowed && (mode & 0o1000) !== 0) return;
  if (mode & 0o002) {
    throw new HookSecurityError(
      shown,
      `is world-writable (mode ${octal(mode)})`,
      ADVICE,
    );
  }
  if (mode & 0o020) {
    throw new HookSecurityError(
      shown,
      `is group-writable (mode ${octal(mode)})`,
      ADVICE,
    );
  }
}

function readHeader(
  shown: string,
  path: string,
): { events: HookEvent[]; timeoutMs?: number } {
  const file = Deno.openSync(path, { read: true });
  const buf = new Uint8Array(HEADER_BYTES);
  let n: number | null;
  try {
    n = file.readSync(buf);
  } finally {
    file.close();
  }
  const lines = new TextDecoder().decode(buf.subarray(0, n ?? 0))
    .split("\n").slice(0, HEADER_LINES);
  let events = [...HOOK_EVENTS];
  let timeoutMs: number | undefined;
  for (const line of lines) {
    const m = /^\s*(?:#|\/\/|--)\s*vmnic-(timeout|events)\s*:\s*(.*?)\s*$/
      .exec(line);
    if (!m) continue;
    if (m[1] === "timeout") {
      const s = Number(m[2]);
      if (!(s > 0 && s <= MAX_TIMEOUT_S)) {
        throw new HookConfigError(
          shown,
          `vmnic-timeout must be seconds in (0, ${MAX_TIMEOUT_S}], got ${
            JSON.stringify(m[2])
          }`,
        );
      }
      timeoutMs = Math.round(s * 1000);
    } else {
      const listed = m[2].split(/[\s,]+/).filter(Boolean);
      const bad = listed.filter((e) => !HOOK_EVENTS.includes(e as HookEvent));
      if (bad.length || listed.length === 0) {
        throw new HookConfigError(
          shown,
          `vmnic-events lists unknown events ${JSON.stringify(bad)}; known: ${
            HOOK_EVENTS.join(", ")
          }`,
        );
      }
      events = HOOK_EVENTS.filter((e) => listed.includes(e));
    }
  }
  return { events, timeoutMs };
}

/**
 * Whether a hook found by discovery (maybe earlier in the operation) is
 * still there to run: false when its file is gone (not run, as discovery
 * skips a file removed meanwhile). Its file is checked again, so one made
 * unsafe since is refused ({@linkcode HookSecurityError}) right before it
 * would run, not only at the next operation.
 */
export function stillRunnable(hook: ExecHook): boolean {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(hook.path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
  checkHookFile(hook.path, info);
  return true;
}

/**
 * Runs `hook` for `event` with `ctx` as JSON on stdin. Throws
 * {@linkcode HookError} on a non-zero exit or a failed start, and
 * {@linkcode HookTimeoutError} after killing it (and everything in its
 * process group) when it runs past `timeoutMs`.
 */
export async function runExecHook(
  hook: ExecHook,
  ctx: HookContext,
  timeoutMs: number,
): Promise<ExecResult> {
  const base: HookFailure = { hook: hook.name, event: ctx.event, kind: "exec" };
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(hook.path, {
      args: [ctx.event],
      cwd: "/",
      ...(ctx.traceparent ? { env: { TRACEPARENT: ctx.traceparent } } : {}),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      // Its own session and process group: on timeout the whole group is
      // killed, so a shell's children do not outlive it.
      detached: true,
    }).spawn();
  } catch (err) {
    throw new HookError(base, `could not start ${hook.path}: ${err}`, {
      cause: err,
    });
  }

  let timedOut = false;
  const timer = after(timeoutMs, () => {
    timedOut = true;
    killGroup(child.pid);
  });

  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  // A hook may exit without reading stdin: EPIPE then is not its failure.
  const writer = child.stdin.getWriter();
  writer.write(new TextEncoder().encode(JSON.stringify(ctx)))
    .then(() => writer.close())
    .catch(() => {});

  let status: Deno.CommandStatus;
  try {
    status = await child.status;
  } finally {
    timer.cancel();
  }
  if (timedOut) killGroup(child.pid);
  const [out, err] = await Promise.all([
    stdout.finish(DRAIN_GRACE_MS),
    stderr.finish(DRAIN_GRACE_MS),
  ]);
  const failure: HookFailure = {
    ...base,
    exitCode: status.signal ? undefined : status.code,
    signal: status.signal ?? undefined,
    stdout: out,
    stderr: err,
  };
  if (timedOut) throw new HookTimeoutError(failure, timeoutMs);
  if (!status.success) {
    const how = status.signal
      ? `killed by ${status.signal}`
      : `exited with code ${status.code}`;
    const tail = err.trim().split("\n").slice(-3).join(" | ");
    throw new HookError(failure, tail ? `${how}: ${tail}` : how);
  }
  return { stdout: out, stderr: err };
}

function killGroup(pid: number): void {
  try {
    Deno.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** Reads a stream to its end, keeping the first {@linkcode OUTPUT_CAP} bytes. */
function collect(stream: ReadableStream<Uint8Array>) {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let kept = 0;
  let truncated = false;
  const done = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const room = OUTPUT_CAP - kept;
        if (value.length > room) truncated = true;
        if (room > 0) {
          const part = value.subarray(0, room);
          chunks.push(part);
          kept += part.length;
        }
      }
    } catch {
      // Cancelled after the grace period.
    }
  })();
  return {
    /** The output, after at most `graceMs` more waiting for its end. */
    async finish(graceMs: number): Promise<string> {
      const ended = await within(done.then(() => true), graceMs);
      if (ended === null) await reader.cancel().catch(() => {});
      const bytes = new Uint8Array(kept);
      let off = 0;
      for (const c of chunks) {
        bytes.set(c, off);
        off += c.length;
      }
      const text = new TextDecoder().decode(bytes);
      return truncated
        ? `${text}\n[output truncated at ${OUTPUT_CAP} bytes]`
        : text;
    },
  };
}

function octal(mode: number): string {
  return "0" + mode.toString(8).padStart(3, "0");
}
