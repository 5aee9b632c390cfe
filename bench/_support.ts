/**
 * What the end-to-end bench files (provider, alternatives, delete order)
 * share: the settings from the environment, the throwaway-netns check, the
 * bridge network and provider dirs of a run, the bare CNI plugin and the
 * floor built on it, the CLI process, timed benches whose samples are kept
 * (`deno bench` prints no median and ignores `warmup`), medians, and a clean
 * stop on SIGINT/SIGTERM.
 *
 * @module
 */
import { join } from "node:path";
import { listLinks } from "../src/kernel/link.ts";
import {
  createNetns,
  DEFAULT_NETNS_DIR,
  deleteNetns,
  listNetns,
} from "../src/kernel/netns.ts";
import { NetlinkSocket } from "../src/netlink/socket.ts";
import { claimPath } from "../src/provider/ownership.ts";
import type { CniProvider } from "../src/provider/provider.ts";
import type { ProviderConfig } from "../src/provider/types.ts";
// Where the CLI is and its permissions (deno.json's `vmnic` task), as the
// CLI tests start it.
import { CLI_MAIN, CLI_PERMISSIONS, REPO_ROOT } from "../tests/support/cli.ts";

export { REPO_ROOT };

/** Where Debian's containernetworking-plugins are. */
export const CNI_BIN = "/usr/lib/cni";
/**
 * Prefix of every netns a bench run makes: unique to the run, so a sweep by
 * prefix touches nothing else.
 */
export const RUN_PREFIX = `vmnicb${Deno.pid.toString(36)}-`;

const dec = new TextDecoder();
const enc = new TextEncoder();

/** `BENCH_N`: measured iterations per bench, `dflt` when it is not set. */
export function benchIterations(dflt: number): number {
  return Number(Deno.env.get("BENCH_N") ?? dflt);
}

/** `BENCH_EXISTING_VMS`: VMs present during the second groups (default 1000). */
export function existingVms(): number {
  return Number(Deno.env.get("BENCH_EXISTING_VMS") ?? 1000);
}

/**
 * Throws unless `existing` VMs fit on the bridge (1024 ports) beside what
 * the benches add: `max` at most.
 */
export function checkExistingVms(existing: number, max: number): void {
  if (!Number.isInteger(existing) || existing < 1 || existing > max) {
    throw new Error(`BENCH_EXISTING_VMS=${existing}: 1–${max} (bridge ports)`);
  }
}

/**
 * True when the bench file `file` may run: as root, inside a throwaway
 * netns (see {@linkcode inThrowawayNetns}). Says on stderr why not.
 */
export function mayRun(file: string): boolean {
  if (Deno.uid() !== 0) {
    console.error(
      `${file}: skipped, needs root (run it inside \`unshare --net\`)`,
    );
    return false;
  }
  if (!inThrowawayNetns()) {
    console.error(
      `${file}: skipped, run it inside a throwaway netns ` +
        "(`unshare --net -- deno bench ...`): it makes a bridge and a subnet",
    );
    return false;
  }
  return true;
}

/**
 * True when this process's netns holds nothing but `lo`, as a fresh
 * `unshare --net` gives: a bench's bridge and subnet must never land in a
 * netns with real interfaces (the host's). PID 1's netns cannot be compared
 * with: /proc/1/ns is EACCES in some containers, even for root.
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

/** The CNI environment for interface `ifName` of the netns `name` at `path`. */
export function cniEnv(
  name: string,
  path: string,
  ifName: string,
): Record<string, string> {
  return { CNI_CONTAINERID: name, CNI_NETNS: path, CNI_IFNAME: ifName };
}

/**
 * What any provider pays for a VM of `nics` NICs: the named netns `name`
 * made, the `bridge` plugin's ADD per NIC, then DEL per NIC (last first),
 * the netns removed.
 */
export async function cniFloor(
  name: string,
  conf: Record<string, unknown>,
  nics: number,
): Promise<void> {
  const path = createNetns(name);
  try {
    const results: string[] = [];
    for (let i = 0; i < nics; i++) {
      const env = cniEnv(name, path, `eth${i}`);
      results.push(await execPlugin("bridge", "ADD", env, conf));
    }
    for (let i = nics - 1; i >= 0; i--) {
      // DEL gets the ADD result as prevResult, as libcni (and vmnic) give it.
      await execPlugin("bridge", "DEL", cniEnv(name, path, `eth${i}`), {
        ...conf,
        prevResult: JSON.parse(results[i]),
      });
    }
  } finally {
    deleteNetns(name);
  }
}

/** The bench's CNI network: one `bridge` plugin with `host-local` IPAM. */
export interface BridgeNetwork {
  name: string;
  bridge: string;
  subnet: string;
}

/**
 * The `bridge` plugin's config as a runtime feeds it (the network's name and
 * cniVersion in); `host-local` keeps its leases in `ipamDir`.
 */
export function bridgePluginConf(
  net: BridgeNetwork,
  ipamDir: string,
): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: net.name,
    type: "bridge",
    bridge: net.bridge,
    isGateway: true,
    ipMasq: false,
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: net.subnet }]],
      routes: [{ dst: "0.0.0.0/0" }],
      dataDir: ipamDir,
    },
  };
}

/** A run's temp dir and the provider settings that point into it. */
export interface ProviderSetup {
  dir: string;
  config: ProviderConfig;
  /**
   * The prefix claim file the first `add` writes (outside `dir`, beside the
   * netns dir): the run must remove it at the end.
   */
  claim: string;
  /** The same settings as vmnic CLI flags. */
  cliFlags: string[];
  /** The bridge plugin's config, for the floor (name/cniVersion in). */
  bridgeConf: Record<string, unknown>;
}

/**
 * Makes a temp dir with the conflist of `net` (its only network), records,
 * locks and leases inside, no hooks; netns get `netnsPrefix`.
 */
export function makeProviderSetup(
  net: BridgeNetwork,
  netnsPrefix: string,
): ProviderSetup {
  const dir = Deno.makeTempDirSync({ prefix: "vmnic-bench-" });
  const rootDir = join(dir, "root");
  const runDir = join(dir, "run");
  const cniConfDir = join(dir, "net.d");
  // Never created: no executable hooks.
  const hooksDir = join(dir, "hooks.d");
  Deno.mkdirSync(cniConfDir);
  const bridgeConf = bridgePluginConf(net, join(dir, "ipam"));
  const { cniVersion, name, ...plugin } = bridgeConf;
  Deno.writeTextFileSync(
    join(cniConfDir, `10-${net.name}.conflist`),
    JSON.stringify({ cniVersion, name, plugins: [plugin] }),
  );
  return {
    dir,
    claim: claimPath(DEFAULT_NETNS_DIR, netnsPrefix),
    config: {
      rootDir,
      runDir,
      cniConfDir,
      cniBinDirs: [CNI_BIN],
      netnsPrefix,
      hooksDir,
      tsHooks: false,
    },
    cliFlags: [
      `--root-dir=${rootDir}`,
      `--run-dir=${runDir}`,
      `--cni-conf-dir=${cniConfDir}`,
      `--cni-bin-dir=${CNI_BIN}`,
      `--netns-prefix=${netnsPrefix}`,
      `--hooks-dir=${hooksDir}`,
    ],
    bridgeConf,
  };
}

/**
 * Runs one vmnic CLI process as `deno task vmnic` would, without this
 * process's VMNIC_* settings; returns its stdout.
 */
export function runCli(args: string[]): Promise<string> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) =>
      !k.startsWith("VMNIC_")
    ),
  );
  return runChecked(
    Deno.execPath(),
    ["run", ...CLI_PERMISSIONS, CLI_MAIN, ...args],
    { env, clearEnv: true, cwd: REPO_ROOT },
  );
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

/**
 * Adds `count` VMs of one NIC each (`existing-0`, …) through `provider`, one
 * at a time, each as `run`'s operation in flight; returns when each add
 * ended, in ms from the first one's start.
 */
export async function addExistingVms(
  run: BenchRun,
  provider: CniProvider,
  count: number,
): Promise<number[]> {
  const ended: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const [nic] = await run.track(() => provider.add(`existing-${i}`, {}, {}));
    if (!nic?.ips.length) throw new Error(`existing-${i}: no IP`);
    ended.push(performance.now() - t0);
  }
  return ended;
}

/**
 * `fn`, run on the first call only: every call gets that first promise (the
 * existing VMs of a run are made once, by whichever bench comes first).
 */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => result ??= fn();
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
 * The end of a run, synchronous for `unload` and signal handlers: `close`
 * (best effort), every netns with `prefix` (their veths go with them), the
 * provider's prefix claim file `claim` when there is one, then the temp dir
 * `dir`.
 */
export function removeRun(
  prefix: string,
  dir: string,
  close: () => void,
  claim?: string,
): void {
  try {
    close();
  } catch { /* best effort; the dir goes below */ }
  const removed = removeNetnsWithPrefix(prefix);
  if (claim) removeClaim(claim);
  Deno.removeSync(dir, { recursive: true });
  console.error(`cleanup: ${removed} netns and ${dir} removed`);
}

/** Removes a prefix claim file (see {@linkcode ProviderSetup.claim}); absent is fine. */
export function removeClaim(claim: string): void {
  try {
    Deno.removeSync(claim);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      console.error(`cleanup: claim ${claim}: ${e}`);
    }
  }
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
