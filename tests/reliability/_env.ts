/**
 * Shared support of the failure suites: one isolated vmnic installation per
 * suite (unique netns prefix, temp root/run/conf/hooks dirs, a conflist of
 * its own with a bridge and host-local leases inside the temp dir), the CLI
 * run as a separate process (optionally armed with a fault point, always
 * with a timeout), and the leak checker every case ends with.
 *
 * @module
 */
import { join } from "node:path";
import {
  ipJson,
  netnsNames,
  removeNetnsWithPrefix,
  run,
  uniquePrefix,
} from "../support/harness.ts";

import {
  CLI_MAIN,
  CLI_PERMISSIONS,
  REPO_ROOT,
  SYSTEM_CNI_BIN,
} from "../support/cli.ts";
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
  /** Wall-clock start and end (ms since epoch). */
  start: number;
  end: number;
}

/** Options of one CLI run. */
export interface CliOptions {
  /** Extra environment (e.g. `VMNIC_FAULT_POINT`). */
  env?: Record<string, string>;
  /** Kill it after this long (default 60 s): a hang is a finding, not a stall. */
  timeoutMs?: number;
  /** Leave out `--json`. */
  noJson?: boolean;
}

/** Options of {@linkcode makeEnv}. */
export interface EnvOptions {
  /** The network's subnet, e.g. `10.236.0.0/16`. */
  subnet: string;
  /** Executables to put in a temp bin dir searched before /usr/lib/cni. */
  fakePlugins?: Record<string, string>;
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
  /** host-local's `dataDir`. */
  ipamDir: string;
  bridge: string;
  network: string;
  subnet: string;
  /** The settings as CLI flags. */
  flags: string[];
  /** Runs the CLI with the settings and `--json` before `args`. */
  cli(args: string[], opts?: CliOptions): Promise<CliRun>;
  /** Everything this installation left on the host; empty when clean. */
  leaks(): Promise<string[]>;
  /** Removes what a leaking case left (VMs, netns, bridge ports, leases). */
  reset(): Promise<void>;
  /** Removes whatever is left (VMs, netns, bridge, temp dir). */
  cleanup(): Promise<void>;
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

/** Makes an isolated installation; call `cleanup()` in `finally`. */
export async function makeEnv(tag: string, opts: EnvOptions): Promise<TestEnv> {
  await run("ip", ["link", "set", "lo", "up"]);
  const prefix = uniquePrefix(tag);
  const dir = await Deno.makeTempDir({ prefix: "vmnic-rel-" });
  const rootDir = join(dir, "root");
  const runDir = join(dir, "run");
  const cniConfDir = join(dir, "net.d");
  const hooksDir = join(dir, "hooks.d"); // absent: no executable hooks
  const binDir = join(dir, "bin");
  const ipamDir = join(dir, "ipam");
  const network = `rel-${tag}`;
  const bridge = `vr${tag}${randomBelow(36 ** 5).toString(36)}`.slice(0, 15);
  await Deno.mkdir(cniConfDir, { recursive: true });
  await Deno.mkdir(binDir, { recursive: true });
  for (const [name, text] of Object.entries(opts.fakePlugins ?? {})) {
    await Deno.writeTextFile(join(binDir, name), text, { mode: 0o755 });
  }
  await Deno.writeTextFile(
    join(cniConfDir, `10-${network}.conflist`),
    bridgeConflist(network, bridge, opts.subnet, ipamDir),
  );
  const flags = [
    `--root-dir=${rootDir}`,
    `--run-dir=${runDir}`,
    `--cni-conf-dir=${cniConfDir}`,
    `--cni-bin-dir=${binDir}:${SYSTEM_CNI_BIN}`,
    `--netns-prefix=${prefix}`,
    `--hooks-dir=${hooksDir}`,
  ];
  const env: TestEnv = {
    prefix,
    dir,
    rootDir,
    runDir,
    cniConfDir,
    hooksDir,
    binDir,
    ipamDir,
    bridge,
    network,
    subnet: opts.subnet,
    flags,
    // Settings first: after a `--` in `args` they would be positionals.
    cli: (args, o = {}) =>
      runCli([...flags, ...(o.noJson ? [] : ["--json"]), ...args], o),
    leaks: () => findLeaks(env),
    async reset() {
      const listed = await env.cli(["list"]).catch(() => null);
      if (listed?.code === 0) {
        const vms = [
          ...new Set(
            (JSON.parse(listed.stdout) as { vmId: string }[]).map((n) =>
              n.vmId
            ),
          ),
        ];
        if (vms.length) await env.cli(["delete", ...vms]).catch(() => {});
      }
      // Records delete could not finish would be charged to the next case.
      await Deno.remove(rootDir, { recursive: true }).catch(() => {});
      await removeNetnsWithPrefix(prefix);
      for (const l of await ipJson("link")) {
        if (l.master === bridge) {
          await run("ip", ["link", "del", `${l.ifname}`]);
        }
      }
      for (const f of await leaseFiles(ipamDir)) {
        await Deno.remove(join(ipamDir, f)).catch(() => {});
      }
    },
    async cleanup() {
      await env.reset();
      await run("ip", ["link", "del", bridge]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  return env;
}

/**
 * Runs `src/cli/main.ts` as its own process with no VMNIC_* settings from
 * the test's environment (only `opts.env`), killed after `opts.timeoutMs`.
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
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs ?? 60_000);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      signal: out.signal,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      timedOut,
      start,
      end: Date.now(),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Files host-local keeps that are not leases. */
const IPAM_BOOKKEEPING = /^(last_reserved_ip\..*|lock)$/;

/**
 * What the installation left behind: netns with its prefix, host-side links
 * enslaved to its bridge, host-local lease files, records.
 */
export async function findLeaks(env: TestEnv): Promise<string[]> {
  const leaks: string[] = [];
  for (const n of await netnsNames()) {
    if (n.startsWith(env.prefix)) leaks.push(`netns ${n}`);
  }
  for (const l of await ipJson("link")) {
    if (l.master === env.bridge && l.ifname !== env.bridge) {
      leaks.push(`link ${l.ifname} on bridge ${env.bridge}`);
    }
  }
  for (const f of await leaseFiles(env.ipamDir)) leaks.push(`lease ${f}`);
  const listed = await env.cli(["list"]);
  if (listed.code !== 0) {
    leaks.push(`list failed (${listed.code}): ${listed.stderr.trim()}`);
  } else {
    for (const n of JSON.parse(listed.stdout) as Record<string, unknown>[]) {
      leaks.push(`record ${n.vmId}/${n.index} (${n.id})`);
    }
  }
  return leaks;
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
