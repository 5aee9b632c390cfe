/**
 * Reading /proc through libc (Deno's own file APIs refuse /proc paths
 * without --allow-all): whole files, and a process's identity (its pid and
 * start time together name it, as a pid alone is reused).
 *
 * @module
 */
import { KernelError } from "./errors.ts";
import { Errno } from "./errno.ts";
import { O_CLOEXEC, O_RDONLY } from "./fcntl.ts";
import { check, cstr, libc } from "./libc.ts";

const CHUNK = 64 * 1024;

/** The whole of a /proc file. */
export function readProcFile(path: string): string {
  const fd = check(
    libc().open(cstr(path), O_RDONLY | O_CLOEXEC, 0),
    "open",
    path,
  );
  try {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(CHUNK);
    for (;;) {
      const n = Number(
        check(libc().read(fd, buf, BigInt(buf.length)), "read", path),
      );
      if (n === 0) break;
      chunks.push(buf.slice(0, n));
    }
    const all = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return new TextDecoder().decode(all);
  } finally {
    libc().close(fd);
  }
}

/** Reads of a /proc file that answered EAGAIN before giving up. */
const PROC_EAGAIN_TRIES = 5;

/**
 * A process's start time (clock ticks since boot, field 22 of
 * /proc/PID/stat), or null when no such process lives (zombies included:
 * they hold nothing).
 */
export function processStartTime(pid: number): string | null {
  let stat: string;
  for (let attempt = 1;; attempt++) {
    try {
      stat = readProcFile(`/proc/${pid}/stat`);
      break;
    } catch (e) {
      if (e instanceof KernelError && e.errno === Errno.ENOENT) return null;
      // Seen under load while the process was being exec'd: try again.
      if (
        e instanceof KernelError && e.errno === Errno.EAGAIN &&
        attempt < PROC_EAGAIN_TRIES
      ) continue;
      throw e;
    }
  }
  // The command name (field 2) may hold spaces: count from its closing ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return null;
  return fields[19] ?? null; // field 22 overall
}
