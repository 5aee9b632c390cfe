/**
 * Files opened and checked through their descriptor: never following a
 * symlink, so a link planted where vmnic keeps its database or locks cannot
 * redirect a chmod, a lock or a write to another file.
 *
 * @module
 */
import { Errno } from "./errno.ts";
import { KernelError } from "./errors.ts";
import {
  LOCK_NB,
  O_APPEND,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_PATH,
  O_RDONLY,
  O_WRONLY,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
} from "./fcntl.ts";
import { check, cstr, errno, libc } from "./libc.ts";

/** `sizeof(struct stat)` on x86_64. */
const STAT_SIZE = 144;
/** Offsets in `struct stat` on x86_64. */
const ST_DEV = 0;
const ST_INO = 8;
const ST_MODE = 24;
const ST_UID = 28;
const ST_GID = 32;
const ST_SIZE = 48;

/** What `fstat` says of an open file. */
export interface FileStat {
  /** Device id. */
  dev: bigint;
  /** Inode number. */
  ino: bigint;
  /** Type and permission bits. */
  mode: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Size in bytes. */
  size: bigint;
  /** A regular file. */
  isFile: boolean;
  /** A directory. */
  isDirectory: boolean;
  /** A symlink (only an `O_PATH` descriptor can be one). */
  isSymlink: boolean;
}

/**
 * `open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)`. A symlink as the last
 * component fails with `ELOOP`, named as such.
 */
export function openNoFollow(
  path: string,
  flags: number,
  mode = 0,
  op = "open",
): number {
  const fd = libc().open(cstr(path), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    const e = errno();
    throw new KernelError(
      op,
      path,
      e,
      e === Errno.ELOOP
        ? "it is a symlink, which vmnic never follows here"
        : "",
    );
  }
  return fd;
}

/**
 * Whether `path` names nothing (ENOENT), asked without opening the file and
 * without the exception a failed Deno stat costs: for hot paths that mostly
 * ask of files that are not there. Any other answer (the file, or an error
 * such as ENOTDIR or EACCES) is false: the caller's own open or stat then
 * reports it.
 */
export function surelyAbsent(path: string): boolean {
  const fd = libc().open(cstr(path), O_PATH | O_CLOEXEC, 0);
  if (fd >= 0) {
    libc().close(fd);
    return false;
  }
  return errno() === Errno.ENOENT;
}

/** `fstat(fd)`, decoded. */
export function fstat(fd: number, path = `fd ${fd}`): FileStat {
  const buf = new Uint8Array(STAT_SIZE);
  check(libc().fstat(fd, buf), "stat", path);
  const v = new DataView(buf.buffer);
  const mode = v.getUint32(ST_MODE, true);
  return {
    dev: v.getBigUint64(ST_DEV, true),
    ino: v.getBigUint64(ST_INO, true),
    mode,
    uid: v.getUint32(ST_UID, true),
    gid: v.getUint32(ST_GID, true),
    size: v.getBigInt64(ST_SIZE, true),
    isFile: (mode & S_IFMT) === S_IFREG,
    isDirectory: (mode & S_IFMT) === S_IFDIR,
    isSymlink: (mode & S_IFMT) === S_IFLNK,
  };
}

/** `fchmod(fd, mode)`. */
export function fchmod(fd: number, mode: number, path = `fd ${fd}`): void {
  check(libc().fchmod(fd, mode), "chmod", path);
}

/**
 * `flock(fd, operation)`. With `LOCK_NB`, returns false when another open
 * file description holds a conflicting lock.
 */
export function flock(
  fd: number,
  operation: number,
  path = `fd ${fd}`,
): boolean {
  if (libc().flock(fd, operation) === 0) return true;
  const e = errno();
  if ((operation & LOCK_NB) && e === Errno.EAGAIN) return false;
  throw new KernelError("lock", path, e);
}

/** Replaces the file's content with `text` (pwrite at 0, then truncate). */
export function rewrite(fd: number, text: string, path = `fd ${fd}`): void {
  const bytes = new TextEncoder().encode(text);
  const n = Number(
    check(libc().pwrite(fd, bytes, BigInt(bytes.length), 0n), "write", path),
  );
  if (n !== bytes.length) {
    throw new KernelError("write", path, Errno.EIO, `short write ${n}`);
  }
  check(libc().ftruncate(fd, BigInt(bytes.length)), "truncate", path);
}

/**
 * Appends `bytes` to the file at `path` (made with `mode` when missing,
 * never through a symlink); returns the file's size after. A short write
 * is retried until all is written.
 */
export function appendNoFollow(
  path: string,
  bytes: Uint8Array,
  mode = 0o600,
): bigint {
  const fd = openNoFollow(path, O_WRONLY | O_APPEND | O_CREAT, mode, "append");
  try {
    let done = 0;
    while (done < bytes.length) {
      const n = Number(
        check(
          libc().write(fd, bytes.subarray(done), BigInt(bytes.length - done)),
          "write",
          path,
        ),
      );
      if (n === 0) throw new KernelError("write", path, Errno.EIO, "wrote 0");
      done += n;
    }
    return fstat(fd, path).size;
  } finally {
    closeFd(fd);
  }
}

/** `unlink(path)`; false when there was nothing to remove. */
export function unlinkIfExists(path: string): boolean {
  if (libc().unlink(cstr(path)) === 0) return true;
  const e = errno();
  if (e === Errno.ENOENT) return false;
  throw new KernelError("remove", path, e);
}

/** `sizeof(struct statfs)` on x86_64, and where `f_bsize`/`f_bavail` are. */
const STATFS_SIZE = 120;
const STATFS_BSIZE = 1;
const STATFS_BAVAIL = 4;

/**
 * Bytes an unprivileged writer may still use on the file system holding the
 * directory `dir` (`f_bavail * f_bsize`), or null when it cannot be told.
 */
export function freeBytes(dir: string): bigint | null {
  const fd = libc().open(cstr(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (fd < 0) return null;
  try {
    const fs = new BigInt64Array(STATFS_SIZE / 8);
    if (libc().fstatfs(fd, fs) < 0) return null;
    return fs[STATFS_BAVAIL] * fs[STATFS_BSIZE];
  } finally {
    closeFd(fd);
  }
}

/** `close(fd)`, ignoring errors (nothing useful can be done about them). */
export function closeFd(fd: number): void {
  libc().close(fd);
}
