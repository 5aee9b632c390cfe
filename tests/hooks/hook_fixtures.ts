/**
 * Test support for the hook tests: a root-owned temp hooks dir and
 * executable hook scripts in it.
 *
 * @module
 */
import { join } from "node:path";

/** A fresh hooks dir (mode 0755, owned by the test user) under a temp dir. */
export async function withHooksDir(
  fn: (dir: string, scratch: string) => Promise<void>,
): Promise<void> {
  const scratch = await Deno.makeTempDir({ prefix: "vmnict-hooks-" });
  await Deno.chmod(scratch, 0o755);
  const dir = join(scratch, "hooks.d");
  await Deno.mkdir(dir);
  await Deno.chmod(dir, 0o755);
  try {
    await fn(dir, scratch);
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
}

/** Writes an executable `/bin/sh` hook; `mode` is set exactly (no umask). */
export async function writeScript(
  dir: string,
  name: string,
  body: string,
  mode = 0o755,
): Promise<string> {
  const path = join(dir, name);
  await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`);
  await Deno.chmod(path, mode);
  return path;
}

/** Lines of a file, `[]` when it does not exist. */
export async function readLines(path: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(path)).split("\n").filter(Boolean);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

/**
 * The process state of `pid` as `ps` shows it (`"S"`, `"Z"`, …), or `null`
 * when no such process exists. (Deno needs --allow-all to read /proc/<pid>.)
 */
export async function processState(pid: number): Promise<string | null> {
  const out = await new Deno.Command("ps", {
    args: ["-o", "stat=", "-p", String(pid)],
    stdout: "piped",
    stderr: "null",
  }).output();
  const state = new TextDecoder().decode(out.stdout).trim();
  return out.success && state ? state : null;
}

/** True while `pid` is a live process (absent or zombie counts as gone). */
export async function isAlive(pid: number): Promise<boolean> {
  const state = await processState(pid);
  return state !== null && !state.startsWith("Z");
}
