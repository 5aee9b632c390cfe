/**
 * Per-VM locks: an exclusive `flock` on `<runDir>/locks/<vmId>.lock`
 * serialises operations on one VM across processes, while other VMs
 * proceed in parallel. A lock held by a process ends when the process dies,
 * so a crash never leaves a VM locked. The holder writes who it is (pid,
 * operation, since when) into the file, so a caller that gives up waiting
 * can say who holds it.
 *
 * Lock files are opened without following symlinks (O_NOFOLLOW), in a run
 * dir that must be safe (owned by root, writable by no one else). `flock`
 * locks belong to the open file description, so two acquisitions in the
 * same process exclude each other too.
 *
 * @module
 */
import { join } from "../sys/path.ts";
import { LockError, LockInterruptedError, LockTimeoutError } from "./errors.ts";
import { closeFd, flock, fstat, openNoFollow, rewrite } from "../sys/files.ts";
import { LOCK_EX, LOCK_NB, O_CREAT, O_RDWR } from "../sys/fcntl.ts";
import { ensureSecureDir, InsecurePathError } from "../sys/secure_dir.ts";
import { processStartTime } from "../sys/proc.ts";
import { sleep } from "../sys/timers.ts";

/** Options of {@linkcode acquireVmLock}. */
export interface LockOptions {
  /**
   * How long to wait for another holder, in ms. 0: do not wait, return
   * `null` when it is held.
   */
  waitMs: number;
  /** The operation taking it, for whoever waits (e.g. `"add"`). */
  op?: string;
  /** Stops the wait (the process was asked to end): throws its reason. */
  signal?: AbortSignal;
}

/** Who holds a lock, as the holder wrote it. */
export interface LockHolder {
  /** The holder's process id. */
  pid: number;
  /** Its operation. */
  op: string;
  /** ISO 8601 time it took the lock. */
  since: string;
  /**
   * Processes it started that act on the VM (CNI plugins, each the leader
   * of its own process group), by pid and start time.
   */
  children?: { pid: number; start: string }[];
}

/** A held lock. */
export interface VmLock {
  /** The VM id. */
  readonly name: string;
  /** The lock file. */
  readonly path: string;
  /** Releases the lock. Idempotent. */
  release(): void;
  /**
   * Notes a process started on the VM's behalf (a CNI plugin, leader of its
   * own process group): should this holder die with it still running, the
   * next holder ends it first, so an orphaned DEL cannot undo what the next
   * operation makes.
   */
  recordChild(pid: number): void;
  /**
   * Deletes the lock file, then releases the lock (for a VM that is gone).
   * Safe against racing acquirers: they notice the file was replaced and
   * retry on the new one. Idempotent.
   */
  releaseAndRemove(): void;
}

/** Longest pause between two attempts while waiting. */
const MAX_POLL_MS = 25;

/** Longest VM id usable as a lock file name (NAME_MAX minus ".lock"). */
const MAX_VM_ID_LENGTH = 250;

/** The lock dir inside the run dir. */
const LOCKS_DIR = "locks";
const SUFFIX = ".lock";

/**
 * Takes the lock of `vmId` under `runDir` (created 0700 if missing).
 * Returns `null` only with `waitMs: 0` when another holder has it; throws
 * {@linkcode LockTimeoutError}, naming the holder, when the wait runs out.
 */
export async function acquireVmLock(
  runDir: string,
  vmId: string,
  opts: LockOptions,
): Promise<VmLock | null> {
  checkVmId(vmId);
  const op = "lock vm";
  let dir = locksDir(runDir, op, vmId);
  let path = join(dir, vmId + SUFFIX);
  const deadline = Date.now() + opts.waitMs;
  let pause = 1;
  for (;;) {
    let fd: number;
    try {
      fd = openLockFile(op, vmId, path);
    } catch (err) {
      if (!safeRunDirs.delete(runDir)) throw err;
      // The dir changed since it was checked: check it again, then retry.
      dir = locksDir(runDir, op, vmId, true);
      path = join(dir, vmId + SUFFIX);
      fd = openLockFile(op, vmId, path);
    }
    let handedOver = false;
    try {
      if (flock(fd, LOCK_EX | LOCK_NB, path)) {
        // The previous holder may have removed the file meanwhile; a lock
        // on the unlinked inode protects nothing, so start over.
        if (stillLinked(fd, path)) {
          await endOrphans(path);
          const holder: LockHolder = {
            pid: Deno.pid,
            op: opts.op ?? "vmnic",
            since: new Date().toISOString(),
          };
          rewrite(fd, JSON.stringify(holder), path);
          handedOver = true;
          return new HeldLock(vmId, path, fd, holder);
        }
        continue;
      }
      const left = deadline - Date.now();
      if (opts.signal?.aborted) {
        throw new LockInterruptedError(op, vmId, String(opts.signal.reason));
      }
      if (left <= 0) {
        if (opts.waitMs === 0) return null;
        throw new LockTimeoutError(op, vmId, opts.waitMs, describe(path));
      }
      await sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, MAX_POLL_MS);
    } catch (err) {
      if (err instanceof LockError) throw err;
      throw new LockError(op, vmId, `${path}: ${err}`, { cause: err });
    } finally {
      // Closing drops a lock taken on a stale inode, too.
      if (!handedOver) closeFd(fd);
    }
  }
}

/** Who holds (or last held) the lock of `vmId`, or null. */
export function lockHolder(runDir: string, vmId: string): LockHolder | null {
  try {
    const v = JSON.parse(
      Deno.readTextFileSync(join(runDir, LOCKS_DIR, vmId + SUFFIX)),
    ) as Partial<LockHolder>;
    return typeof v.pid === "number" && typeof v.op === "string" &&
        typeof v.since === "string"
      ? { pid: v.pid, op: v.op, since: v.since }
      : null;
  } catch {
    return null;
  }
}

/** VM ids that have a lock file under `runDir`. */
export function lockedVmIds(runDir: string): string[] {
  try {
    return [...Deno.readDirSync(join(runDir, LOCKS_DIR))]
      .filter((e) => e.isFile && e.name.endsWith(SUFFIX))
      .map((e) => e.name.slice(0, -SUFFIX.length))
      .sort();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

class HeldLock implements VmLock {
  readonly name: string;
  readonly path: string;
  #fd: number | undefined;
  readonly #holder: LockHolder;

  constructor(name: string, path: string, fd: number, holder: LockHolder) {
    this.name = name;
    this.path = path;
    this.#fd = fd;
    this.#holder = holder;
  }

  recordChild(pid: number): void {
    const fd = this.#fd;
    if (fd === undefined) return;
    // A note for after a crash, never a reason to fail the plugin's run:
    // /proc may refuse a moment (a process mid-exec), or the disk a write.
    try {
      const start = processStartTime(pid);
      if (start === null) return; // gone already
      const children = (this.#holder.children ?? []).filter((c) =>
        processStartTime(c.pid) === c.start
      );
      children.push({ pid, start });
      this.#holder.children = children;
      rewrite(fd, JSON.stringify(this.#holder), this.path);
    } catch { /* see above */ }
  }

  release(): void {
    const fd = this.#fd;
    if (fd === undefined) return;
    this.#fd = undefined;
    // Closing the last descriptor of the open file drops the flock.
    closeFd(fd);
  }

  releaseAndRemove(): void {
    if (this.#fd === undefined) return;
    try {
      Deno.removeSync(this.path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        this.release();
        throw new LockError("remove lock", this.name, `${this.path}: ${err}`, {
          cause: err,
        });
      }
    }
    this.release();
  }
}

/**
 * Run dirs found safe in this process: checked once (only root can make a
 * root-owned dir unsafe), and again if a lock file cannot be opened.
 */
const safeRunDirs = new Set<string>();

/**
 * Ends what a holder that died left running on the VM: each child it
 * noted that still lives (the same pid and start time) is killed with its
 * process group, and waited for.
 */
async function endOrphans(path: string): Promise<void> {
  let prev: LockHolder;
  try {
    const text = Deno.readTextFileSync(path);
    if (!text) return; // a new lock file: nobody held it before
    prev = JSON.parse(text) as LockHolder;
  } catch {
    return;
  }
  const alive = (prev.children ?? []).filter((c) =>
    typeof c?.pid === "number" && processStartTime(c.pid) === c.start
  );
  for (const c of alive) {
    try {
      Deno.kill(-c.pid, "SIGKILL");
    } catch { /* gone meanwhile */ }
  }
  for (let waited = 0; waited < ORPHAN_WAIT_MS; waited += 10) {
    if (!alive.some((c) => processStartTime(c.pid) === c.start)) return;
    await sleep(10);
  }
}

/** How long a new holder waits for the orphans it killed to be gone. */
const ORPHAN_WAIT_MS = 3000;

function locksDir(
  runDir: string,
  op: string,
  vmId: string,
  recheck = false,
): string {
  const dir = join(runDir, LOCKS_DIR);
  if (!recheck && safeRunDirs.has(runDir)) return dir;
  try {
    ensureSecureDir(runDir);
    ensureSecureDir(dir);
    safeRunDirs.add(runDir);
    return dir;
  } catch (err) {
    if (err instanceof InsecurePathError) {
      throw new LockError(
        op,
        vmId,
        `${err.message}: the run dir and its ancestors must be owned by root and writable by no one else`,
        { cause: err },
      );
    }
    throw new LockError(op, vmId, `${runDir}: ${err}`, { cause: err });
  }
}

function openLockFile(op: string, name: string, path: string): number {
  try {
    return openNoFollow(path, O_RDWR | O_CREAT, 0o600, op);
  } catch (err) {
    throw new LockError(op, name, String((err as Error).message ?? err), {
      cause: err,
    });
  }
}

function stillLinked(fd: number, path: string): boolean {
  const held = fstat(fd, path);
  try {
    const now = Deno.lstatSync(path);
    return BigInt(now.ino ?? -1) === held.ino &&
      BigInt(now.dev ?? -1) === held.dev;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

function describe(path: string): string {
  try {
    const h = JSON.parse(Deno.readTextFileSync(path)) as LockHolder;
    return `held by pid ${h.pid} (${h.op}) since ${h.since}`;
  } catch {
    return "held by another process";
  }
}

function checkVmId(vmId: string): void {
  const bad = vmId === "" || vmId === "." || vmId === ".." ||
    vmId.includes("/") || vmId.includes("\0") ||
    vmId.length > MAX_VM_ID_LENGTH;
  if (bad) {
    throw new LockError(
      "lock vm",
      JSON.stringify(vmId),
      `not usable as a lock file name (empty, "." or "..", contains "/" or NUL, or longer than ${MAX_VM_ID_LENGTH})`,
    );
  }
}
