/**
 * Shared support of the failure suites: one isolated vmnic installation per
 * suite (unique netns prefix, temp root/run/conf/hooks dirs, a conflist of
 * its own with a bridge and host-local leases inside the temp dir), the CLI
 * run as a separate process (optionally armed with a fault point, always
 * with a timeout, optionally sent a signal part-way), and the leak checker
 * every case ends with.
 *
 * The leak checker looks for everything an install can leave on the host:
 * netns with its prefix (and a custom netns dir's mount once no VM is
 * left), host veths on its bridge, host-local leases, NIC and VM records,
 * lock files and record backups of VMs that are gone, a claim on its
 * prefix that is not its own, and half-written temp files.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { ipJson, run, uniquePrefix } from "../support/harness.ts";
import {
  CLI_MAIN,
  CLI_PERMISSIONS,
  REPO_ROOT,
  SYSTEM_CNI_BIN,
} from "../support/cli.ts";
import { CniProvider } from "../../src/provider/provider.ts";
import { claimPath } from "../../src/provider/ownership.ts";
import type { ProviderConfig } from "../../src/provider/types.ts";
import { Journal } from "../../src/store/journal.ts";
import { DEFAULT_NETNS_DIR, hostKernel } from "../../src/wiring/kernel.ts";

/** Exit status of a process killed by SIGKILL, as a shell reports it. */
export const SIGKILL_STATUS = 137;

/** Output of one CLI process. */
export interface CliRun {
  code: number;
  /** The signal that ended it, or null. */
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** True when the test killed it for running past its timeout. */
  timedOut: boolean;
  /** The signal the test sent it (`CliOptions.sendSignal`), if it was sent. */
  sent: Deno.Signal | null;
  /** Wall-clock start, end and signal time (ms since epoch). */
  start: number;
  end: number;
  sentAt: number | null;
  /** Its pid. */
  pid: number;
}

/** Options of one CLI run. */
export interface CliOptions {
  /** Extra environment (e.g. `VMNIC_FAULT_POINT`). */
  env?: Record<string, string>;
  /** Kill it after this long (default 60 s): a hang is a finding, not a stall. */
  timeoutMs?: number;
  /** Leave out `--json`. */
  noJson?: boolean;
  /** Send it this signal `signalAfterMs` after it started (if still running). */
  sendSignal?: Deno.Signal;
  /** When to send `sendSignal`, in ms after the spawn. */
  signalAfterMs?: number;
  /** Send `sendSignal` once more, this long after the first (if running). */
  repeatSignalAfterMs?: number;
  /** Text for its stdin (default: none). */
  stdin?: string;
}

/** Options of {@linkcode makeEnv}. */
export interface EnvOptions {
  /** The network's subnet, e.g. `10.236.0.0/16`. */
  subnet: string;
  /** Executables to put in a temp bin dir searched before /usr/lib/cni. */
  fakePlugins?: Record<string, string>;
  /** Use this netns prefix (default: a unique one). */
  prefix?: string;
  /** A custom netns dir (default /var/run/netns). */
  netnsDir?: string;
  /** The root dir (default `<temp dir>/root`). */
  rootDir?: string;
  /**
   * Use the network (conflist dir, bridge, host-local dir) of another
   * install instead of one of its own: the two then share IPAM, as two
   * installs on one host network would. Its bridge and leases stay that
   * install's to clean up.
   */
  shareNetworkOf?: TestEnv;
}

/** One isolated vmnic installation. */
export interface TestEnv {
  prefix: string;
  dir: string;
  rootDir: string;
  runDir: string;
  cniConfDir: string;
  hooksDir: string;
  binDir: string;
  netnsDir: string;
  /** host-local's `dataDir`. */
  ipamDir: string;
  bridge: string;
  network: string;
  subnet: string;
  /** The network belongs to another install (`EnvOptions.shareNetworkOf`). */
  sharedNetwork: boolean;
  /** The settings as CLI flags. */
  flags: string[];
  /** The settings for the library. */
  config: ProviderConfig;
  /** The claim file on this install's prefix. */
  claimFile: string;
  /** Runs the CLI with the settings and `--json` before `args`. */
  cli(args: string[], opts?: CliOptions): Promise<CliRun>;
  /** Opens the library on this install (close it!). */
  open(): Promise<CniProvider>;
  /** Everything this installation left on the host; empty when clean. */
  leaks(opts?: LeakOptions): Promise<string[]>;
  /** Removes what a leaking case left (VMs, netns, bridge ports, leases). */
  reset(): Promise<void>;
  /**
   * Removes whatever is left (VMs, netns, bridge, temp dir, the claim on
   * the prefix). Returns what it could not remove (empty: all gone).
   */
  cleanup(): Promise<string[]>;
}

/** Options of the leak checker. */
export interface LeakOptions {
  /**
   * Read the records with the library in this process instead of two CLI
   * processes (`list`, `vms`): the same store, without the start-up cost.
   */
  library?: boolean;
}

/** A random integer in [0, n). */
export function randomBelow(n: number): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] % n;
}

/** The conflist of a test network: real bridge + host-local. */
export function bridgeConflist(
  name: string,
  bridge: string,
  subnet: string,
  ipamDir: string,
): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name,
    plugins: [{
      type: "bridge",
      bridge,
      isGateway: true,
      ipMasq: false,
      ipam: {
        type: "host-local",
        ranges: [[{ subnet }]],
        routes: [{ dst: "0.0.0.0/0" }],
        dataDir: ipamDir,
      },
    }],
  });
}

/** The conflist file of a test network in its conf dir. */
export function conflistFile(env: TestEnv): string {
  return join(env.cniConfDir, `10-${env.network}.conflist`);
}

/** Makes an isolated installation; call `cleanup()` in `finally`. */
export async function makeEnv(tag: string, opts: EnvOptions): Promise<TestEnv> {
  await run("ip", ["link", "set", "lo", "up"]);
  const prefix = opts.prefix ?? uniquePrefix(tag);
  const dir = await Deno.makeTempDir({ prefix: "vmnic-rel-" });
  const rootDir = opts.rootDir ?? join(dir, "root");
  const runDir = join(dir, "run");
  const hooksDir = join(dir, "hooks.d"); // absent: no executable hooks
  const binDir = join(dir, "bin");
  const netnsDir = opts.netnsDir ?? DEFAULT_NETNS_DIR;
  const shared = opts.shareNetworkOf;
  const cniConfDir = shared?.cniConfDir ?? join(dir, "net.d");
  const ipamDir = shared?.ipamDir ?? join(dir, "ipam");
  const network = shared?.network ?? `rel-${tag}`;
  const bridge = shared?.bridge ??
    `vr${tag}${randomBelow(36 ** 5).toString(36)}`.slice(0, 15);
  await Deno.mkdir(binDir, { recursive: true });
  for (const [name, text] of Object.entries(opts.fakePlugins ?? {})) {
    await Deno.writeTextFile(join(binDir, name), text, { mode: 0o755 });
  }
  if (!shared) {
    await Deno.mkdir(cniConfDir, { recursive: true });
    await Deno.writeTextFile(
      join(cniConfDir, `10-${network}.conflist`),
      bridgeConflist(network, bridge, opts.subnet, ipamDir),
    );
  }
  const flags = [
    `--root-dir=${rootDir}`,
    `--run-dir=${runDir}`,
    `--cni-conf-dir=${cniConfDir}`,
    `--cni-bin-dir=${binDir}:${SYSTEM_CNI_BIN}`,
    `--netns-prefix=${prefix}`,
    `--hooks-dir=${hooksDir}`,
    ...(opts.netnsDir ? [`--netns-dir=${netnsDir}`] : []),
  ];
  const config: ProviderConfig = {
    rootDir,
    runDir,
    cniConfDir,
    cniBinDirs: [binDir, SYSTEM_CNI_BIN],
    netnsPrefix: prefix,
    netnsDir,
    hooksDir,
    tsHooks: false,
  };
  const env: TestEnv = {
    prefix,
    dir,
    rootDir,
    runDir,
    cniConfDir,
    hooksDir,
    binDir,
    netnsDir,
    ipamDir,
    bridge,
    network,
    subnet: opts.subnet,
    sharedNetwork: shared !== undefined,
    flags,
    config,
    claimFile: claimPath(netnsDir, prefix),
    // Settings first: after a `--` in `args` they would be positionals.
    cli: (args, o = {}) =>
      runCli([...flags, ...(o.noJson ? [] : ["--json"]), ...args], o),
    open: () => CniProvider.open(config),
    leaks: (o) => findLeaks(env, o),
    async reset() {
      const listed = await env.cli(["vms"]).catch(() => null);
      if (listed?.code === 0) {
        const vms = (JSON.parse(listed.stdout) as { vmId: string }[]).map((
          v,
        ) => v.vmId);
        if (vms.length) {
          await env.cli(["delete", "--force", ...vms]).catch(() => {});
        }
      }
      const installId = await installIdOf(env);
      // Records delete could not finish would be charged to the next case.
      await Deno.remove(rootDir, { recursive: true }).catch(() => {});
      await Deno.remove(runDir, { recursive: true }).catch(() => {});
      // The claim names this root dir: with the database gone, the next
      // operation would take it for lost records.
      await removeClaim(env);
      for (const n of await prefixedNetns(env)) {
        try {
          hostKernel.deleteNetns(n, netnsDir);
        } catch { /* reported by the next leak check */ }
      }
      if (netnsDir !== DEFAULT_NETNS_DIR) {
        try {
          hostKernel.releaseNetnsDir(netnsDir);
        } catch { /* reported by the next leak check */ }
      }
      if (!env.sharedNetwork) {
        for (const l of await ipJson("link")) {
          if (l.master === bridge) {
            await run("ip", ["link", "del", `${l.ifname}`]);
          }
        }
      }
      for (const f of await leaseFiles(ipamDir)) {
        if (env.sharedNetwork) {
          const owner = await leaseOwner(join(ipamDir, f));
          if (!installId || !owner?.startsWith(`vmnic-${installId}-`)) {
            continue;
          }
        }
        await Deno.remove(join(ipamDir, f)).catch(() => {});
      }
    },
    async cleanup() {
      await env.reset();
      if (!env.sharedNetwork) await run("ip", ["link", "del", bridge]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await removeClaim(env);
      const left: string[] = [];
      for (const n of await prefixedNetns(env)) left.push(`netns ${n}`);
      if (await exists(env.claimFile)) left.push(`claim ${env.claimFile}`);
      if (await exists(dir)) left.push(`dir ${dir}`);
      if (left.length) {
        console.log(`cleanup of ${prefix} left: ${left.join(", ")}`);
      }
      return left;
    },
  };
  return env;
}

async function removeClaim(env: TestEnv): Promise<void> {
  await Deno.remove(env.claimFile).catch(() => {});
  for (const f of await claimTemps(env)) {
    await Deno.remove(join(dirname(env.claimFile), f)).catch(() => {});
  }
}

/** Temp files of an interrupted claim on the env's prefix. */
async function claimTemps(env: TestEnv): Promise<string[]> {
  const dir = dirname(env.claimFile);
  const base = basename(env.claimFile);
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(`${base}.`)) out.push(e.name);
    }
  } catch { /* no claims dir */ }
  return out;
}

/**
 * The install id: kept beside the record backups, else in the claim on
 * the prefix when it names this root dir; or null.
 */
export async function installIdOf(env: TestEnv): Promise<string | null> {
  try {
    const v = JSON.parse(
      await Deno.readTextFile(join(env.rootDir, "records", "install.json")),
    ) as { installId?: string };
    if (v.installId) return v.installId;
  } catch { /* below */ }
  try {
    const c = JSON.parse(await Deno.readTextFile(env.claimFile)) as {
      rootDir?: string;
      installId?: string;
    };
    const mine = await Deno.realPath(env.rootDir).catch(() => env.rootDir);
    return c.rootDir === mine ? c.installId ?? null : null;
  } catch {
    return null;
  }
}

/** The container id a host-local lease file holds (its first line). */
export async function leaseOwner(path: string): Promise<string | null> {
  try {
    return (await Deno.readTextFile(path)).split(/\r?\n/)[0].trim();
  } catch {
    return null;
  }
}

/**
 * Runs `src/cli/main.ts` as its own process with no VMNIC_* settings from
 * the test's environment (only `opts.env`), killed after `opts.timeoutMs`,
 * optionally sent `opts.sendSignal` after `opts.signalAfterMs`.
 */
export async function runCli(
  args: string[],
  opts: CliOptions = {},
): Promise<CliRun> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) =>
      !k.startsWith("VMNIC_")
    ),
  );
  const start = Date.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLI_PERMISSIONS, CLI_MAIN, ...args],
    cwd: REPO_ROOT,
    env: { ...env, ...opts.env },
    clearEnv: true,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  let timedOut = false;
  let exited = false;
  let sent: Deno.Signal | null = null;
  let sentAt: number | null = null;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs ?? 60_000);
  let repeatTimer: ReturnType<typeof setTimeout> | undefined;
  const signalTimer = opts.sendSignal
    ? setTimeout(() => {
      if (exited) return;
      try {
        child.kill(opts.sendSignal!);
        sent = opts.sendSignal!;
        sentAt = Date.now();
      } catch { /* already gone */ }
      if (opts.repeatSignalAfterMs !== undefined) {
        repeatTimer = setTimeout(() => {
          if (exited) return;
          try {
            child.kill(opts.sendSignal!);
          } catch { /* already gone */ }
        }, opts.repeatSignalAfterMs);
      }
    }, opts.signalAfterMs ?? 0)
    : undefined;
  try {
    const out = await child.output();
    exited = true;
    const dec = new TextDecoder();
    return {
      code: out.code,
      signal: out.signal,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      timedOut,
      sent,
      start,
      end: Date.now(),
      sentAt,
      pid: child.pid,
    };
  } finally {
    clearTimeout(timer);
    clearTimeout(signalTimer);
    clearTimeout(repeatTimer);
  }
}

/** A long-running CLI process (e.g. `serve`) the test stops itself. */
export interface CliProcess {
  pid: number;
  /** Its end, with what it printed. */
  done: Promise<CliRun>;
  /** Sends it a signal (ignored once it ended). */
  kill(sig: Deno.Signal): void;
}

/**
 * Starts `src/cli/main.ts` with `args` (settings included by the caller)
 * and returns at once; it is SIGKILLed after `timeoutMs` (default 120 s).
 */
export function spawnCli(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): CliProcess {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) =>
      !k.startsWith("VMNIC_")
    ),
  );
  const start = Date.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLI_PERMISSIONS, CLI_MAIN, ...args],
    cwd: REPO_ROOT,
    env: { ...env, ...opts.env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let exited = false;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, opts.timeoutMs ?? 120_000);
  const done = child.output().then((out) => {
    exited = true;
    clearTimeout(timer);
    const dec = new TextDecoder();
    return {
      code: out.code,
      signal: out.signal,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      timedOut,
      sent: null,
      start,
      end: Date.now(),
      sentAt: null,
      pid: child.pid,
    };
  });
  return {
    pid: child.pid,
    done,
    kill(sig) {
      if (exited) return;
      try {
        child.kill(sig);
      } catch { /* gone */ }
    },
  };
}

/** Files host-local keeps that are not leases. */
const IPAM_BOOKKEEPING = /^(last_reserved_ip\..*|lock)$/;

/** Netns files carrying the env's prefix in its netns dir (live or stale). */
export async function prefixedNetns(env: TestEnv): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(env.netnsDir)) {
      if (e.name.startsWith(env.prefix)) out.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/** The VM ids and NIC records of an install, by CLI or library. */
interface Records {
  nics: Record<string, unknown>[];
  /** The warm pool's slots' NICs (`list --pool`). */
  slots: Record<string, unknown>[];
  vms: { vmId: string; nics: { index: number; state: string }[] }[];
}

async function readRecords(
  env: TestEnv,
  library: boolean,
): Promise<Records | string> {
  if (library) {
    let p: CniProvider;
    try {
      p = await env.open();
    } catch (e) {
      return `open failed: ${(e as Error).name}: ${(e as Error).message}`;
    }
    try {
      return {
        nics: (await p.list()) as unknown as Record<string, unknown>[],
        slots: (await p.list({ pool: true })) as unknown as Record<
          string,
          unknown
        >[],
        vms: await p.vms(),
      };
    } catch (e) {
      return `list failed: ${(e as Error).name}: ${(e as Error).message}`;
    } finally {
      p.close();
    }
  }
  const listed = await env.cli(["list"]);
  if (listed.code !== 0) {
    return `list failed (${listed.code}): ${listed.stderr.trim()}`;
  }
  const vms = await env.cli(["vms"]);
  if (vms.code !== 0) {
    return `vms failed (${vms.code}): ${vms.stderr.trim()}`;
  }
  const slots = await env.cli(["list", "--pool"]);
  if (slots.code !== 0) {
    return `list --pool failed (${slots.code}): ${slots.stderr.trim()}`;
  }
  return {
    nics: JSON.parse(listed.stdout),
    slots: JSON.parse(slots.stdout),
    vms: JSON.parse(vms.stdout),
  };
}

/**
 * What the installation left behind: netns with its prefix, host-side links
 * enslaved to its bridge, host-local lease files, NIC and VM records, lock
 * files and record backups of VMs that are gone, temp files, a claim on
 * its prefix that is not its own, a custom netns dir's mount with no VM.
 */
export async function findLeaks(
  env: TestEnv,
  opts: LeakOptions = {},
): Promise<string[]> {
  const leaks: string[] = [];
  for (const n of await prefixedNetns(env)) leaks.push(`netns ${n}`);
  if (!env.sharedNetwork) {
    for (const l of await ipJson("link")) {
      if (l.master === env.bridge && l.ifname !== env.bridge) {
        leaks.push(`link ${l.ifname} on bridge ${env.bridge}`);
      }
    }
  }
  const installId = await installIdOf(env);
  for (const f of await leaseFiles(env.ipamDir)) {
    if (env.sharedNetwork) {
      const owner = await leaseOwner(join(env.ipamDir, f));
      if (!installId || !owner?.startsWith(`vmnic-${installId}-`)) continue;
    }
    leaks.push(`lease ${f}`);
  }
  const recs = await readRecords(env, opts.library === true);
  const alive = new Set<string>();
  if (typeof recs === "string") {
    leaks.push(recs);
  } else {
    for (const n of recs.nics) {
      leaks.push(`record ${n.vmId}/${n.index} (${n.id}, ${n.state})`);
    }
    for (const v of recs.vms) {
      alive.add(v.vmId);
      leaks.push(`vm record ${v.vmId}`);
    }
    for (const n of recs.slots) {
      alive.add(String(n.vmId));
      leaks.push(`pool slot ${n.vmId}/${n.index} (${n.state})`);
    }
  }
  // Lock files and record backups of VMs that are gone.
  for (const name of await dirNames(join(env.runDir, "locks"))) {
    const vm = name.replace(/\.lock$/, "");
    if (!alive.has(vm)) leaks.push(`lock file ${name}`);
  }
  // Backups as the store names them (src/store/journal.ts).
  const backups = new Set(new Journal(env.rootDir).vmIds());
  for (const vm of backups) {
    if (!alive.has(vm)) leaks.push(`record backup of ${vm}`);
  }
  for (const name of await dirNames(join(env.rootDir, "records"))) {
    if (name === "install.json") continue;
    if (![...backups].some((vm) => name.startsWith(`${vm}.json`))) {
      leaks.push(`stray file records/${name}`);
    } else if (name.endsWith(".tmp")) leaks.push(`temp file records/${name}`);
  }
  for (const name of await dirNames(env.rootDir)) {
    if (name.endsWith(".tmp")) leaks.push(`temp file ${name}`);
  }
  // The claim on the prefix stays while its install does (this one, or
  // another on purpose on the same prefix); never one of a root dir that is
  // gone, never a half-written one. (`cleanup` removes this install's.)
  for (const f of await claimTemps(env)) leaks.push(`claim temp file ${f}`);
  try {
    const claim = JSON.parse(await Deno.readTextFile(env.claimFile)) as {
      rootDir?: string;
    };
    if (!claim.rootDir || !(await exists(join(claim.rootDir, "vmnic.db")))) {
      leaks.push(`claim ${env.claimFile} of a gone install: ${claim.rootDir}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      leaks.push(`claim ${env.claimFile} unreadable: ${e}`);
    }
  }
  if (env.netnsDir !== DEFAULT_NETNS_DIR && !alive.size) {
    const mounts = await netnsDirMounts(env.netnsDir);
    if (mounts) leaks.push(`${mounts} mount(s) on ${env.netnsDir}`);
  }
  return leaks;
}

/** How many mounts /proc/self/mountinfo shows on `dir`. */
export async function netnsDirMounts(dir: string): Promise<number> {
  const real = await Deno.realPath(dir).catch(() => dir);
  // Read by a child in the same mount namespace (Deno guards /proc/self).
  const info = (await run("cat", ["/proc/self/mountinfo"])).stdout;
  return info.split("\n").filter((l) => l.split(" ")[4] === real).length;
}

async function dirNames(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** host-local lease files under `ipamDir` (every network), as `net/ip`. */
export async function leaseFiles(ipamDir: string): Promise<string[]> {
  const out: string[] = [];
  let nets: Deno.DirEntry[];
  try {
    nets = await Array.fromAsync(Deno.readDir(ipamDir));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw e;
  }
  for (const net of nets) {
    if (!net.isDirectory) {
      out.push(net.name);
      continue;
    }
    for await (const f of Deno.readDir(join(ipamDir, net.name))) {
      if (!IPAM_BOOKKEEPING.test(f.name)) out.push(`${net.name}/${f.name}`);
    }
  }
  return out.sort();
}

/** The host's links (`ip -j link` in the test's netns) as stable strings. */
export async function hostLinks(): Promise<string[]> {
  const links = await ipJson("link");
  return links.map((l) =>
    `${l.ifname} ${l.link_type ?? ""} master=${l.master ?? "-"}`
  ).sort();
}

/** True when a run ended by SIGKILL (signal, or the shell's 137). */
export function killedBySigkill(r: CliRun): boolean {
  return !r.timedOut && (r.signal === "SIGKILL" || r.code === SIGKILL_STATUS);
}

/** A short description of a run for failure messages. */
export function describe(r: CliRun): string {
  return `exit ${r.code}${r.signal ? ` signal ${r.signal}` : ""}${
    r.timedOut ? " (timed out)" : ""
  }: ${(r.stderr || r.stdout).trim().slice(0, 400)}`;
}

/** The JSON error a failed `--json` run printed (its last stderr line). */
export function jsonError(
  r: CliRun,
): { type: string; message: string; reason?: string } | null {
  const lines = r.stderr.trim().split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const v = JSON.parse(lines[i]) as {
        error?: { type: string; message: string; reason?: string };
      };
      if (v.error) return v.error;
    } catch { /* not JSON */ }
  }
  return null;
}

/**
 * True when a run was interrupted by a signal the way the contract says
 * (docs/cli.md, "Signals"): exit 1 with an `InterruptedError`, or, for the
 * commands that report per VM (`delete`), exit 1 with each VM not done
 * reported as interrupted.
 */
export function interrupted(r: CliRun): boolean {
  if (r.code !== 1) return false;
  if (jsonError(r)?.type === "InterruptedError") return true;
  try {
    const out = JSON.parse(r.stdout) as { errors?: { error: string }[] };
    return !!out.errors?.length &&
      out.errors.every((e) => /interrupted/.test(e.error));
  } catch {
    return false;
  }
}

/** The NIC JSON `add`, `list` and `inspect` print. */
export interface NicJson {
  id: string;
  vmId: string;
  index: number;
  tap: string;
  mac?: string;
  mtu?: number;
  state: string;
  error?: string;
  ips: { address: string; prefix: number }[];
  [k: string]: unknown;
}

/** Id, index, MAC, TAP and IPs of each NIC, as one comparable string. */
export function nicIdentity(nics: NicJson[]): string {
  return [...nics].sort((a, b) => a.index - b.index).map((n) =>
    `${n.index}:${n.id}=${n.mac}/${n.tap}/${
      n.ips.map((ip) => `${ip.address}/${ip.prefix}`)
    }`
  ).join(" ");
}
