/**
 * Per-VM file locks: an exclusive `flock` (Deno's `FsFile.lock`/`tryLock`)
 * on `<runDir>/locks/<vmId>.lock` serialises operations on one VM across
 * processes, while other VMs proceed in parallel. A lock held by a process
 * ends when the process dies, so a crash never leaves a VM locked.
 *
 * `flock` locks belong to the open file description, so two acquisitions in
 * the same process exclude each other too.
 *
 * @module
 */
import { join } from "node:path";
import { LockError, LockTimeoutError } from "./errors.ts";

/** Options of {@linkcode acquireVmLock}. */
export interface LockOptions {
  /**
   * `true`: wait until the lock is free (up to `timeoutMs`).
   * `false`: return `null` at once if another holder has it.
   */
  wait: boolean;
  /** Give up waiting after this long with a {@linkcode LockTimeoutError}. */
  timeoutMs?: number;
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
   * Deletes the lock file, then releases the lock (for a VM that is gone).
   * Safe against racing acquirers: they notice the file was replaced and
   * retry on the new one. Idempotent.
   */
  releaseAndRemove(): void;
}

/** Longest pause between two attempts while waiting with a timeout. */
const MAX_POLL_MS = 50;

/** Longest VM id usable as a lock file name (NAME_MAX minus ".lock"). */
const MAX_VM_ID_LENGTH = 250;

/**
 * Takes the lock of `vmId` under `runDir` (created 0700 if missing).
 * Returns `null` only with `wait: false` when another holder has it.
 */
export async function acquireVmLock(
  runDir: string,
  vmId: string,
  opts: LockOptions,
): Promise<VmLock | null> {
  checkVmId(vmId);
  return await acquire(vmId, join(runDir, "locks", `${vmId}.lock`), opts);
}

async function acquire(
  name: string,
  path: string,
  opts: LockOptions,
): Promise<VmLock | null> {
  const op = "lock vm";
  const deadline = opts.timeoutMs === undefined
    ? undefined
    : Date.now() + opts.timeoutMs;
  let pause = 1;
  for (;;) {
    const file = await openLockFile(op, name, path);
    let handedOver = false;
    try {
      if (!opts.wait) {
        if (!await file.tryLock(true)) return null;
      } else if (deadline === undefined) {
        // Blocks in Deno's worker pool, not on the JS thread.
        await file.lock(true);
      } else {
        // A blocked lock() cannot be cancelled, so a bounded wait polls.
        while (!await file.tryLock(true)) {
          const left = deadline - Date.now();
          if (left <= 0) throw new LockTimeoutError(op, name, opts.timeoutMs!);
          await sleep(Math.min(pause, left));
          pause = Math.min(pause * 2, MAX_POLL_MS);
        }
      }
      // The previous holder may have removed the file while we waited; a
      // lock on the unlinked inode protects nothing, so start over.
      if (await stillLinked(file, path)) {
        handedOver = true;
        return new HeldLock(name, path, file);
      }
    } catch (err) {
      if (err instanceof LockError) throw err;
      throw new LockError(op, name, `${path}: ${err}`, { cause: err });
    } finally {
      // Closing drops a lock taken on a stale inode, too.
      if (!handedOver) file.close();
    }
  }
}

class HeldLock implements VmLock {
  readonly name: string;
  readonly path: string;
  #file: Deno.FsFile | undefined;

  constructor(name: string, path: string, file: Deno.FsFile) {
    this.name = name;
    this.path = path;
    this.#file = file;
  }

  release(): void {
    const file = this.#file;
    if (!file) return;
    this.#file = undefined;
    // Closing the last descriptor of the open file drops the flock.
    file.close();
  }

  releaseAndRemove(): void {
    if (!this.#file) return;
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

async function openLockFile(
  op: string,
  name: string,
  path: string,
): Promise<Deno.FsFile> {
  const open = () =>
    Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  try {
    return await open();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      throw new LockError(op, name, `${path}: ${err}`, { cause: err });
    }
  }
  // First use: make the dirs (run dir 0700: lock names reveal VM ids).
  const locksDir = join(path, "..");
  try {
    await Deno.mkdir(locksDir, { recursive: true, mode: 0o700 });
    return await open();
  } catch (err) {
    throw new LockError(op, name, `${path}: ${err}`, { cause: err });
  }
}

async function stillLinked(file: Deno.FsFile, path: string): Promise<boolean> {
  const held = await file.stat();
  try {
    const now = await Deno.stat(path);
    return now.ino === held.ino && now.dev === held.dev;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
