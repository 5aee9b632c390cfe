/**
 * What bench/alternatives_bench.ts and bench/delete_order_bench.ts share:
 * the throwaway-netns check, running the bare CNI plugin, timed benches
 * whose samples are kept (`deno bench` prints no median and ignores
 * `warmup`), medians, and a clean stop on SIGINT/SIGTERM.
 *
 * @module
 */
import { join } from "node:path";
import { listLinks } from "../src/kernel/link.ts";
import { deleteNetns, listNetns } from "../src/kernel/netns.ts";
import { NetlinkSocket } from "../src/netlink/socket.ts";

/** Where Debian's containernetworking-plugins are. */
export const CNI_BIN = "/usr/lib/cni";

const dec = new TextDecoder();
const enc = new TextEncoder();

/**
 * True when this process's netns holds nothing but `lo`, as a fresh
 * `unshare --net` gives: a bench's bridge and subnet must never land in a
 * netns with real interfaces (the host's).
 */
export function inThrowawayNetns(): boolean {
  const sock = NetlinkSocket.open();
  try {
    return listLinks(sock).every((l) => l.name === "lo");
  } finally {
    sock.close();
  }
}

/**
 * Runs one CNI plugin command with `conf` on stdin; returns its stdout.
 * Throws with the plugin's output when it fails.
 */
export async function execPlugin(
  type: string,
  command: string,
  env: Record<string, string>,
  conf: Record<string, unknown>,
): Promise<string> {
  const child = new Deno.Command(join(CNI_BIN, type), {
    env: { CNI_PATH: CNI_BIN, ...env, CNI_COMMAND: command },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(enc.encode(JSON.stringify(conf)));
  await w.close();
  const out = await child.output();
  const stdout = dec.decode(out.stdout);
  if (!out.success) {
    throw new Error(`${type} ${command}: ${stdout}${dec.decode(out.stderr)}`);
  }
  return stdout;
}

/** Runs a command to completion; throws with its output when it fails. */
export async function runChecked(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; clearEnv?: boolean; cwd?: string } = {},
): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    env: opts.env,
    clearEnv: opts.clearEnv ?? false,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = dec.decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${out.code}: ${
        dec.decode(out.stderr)
      }${stdout}`,
    );
  }
  return stdout;
}

/** Median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Removes every named netns whose name starts with `prefix`; returns how
 * many went. Synchronous, so it can run from `unload` and signal handlers.
 */
export function removeNetnsWithPrefix(prefix: string): number {
  let removed = 0;
  for (const name of listNetns()) {
    if (!name.startsWith(prefix)) continue;
    try {
      deleteNetns(name);
      removed++;
    } catch (e) {
      console.error(`cleanup: netns ${name}: ${e}`);
    }
  }
  return removed;
}

/**
 * Brackets the timed part of a round of a `selfTimed` bench: untimed setup
 * first, then `start()`; `end()` is implied when the round returns.
 */
export interface Clock {
  start(): void;
  end(): void;
}

/** One registered bench. */
export interface BenchSpec {
  /** Shown by `deno bench`. */
  name: string;
  /** Row label in the medians table. */
  label: string;
  group: string;
  baseline?: boolean;
  /** The round calls its clock's `start()` itself (else it is timed whole). */
  selfTimed?: boolean;
}

/** Longest wait for the operation in flight when interrupted. */
const STOP_WAIT_MS = 20_000;

/**
 * A bench file's timed benches, their samples, and its cleanup: every
 * operation runs through {@linkcode BenchRun.track}, so an interruption
 * waits for the one in flight (a child could otherwise make a netns or a
 * lease after the sweep), then cleans up and refuses every later one.
 */
export class BenchRun {
  /** Samples per group, then per row label, in registration order. */
  readonly samples = new Map<string, Map<string, number[]>>();
  #stopping = false;
  #inflight: Promise<unknown> | undefined;
  #cleanedUp = false;

  /**
   * @param n measured iterations per bench (`deno bench` calls the bench
   * more often: its warmup calls come first and are dropped)
   * @param warmup extra untimed rounds inside the first call (`deno bench`
   * 2.9.6 does not honour its own `warmup` option)
   * @param cleanup removes everything the run made; runs once
   */
  constructor(
    readonly n: number,
    readonly warmup: number,
    readonly cleanup: () => void,
  ) {}

  /** Runs `cleanup` at exit and on SIGINT/SIGTERM; `atExit` runs first. */
  install(atExit: () => void): void {
    globalThis.addEventListener("unload", () => {
      try {
        atExit();
      } finally {
        this.#cleanupOnce();
      }
    });
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, () => void this.#onSignal());
    }
  }

  /** Runs one operation as the one in flight, unless the run is stopping. */
  track<T>(op: () => Promise<T>): Promise<T> {
    if (this.#stopping) return Promise.reject(new Error("interrupted"));
    const p = op();
    this.#inflight = p;
    return p;
  }

  /**
   * Registers one bench: `before` runs untimed first each call; `round` is
   * timed by explicit timers (whole, or from its clock's start when
   * `spec.selfTimed`).
   */
  bench(
    spec: BenchSpec,
    before: () => Promise<void>,
    round: (clock: Clock) => Promise<void>,
  ): void {
    let warmed = false;
    const rows = this.samples.get(spec.group) ?? new Map<string, number[]>();
    this.samples.set(spec.group, rows);
    rows.set(spec.label, []);
    const untimed: Clock = { start() {}, end() {} };
    Deno.bench({
      name: spec.name,
      group: spec.group,
      baseline: spec.baseline ?? false,
      n: this.n,
      warmup: this.warmup,
      fn: async (b) => {
        await before();
        if (!warmed) {
          for (let i = 0; i < this.warmup; i++) {
            await this.track(() => round(untimed));
          }
          warmed = true;
        }
        let t0 = NaN;
        let t1 = NaN;
        const clock: Clock = {
          start() {
            b.start();
            t0 = performance.now();
          },
          end() {
            t1 = performance.now();
            b.end();
          },
        };
        await this.track(async () => {
          if (!spec.selfTimed) clock.start();
          await round(clock);
          if (!Number.isNaN(t0) && Number.isNaN(t1)) clock.end();
        });
        if (Number.isNaN(t0)) {
          throw new Error(`${spec.name}: round never started its clock`);
        }
        rows.get(spec.label)!.push(t1 - t0);
      },
    });
  }

  /**
   * Medians of a group's rows over the last `n` samples of each: the calls
   * before them are `deno bench`'s own warmup (2.9.6 makes at least one,
   * two for rounds of 10 ms and more, whatever `warmup` says).
   */
  medians(group: string): Map<string, { median: number; n: number }> {
    const out = new Map<string, { median: number; n: number }>();
    for (const [label, xs] of this.samples.get(group) ?? []) {
      const timed = xs.slice(-this.n);
      out.set(label, { median: median(timed), n: timed.length });
    }
    return out;
  }

  async #onSignal(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    console.error("interrupted: finishing the operation in flight");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#inflight?.catch(() => {}),
      new Promise((r) => timer = setTimeout(r, STOP_WAIT_MS)),
    ]);
    clearTimeout(timer);
    this.#cleanupOnce();
    // Deno.exit is refused while `deno bench` runs (its exit sanitizer stays
    // armed): the benches left fail at once instead ("interrupted").
  }

  #cleanupOnce(): void {
    if (this.#cleanedUp) return;
    this.#cleanedUp = true;
    this.cleanup();
  }
}
