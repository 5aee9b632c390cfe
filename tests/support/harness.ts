/**
 * Shared test support: root detection, unique names per run, running the
 * iproute2 oracle, and throwaway namespaces that are removed even when a
 * test fails.
 *
 * @module
 */

/** True when the tests run as root (needed for namespaces, TAP, netlink writes). */
export const IS_ROOT: boolean = Deno.uid() === 0;

/** Why root-only tests are skipped, printed once. */
const SKIP_REASON = "needs root (network namespaces, TAP devices, netlink)";
let skipNoted = false;

/**
 * A test that needs root. Without root it is registered as ignored and the
 * reason is printed once, so a non-root run says why it skipped.
 */
export function rootTest(
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  if (!IS_ROOT && !skipNoted) {
    skipNoted = true;
    console.error(`vmnic tests: root-only tests skipped: ${SKIP_REASON}`);
  }
  Deno.test({
    name: IS_ROOT ? name : `${name} (skipped: ${SKIP_REASON})`,
    ignore: !IS_ROOT,
    sanitizeResources: false,
    fn,
  });
}

/**
 * A name prefix unique to this test run (pid + random), so parallel runs
 * never collide and leftovers are recognisable (`vmnict…`).
 */
export function uniquePrefix(tag = ""): string {
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  return `vmnict${tag}${Deno.pid.toString(36)}${rand}`.slice(0, 20) + "-";
}

/** Result of a command run by {@linkcode run}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command, never throwing on a non-zero exit. */
export async function run(
  cmd: string,
  args: string[],
  opts: {
    stdin?: string;
    env?: Record<string, string>;
    /** Run with `env` only, not the inherited environment. */
    clearEnv?: boolean;
    cwd?: string;
  } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    env: opts.env,
    clearEnv: opts.clearEnv,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** Runs a command and returns its stdout, throwing with stderr on failure. */
export async function sh(cmd: string, ...args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  }
  return r.stdout;
}

/** `ip -j <args>` parsed (the oracle); `[]` for empty output. */
export async function ipJson<T = Record<string, unknown>>(
  ...args: string[]
): Promise<T[]> {
  const out = await sh("ip", "-j", ...args);
  return out.trim() ? JSON.parse(out) : [];
}

/** `tc -j <args>` parsed (the oracle); `[]` for empty output. */
export async function tcJson<T = Record<string, unknown>>(
  ...args: string[]
): Promise<T[]> {
  const out = await sh("tc", "-j", ...args);
  return out.trim() ? JSON.parse(out) : [];
}

/** Names of the named netns `ip netns list` shows. */
export async function netnsNames(): Promise<string[]> {
  const list = await ipJson<{ name: string }>("netns", "list");
  return list.map((n) => n.name);
}

/**
 * Creates named namespaces with iproute2 for a test, runs `fn`, and removes
 * every namespace starting with `prefix` afterwards, even when `fn` throws.
 */
export async function withScratchNetns<T>(
  prefix: string,
  names: string[],
  fn: (paths: string[]) => Promise<T> | T,
): Promise<T> {
  try {
    for (const n of names) await sh("ip", "netns", "add", prefix + n);
    return await fn(names.map((n) => `/var/run/netns/${prefix}${n}`));
  } finally {
    await removeNetnsWithPrefix(prefix);
  }
}

/** Removes every named netns whose name starts with `prefix`. */
export async function removeNetnsWithPrefix(prefix: string): Promise<void> {
  for (const n of await netnsNames()) {
    if (n.startsWith(prefix)) await run("ip", ["netns", "del", n]);
  }
}
