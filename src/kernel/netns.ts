/**
 * Named network namespaces made exactly as iproute2 makes them: a file in
 * the netns dir (`/var/run/netns`, a shared mount) with the thread's
 * `/proc/self/task/<tid>/ns/net` bind-mounted onto it, so `ip netns` and
 * hypervisors see them. And entering one for synchronous work on the JS
 * main thread, where FFI calls run (docs/architecture.md, "Kernel access").
 *
 * @module
 */
import { Errno } from "../sys/errno.ts";
import { InvalidArgumentError, KernelError } from "../sys/errors.ts";
import { check, cstr, errno, gettid, libc } from "../sys/libc.ts";
import { readProcFile } from "../sys/proc.ts";
import { surelyAbsent } from "../sys/files.ts";
import {
  CLONE_NEWNET,
  LOCK_EX,
  LOCK_NB,
  LOCK_SH,
  MNT_DETACH,
  MS_BIND,
  MS_REC,
  MS_SHARED,
  NS_GET_NSTYPE,
  NSFS_MAGIC,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_RDONLY,
} from "./constants.ts";

/** Where iproute2 (and vmnic by default) keeps named network namespaces. */
export const DEFAULT_NETNS_DIR = "/var/run/netns";

/** Longest file name the kernel takes (NAME_MAX). */
const NAME_MAX = 255;
/** unlink retries when a mount is still being torn down (EBUSY). */
const UNLINK_RETRIES = 5;
const UNLINK_RETRY_MS = 10;
/** `sizeof(struct statfs)` on 64-bit Linux. */
const STATFS_SIZE = 120;
/** Longest path readlink can return (`PATH_MAX`). */
const PATH_MAX = 4096;

/**
 * Throws {@linkcode InvalidArgumentError} unless `name` can be a netns file
 * name: non-empty, at most 255 bytes, no `/` or NUL, not starting with `.`
 * (which also rules out `.` and `..`).
 */
export function validateNetnsName(name: string): void {
  const op = "validate netns name";
  if (name.length === 0) throw new InvalidArgumentError(op, name, "empty");
  if (name.includes("/")) {
    throw new InvalidArgumentError(op, name, "contains '/'");
  }
  if (name.includes("\0")) {
    throw new InvalidArgumentError(op, name, "contains NUL");
  }
  if (name.startsWith(".")) {
    throw new InvalidArgumentError(op, name, "starts with '.'");
  }
  const bytes = new TextEncoder().encode(name).length;
  if (bytes > NAME_MAX) {
    throw new InvalidArgumentError(
      op,
      name,
      `${bytes} bytes, at most ${NAME_MAX} allowed`,
    );
  }
}

/** The path of the named netns `name` in `dir` (the name is validated). */
export function netnsPath(name: string, dir = DEFAULT_NETNS_DIR): string {
  validateNetnsName(name);
  return join(dir, name);
}

/**
 * Creates the named netns `name` in `dir` and returns its path.
 *
 * The dir is created and made a shared mount if it is not one yet (as
 * iproute2 does), the file is created exclusively, and a fresh netns is
 * bind-mounted onto it from the JS main thread, which always returns to its
 * original netns. On failure nothing is left behind.
 *
 * @throws {KernelError} `EEXIST` when a file of that name exists (it is left
 * untouched), or the failing step's errno.
 */
export function createNetns(name: string, dir = DEFAULT_NETNS_DIR): string {
  const path = netnsPath(name, dir);
  ensureSharedDir(dir);
  // Shared: creations proceed together; releaseNetnsDir waits for none.
  const dirLock = lockDir(dir, LOCK_SH);
  try {
    return createIn(name, path);
  } finally {
    if (dirLock >= 0) libc().close(dirLock);
  }
}

function createIn(name: string, path: string): string {
  const fd = libc().open(
    cstr(path),
    O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC,
    0,
  );
  if (fd < 0) throw new KernelError("create netns", name, errno());
  libc().close(fd);
  try {
    bindNewNetns(name, path);
  } catch (err) {
    // The mount may have been made before a later step failed: undo both.
    const p = cstr(path);
    libc().umount2(p, MNT_DETACH);
    libc().unlink(p);
    throw err;
  }
  return path;
}

/**
 * Gives the named netns `from` the name `to` in `dir`: the same network
 * namespace (its devices, its processes' view) is bind-mounted under the
 * new name, then the old name is detached and removed. Each step can be
 * finished after a crash: {@linkcode netnsExists} tells which names are
 * live.
 *
 * @throws {KernelError} `EEXIST` when `to` exists, `ENOENT` when `from` does
 * not.
 */
export function renameNetns(
  from: string,
  to: string,
  dir = DEFAULT_NETNS_DIR,
): void {
  const src = netnsPath(from, dir);
  const dst = netnsPath(to, dir);
  if (!isNetnsFile(src)) {
    throw new KernelError("rename netns", from, Errno.ENOENT);
  }
  const fd = libc().open(cstr(dst), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) throw new KernelError("rename netns", to, errno());
  libc().close(fd);
  if (
    libc().mount(cstr(src), cstr(dst), cstr("none"), BigInt(MS_BIND), null) < 0
  ) {
    const e = errno();
    libc().unlink(cstr(dst));
    throw new KernelError("rename netns", `${from} -> ${to}`, e, "bind mount");
  }
  deleteNetns(from, dir);
}

/**
 * Undoes the bind mount that made a custom netns `dir` a shared mount, once
 * the dir holds nothing: vmnic must not leave a mount behind in a dir of
 * the operator's choosing. The default dir (`/var/run/netns`) is shared
 * with iproute2 and keeps its mount, as iproute2 leaves it. Only a
 * self-bind (the dir mounted onto itself) is undone, and only while no
 * other vmnic process is creating a netns in it.
 */
export function releaseNetnsDir(dir: string): void {
  if (dir.replace(/\/+$/, "") === DEFAULT_NETNS_DIR) return;
  let real: string;
  try {
    real = Deno.realPathSync(dir);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (real === resolvePath(DEFAULT_NETNS_DIR)) return; // however it is spelled
  const fd = lockDir(real, LOCK_EX | LOCK_NB);
  if (fd < 0) return; // being created in right now: keep the mount
  try {
    if ([...Deno.readDirSync(real)].length) return;
    const mounts = readMountinfo();
    const here = mounts.findLast((m) => m.mountPoint === real);
    if (!here) return;
    const parent = mounts.find((m) => m.id === here.parentId);
    if (!parent || parent.majorMinor !== here.majorMinor) return;
    const rel = parent.mountPoint === "/"
      ? real
      : real.slice(parent.mountPoint.length);
    const expectedRoot = parent.root === "/" ? rel : parent.root + rel;
    if (here.root !== expectedRoot) return; // something else is mounted there
    check(libc().umount2(cstr(real), MNT_DETACH), "release netns dir", real);
  } finally {
    libc().close(fd);
  }
}

/**
 * An flock on `dir` (`LOCK_SH` while creating in it, `LOCK_EX` to release
 * it); -1 when a non-blocking lock is held by another, or for the default
 * dir, which iproute2 shares without taking part.
 */
function lockDir(dir: string, operation: number): number {
  if (dir.replace(/\/+$/, "") === DEFAULT_NETNS_DIR) return -1;
  const fd = check(
    libc().open(cstr(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0),
    "open netns dir",
    dir,
  );
  if (libc().flock(fd, operation) < 0) {
    const e = errno();
    libc().close(fd);
    if (e === Errno.EAGAIN) return -1;
    throw new KernelError("lock netns dir", dir, e);
  }
  return fd;
}

/**
 * Creates the named netns unless it already exists (idempotent). A leftover
 * empty file of that name (no netns mounted on it) is replaced.
 */
export function ensureNetns(
  name: string,
  dir = DEFAULT_NETNS_DIR,
): { path: string; created: boolean } {
  const path = netnsPath(name, dir);
  if (netnsExists(name, dir)) return { path, created: false };
  // A leftover from an earlier run (e.g. made under a mount namespace that
  // did not propagate back): clear it so creation can proceed.
  deleteNetns(name, dir);
  try {
    return { path: createNetns(name, dir), created: true };
  } catch (err) {
    if (
      err instanceof KernelError && err.errno === Errno.EEXIST &&
      netnsExists(name, dir)
    ) {
      return { path, created: false };
    }
    throw err;
  }
}

/**
 * Deletes the named netns: detaches its bind mount and removes the file.
 * Also removes a leftover file with nothing mounted on it.
 *
 * @returns `true` when something was removed, `false` when there was no such
 * file (idempotent).
 */
export function deleteNetns(name: string, dir = DEFAULT_NETNS_DIR): boolean {
  const path = netnsPath(name, dir);
  const p = cstr(path);
  detach(name, p);
  for (let attempt = 0;; attempt++) {
    if (libc().unlink(p) === 0) return true;
    const e = errno();
    if (e === Errno.ENOENT) return false;
    if (e !== Errno.EBUSY || attempt >= UNLINK_RETRIES) {
      throw new KernelError("delete netns", name, e, "unlink");
    }
    // Still a mount point (stacked mounts, or a detach in flight): retry.
    detach(name, p);
    sleepSync(UNLINK_RETRY_MS);
  }
}

/**
 * True when the named netns exists: the file is there and a network
 * namespace is mounted on it. An empty leftover file does not count.
 */
export function netnsExists(name: string, dir = DEFAULT_NETNS_DIR): boolean {
  const path = netnsPath(name, dir);
  // Most often asked of a name not taken yet (a new VM).
  return !surelyAbsent(path) && isNetnsFile(path);
}

/**
 * Names (sorted) of the live network namespaces in `dir`; with `stale`,
 * also the leftover files no namespace is mounted on (what `deleteNetns`
 * cleans up).
 */
export function listNetns(
  dir = DEFAULT_NETNS_DIR,
  opts: { stale?: boolean } = {},
): string[] {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return entries
    .filter((e) => e.isFile && (opts.stale || isNetnsFile(join(dir, e.name))))
    .map((e) => e.name)
    .sort();
}

/**
 * Runs `fn` synchronously inside the network namespace at `path` and always
 * switches the thread back to its original netns afterwards, also when `fn`
 * throws.
 *
 * `fn` must not be async: `setns` changes only the JS main thread, so
 * anything that runs after an `await` (or a child process spawned) would land
 * in whichever netns the thread is in at that moment.
 *
 * @throws {KernelError} `ENOENT` when `path` does not exist, `EINVAL` when it
 * is not a network namespace.
 * @throws {Error} when `fn` returns a promise (after switching back).
 */
export function withNetns<T>(path: string, fn: () => T): T {
  const target = libc().open(cstr(path), O_RDONLY | O_CLOEXEC, 0);
  if (target < 0) throw new KernelError("enter netns", path, errno());
  let original = -1;
  try {
    const self = threadNetnsPath();
    original = check(
      libc().open(cstr(self), O_RDONLY | O_CLOEXEC, 0),
      "open current netns",
      self,
    );
    check(libc().setns(target, CLONE_NEWNET), "enter netns", path);
    return runAndReturn(fn, original, self, `withNetns(${path})`);
  } finally {
    libc().close(target);
    if (original >= 0) libc().close(original);
  }
}

/**
 * Runs `fn` (the thread switched into another netns), then switches back to
 * `original` (the thread's netns, `self`), whatever `fn` did. A promise
 * from `fn` is refused: setns affects the JS main thread only, so code
 * after an await would run in the wrong netns.
 */
function runAndReturn<T>(
  fn: () => T,
  original: number,
  self: string,
  what: string,
): T {
  let result: T;
  try {
    result = fn();
  } finally {
    returnToNetns(original, self);
  }
  if (isThenable(result)) {
    // Keep a rejection of the abandoned promise from crashing the process.
    Promise.resolve(result).catch(() => {});
    throw new Error(
      `${what}: the callback returned a promise; only synchronous work is ` +
        `allowed while switched into a netns (setns affects the JS main ` +
        `thread only, so code after an await would run in the wrong ` +
        `netns). The thread has been switched back.`,
    );
  }
  return result;
}

/**
 * Runs `fn` synchronously in a fresh network namespace of this thread that
 * nothing names or mounts: it vanishes once `fn` is done and what `fn`
 * opened there is closed. For probes (what the kernel supports) that must
 * touch no real netns. The same rules as {@linkcode withNetns} hold: no
 * await, no spawn inside.
 *
 * @throws {KernelError} when the netns cannot be made.
 * @throws {Error} when `fn` returns a promise (after switching back).
 */
export function withFreshNetns<T>(fn: () => T): T {
  const self = threadNetnsPath();
  const original = check(
    libc().open(cstr(self), O_RDONLY | O_CLOEXEC, 0),
    "open current netns",
    self,
  );
  try {
    check(libc().unshare(CLONE_NEWNET), "create netns", "(unnamed)");
    return runAndReturn(fn, original, self, "withFreshNetns");
  } finally {
    libc().close(original);
  }
}

/**
 * Whether netns bind mounts made in `dir` outlive this process, i.e. are
 * seen by the rest of the host.
 *
 * Not ok when the mount holding `dir` is a slave mount (what `ip netns exec`
 * and `unshare --mount` give), or when this process runs in another mount
 * namespace than PID 1 and that mount is not shared. When PID 1's mount
 * namespace cannot be read and the mount is not a slave, no claim is made.
 */
export function netnsDirPropagates(
  dir = DEFAULT_NETNS_DIR,
): { ok: boolean; reason?: string } {
  const ownNs = readProcLink("/proc/self/ns/mnt");
  const initNs = readProcLink("/proc/1/ns/mnt");
  if (initNs !== null && ownNs === initNs) return { ok: true };

  const mount = mountContaining(resolvePath(dir), readMountinfo());
  if (!mount) return { ok: true };
  const shared = mount.tags.some((t) => t.startsWith("shared:"));
  const slave = mount.tags.some((t) => t.startsWith("master:"));
  const advice = `netns bind mounts made there do not propagate back and ` +
    `vanish when this process exits; run vmnic directly in the host's mount ` +
    `namespace, not under 'ip netns exec' or 'unshare --mount'`;
  if (slave && !shared) {
    return {
      ok: false,
      reason: `netns dir ${dir} is on a slave mount (${mount.mountPoint}, ` +
        `${mount.tags.join(" ")}) in a private mount namespace: ${advice}`,
    };
  }
  if (initNs !== null && !shared) {
    return {
      ok: false,
      reason: `netns dir ${dir} is on a private mount (${mount.mountPoint}) ` +
        `in a mount namespace other than PID 1's (${ownNs} vs ${initNs}): ` +
        advice,
    };
  }
  return { ok: true };
}

/** The netns file of the calling thread (the JS main thread for FFI). */
function threadNetnsPath(): string {
  return `/proc/self/task/${gettid()}/ns/net`;
}

/** setns back to `fd`; failing here would leave the thread astray, so throw. */
function returnToNetns(fd: number, self: string): void {
  if (libc().setns(fd, CLONE_NEWNET) < 0) {
    throw new KernelError("return to original netns", self, errno());
  }
}

/** unshare a fresh netns on this thread and bind-mount it onto `path`. */
function bindNewNetns(name: string, path: string): void {
  const self = threadNetnsPath();
  const original = check(
    libc().open(cstr(self), O_RDONLY | O_CLOEXEC, 0),
    "open current netns",
    self,
  );
  try {
    check(libc().unshare(CLONE_NEWNET), "create netns", name);
    // The same tid path now names the fresh netns of this thread.
    const ret = libc().mount(
      cstr(self),
      cstr(path),
      cstr("none"),
      BigInt(MS_BIND),
      null,
    );
    if (ret < 0) {
      throw new KernelError("create netns", name, errno(), "bind mount");
    }
  } finally {
    try {
      returnToNetns(original, self);
    } finally {
      libc().close(original);
    }
  }
}

/**
 * Creates `dir` and makes it a shared mount, as iproute2 does, so netns
 * mounts in it propagate to mount namespaces made later (`ip netns exec`).
 */
function ensureSharedDir(dir: string): void {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const real = Deno.realPathSync(dir);
  const here = readMountinfo().findLast((m) => m.mountPoint === real);
  if (here?.tags.some((t) => t.startsWith("shared:"))) return;
  const target = cstr(real);
  const none = cstr("none");
  let bound = false;
  for (;;) {
    if (
      libc().mount(none, target, none, BigInt(MS_SHARED | MS_REC), null) === 0
    ) {
      return;
    }
    const e = errno();
    // EINVAL: not a mount point yet. Bind it onto itself once, then retry.
    if (e !== Errno.EINVAL || bound) {
      throw new KernelError("make shared mount", real, e);
    }
    check(
      libc().mount(target, target, none, BigInt(MS_BIND | MS_REC), null),
      "bind mount netns dir",
      real,
    );
    bound = true;
  }
}

/** umount2(MNT_DETACH); not mounted (EINVAL) or missing (ENOENT) is fine. */
function detach(name: string, path: Uint8Array<ArrayBuffer>): void {
  if (libc().umount2(path, MNT_DETACH) < 0) {
    const e = errno();
    if (e !== Errno.EINVAL && e !== Errno.ENOENT) {
      throw new KernelError("delete netns", name, e, "umount");
    }
  }
}

/**
 * A regular file on nsfs whose namespace kind is network. Checked through
 * the fd (fstatfs, NS_GET_NSTYPE): Deno's own stat refuses /proc paths.
 */
function isNetnsFile(path: string): boolean {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (err) {
    if (
      err instanceof Deno.errors.NotFound ||
      err instanceof Deno.errors.NotADirectory
    ) return false;
    throw err;
  }
  // Never open a FIFO or a device: an nsfs file is a regular file.
  if (!st.isFile) return false;
  const fd = libc().open(cstr(path), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    const fs = new BigInt64Array(STATFS_SIZE / 8);
    if (libc().fstatfs(fd, fs) < 0) return false;
    if (fs[0] !== BigInt(NSFS_MAGIC)) return false; // f_type leads struct statfs
    return libc().ioctl(fd, BigInt(NS_GET_NSTYPE), null) === CLONE_NEWNET;
  } finally {
    libc().close(fd);
  }
}

/** One line of /proc/self/mountinfo, the parts needed here. */
interface MountEntry {
  id: number;
  parentId: number;
  majorMinor: string;
  /** The root of the mount within its filesystem. */
  root: string;
  mountPoint: string;
  /** Optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`. */
  tags: string[];
}

function readMountinfo(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readProcFile("/proc/self/mountinfo").split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    if (fields.length < 7 || sep < 6) continue;
    out.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      majorMinor: fields[2],
      root: unescapeMountField(fields[3]),
      mountPoint: unescapeMountField(fields[4]),
      tags: fields.slice(6, sep),
    });
  }
  return out;
}

/** mountinfo escapes space, tab, newline and backslash as `\ooo`. */
function unescapeMountField(s: string): string {
  return s.replace(
    /\\([0-7]{3})/g,
    (_, oct: string) => String.fromCharCode(parseInt(oct, 8)),
  );
}

/** The mount `path` lives on: longest mount point prefix, topmost of a stack. */
function mountContaining(
  path: string,
  mounts: MountEntry[],
): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const under = m.mountPoint === "/" || path === m.mountPoint ||
      path.startsWith(m.mountPoint + "/");
    if (under && (!best || m.mountPoint.length >= best.mountPoint.length)) {
      best = m;
    }
  }
  return best;
}

/** realpath of `path`, or of its nearest existing ancestor plus the rest. */
function resolvePath(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    const cut = path.replace(/\/+$/, "").lastIndexOf("/");
    if (cut <= 0) return path;
    return join(resolvePath(path.slice(0, cut)), path.slice(cut + 1));
  }
}

/** `dir/name`, without a doubled slash. */
function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** readlink(2) of a /proc link, or `null` when it cannot be read. */
function readProcLink(path: string): string | null {
  const buf = new Uint8Array(PATH_MAX);
  const n = Number(libc().readlink(cstr(path), buf, BigInt(buf.length)));
  return n < 0 ? null : new TextDecoder().decode(buf.subarray(0, n));
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}

/** Blocks the thread briefly; the callers are synchronous by design. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
