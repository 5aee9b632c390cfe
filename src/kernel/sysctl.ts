/**
 * Network sysctls (`/proc/sys/net/…`) read and written through libc. The
 * kernel resolves `/proc/sys/net` in the network namespace of the calling
 * thread, so inside `withNetns` these are the VM netns's own settings
 * (`net.ipv4.ip_forward` there, never the host's). Synchronous, on the JS
 * main thread, as all work while switched into a netns.
 *
 * @module
 */
import { InvalidArgumentError, KernelError } from "../sys/errors.ts";
import { Errno } from "../sys/errno.ts";
import { O_CLOEXEC, O_WRONLY } from "../sys/fcntl.ts";
import { check, cstr, libc } from "../sys/libc.ts";
import { readProcFile } from "../sys/proc.ts";

/** Where sysctls live. */
const PROC_SYS = "/proc/sys";

/** One path component of a sysctl key: no `/`, no `..`. */
const KEY_PART = /^[A-Za-z0-9_.-]+$/;

/**
 * The file of a sysctl given as path components under `/proc/sys`
 * (`["net", "ipv4", "conf", "tap0", "proxy_arp"]`): components, not a
 * dotted key, since device names may hold dots.
 */
export function sysctlPath(key: readonly string[]): string {
  const op = "sysctl";
  if (!key.length) throw new InvalidArgumentError(op, "", "empty key");
  for (const part of key) {
    if (!KEY_PART.test(part) || part === "." || part === "..") {
      throw new InvalidArgumentError(op, key.join("/"), `bad part ${part}`);
    }
  }
  return `${PROC_SYS}/${key.join("/")}`;
}

/** The sysctl's value (trimmed), or null when it does not exist here. */
export function readSysctl(key: readonly string[]): string | null {
  const path = sysctlPath(key);
  try {
    return readProcFile(path).trim();
  } catch (e) {
    if (e instanceof KernelError && e.errno === Errno.ENOENT) return null;
    throw e;
  }
}

/**
 * Sets the sysctl to `value`.
 *
 * @throws {KernelError} `ENOENT` when it does not exist (a device gone),
 * `EINVAL` for a value the kernel refuses.
 */
export function writeSysctl(key: readonly string[], value: string): void {
  const path = sysctlPath(key);
  const op = "write sysctl";
  const fd = check(libc().open(cstr(path), O_WRONLY | O_CLOEXEC, 0), op, path);
  try {
    const bytes = new TextEncoder().encode(`${value}\n`);
    const n = Number(
      check(libc().write(fd, bytes, BigInt(bytes.length)), op, path),
    );
    if (n !== bytes.length) {
      throw new KernelError(op, path, Errno.EIO, `short write ${n}`);
    }
  } finally {
    libc().close(fd);
  }
}
